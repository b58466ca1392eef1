"""interp-claims: mechanistic-interpretability findings as pytest tests.

The public names are re-exported here and imported lazily, so ``import harness`` (and the
pytest plugin) stays free of torch until a claim actually touches a model.

    models        load_model, load_study_model, LoadedModel
    sites         Site
    interventions intervene, Positions, Record, Add, RmsAdd, Patch, Ablate, Noise, noise_draw,
                  check_acted
    scores        logprob, logprob_diff, logit_diff, last_token_accuracy, next_token_logits
    directions    Direction, pooled_states, class_mean_direction, random_direction,
                  shuffled_label_direction, within_class_direction, save_directions, load_directions
    sweeps        sweep, symmetric, scorer, Curve
    patching      patch_resid_map, patch_head_map, PatchMap, answer_logit_diff, answer_logprob
    generate      greedy, exact_match
    lens          logit_lens, residuals_at, layer_sites, Lens
    probes        fit_probe, fit_control, control_labels, balance, Probe
    attention     attention_weights, eager_attention, ratio_to_uniform
    stats         the statistics module itself (``harness.stats.slope_near_zero`` ...)
    estimate      Estimate
    expect        expect
    errors        HarnessError and its subclasses
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "load_model": "harness.models",
    "load_study_model": "harness.models",
    "LoadedModel": "harness.models",
    "Site": "harness.sites",
    "intervene": "harness.interventions",
    "Positions": "harness.interventions",
    "Record": "harness.interventions",
    "Add": "harness.interventions",
    "RmsAdd": "harness.interventions",
    "Patch": "harness.interventions",
    "Ablate": "harness.interventions",
    "Noise": "harness.interventions",
    "noise_draw": "harness.interventions",
    "check_acted": "harness.interventions",
    "logprob": "harness.scores",
    "logprob_diff": "harness.scores",
    "logit_diff": "harness.scores",
    "last_token_accuracy": "harness.scores",
    "next_token_logits": "harness.scores",
    "Direction": "harness.directions",
    "pooled_states": "harness.directions",
    "class_mean_direction": "harness.directions",
    "random_direction": "harness.directions",
    "shuffled_label_direction": "harness.directions",
    "within_class_direction": "harness.directions",
    "save_directions": "harness.directions",
    "load_directions": "harness.directions",
    "sweep": "harness.sweeps",
    "symmetric": "harness.sweeps",
    "scorer": "harness.sweeps",
    "Curve": "harness.sweeps",
    "patch_resid_map": "harness.patching",
    "patch_head_map": "harness.patching",
    "PatchMap": "harness.patching",
    "answer_logit_diff": "harness.patching",
    "answer_logprob": "harness.patching",
    "greedy": "harness.generate",
    "exact_match": "harness.generate",
    "logit_lens": "harness.lens",
    "residuals_at": "harness.lens",
    "layer_sites": "harness.lens",
    "Lens": "harness.lens",
    "fit_probe": "harness.probes",
    "fit_control": "harness.probes",
    "control_labels": "harness.probes",
    "balance": "harness.probes",
    "Probe": "harness.probes",
    "attention_weights": "harness.attention",
    "eager_attention": "harness.attention",
    "ratio_to_uniform": "harness.attention",
    "Estimate": "harness.estimate",
    "expect": "harness.expect",
    "HarnessError": "harness.errors",
    "SiteError": "harness.errors",
    "ShapeError": "harness.errors",
    "ModelLoadError": "harness.errors",
    "InterventionError": "harness.errors",
    "StatsError": "harness.errors",
    "DataError": "harness.errors",
}

__all__ = sorted(_EXPORTS) + ["stats"]


def __getattr__(name: str) -> Any:
    if name == "stats":
        return importlib.import_module("harness.stats")
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'harness' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
