"""interp-claims: mechanistic-interpretability findings as pytest tests.

The public names are re-exported here and imported lazily, so ``import harness`` (and the
pytest plugin) stays free of torch until a claim actually touches a model. The subpackages
follow a claim's data flow:

    data          one reader per data set (LeanDojo, MBPP), seeded splits, balancing, strata
    execution     run_tests / run_many: generated code run against its tests in a contained child
    saes          sparse autoencoders through sae-lens: load, hook name <-> site (site_for_hook,
                  hook_for_site, hook_ref_for_site), feature directions, encoding, training
    models        load_model, load_study_model, LoadedModel, pad_rows; Site; the fixture models;
                  register_architecture, architectures (the per-architecture site tables);
                  unembed, last_logits, stop_at_final_norm (the output head at chosen positions)
    interventions intervene, Positions, Record, Add, RmsAdd, Patch, Interchange, Ablate, ProjectOut,
                  Noise, noise_draw, check_acted; Intervention and Context (to write one's own kind)
    measures      scores: logprob, logprob_diff, logit_diff, last_token_accuracy, next_token_logits
                  directions: Direction, pooled_states, pooled_states_at, class_mean_direction,
                      random_direction,
                      shuffled_label_direction, within_class_direction, save_directions,
                      load_directions
                  sweeps: sweep, sweep_directions, symmetric, scorer, Curve
                  patching: patch_resid_map, patch_head_map, patch_layer_map, patch_neuron_map,
                      patch_qkv_map, PatchMap, Metric, answer_logit_diff, answer_logprob, answer_prob
                  attribution: attribute_resid_map, attribute_head_map, attribute_layer_map,
                      attribute_neuron_map, attribute_qkv_map (the patching maps' first-order
                      estimates: AtP, AtP*'s qk fix and GradDrop, integrated gradients),
                      attribute_edges, EdgeMap (edge attribution patching)
                  agreement: map_agreement, top_cell_rank, patch_effects, pair_mean (how far two maps over
                      the same pairs agree: Spearman/Pearson over cells, CIs over pairs)
                  tracing: trace_resid_map, TraceMap, noise_seed, embedding_std (ROME's causal tracing)
                  das: das, Subspace, interchange_logits, random_basis (distributed alignment
                      search: a learned subspace whose interchange gives a causal model's answer)
                  generate: generate (steered, batched, KV-cached), Generation, END_OF_FUNCTION,
                      greedy, exact_match; divergence: divergence, Divergence (steered vs
                      baseline generations); lens: logit_lens, residuals_at, layer_sites, Lens
                  probes: fit_probe, fit_control, control_labels, balance, Probe
                  attention: attention_weights, eager_attention, ratio_to_uniform
    stats         the statistics module itself (``harness.stats.slope_near_zero`` ...)
    verdicts      Estimate, expect; the ``evidence`` module (what a claim records)
    reports       report.json, the terminal table, HTML, plots, the baseline diff
    plugin, cli   the pytest plugin and the ``claims`` command
    progress      the module that long work reports its progress to (shown live by the plugin)
    errors        HarnessError and its subclasses
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "load_model": "harness.models.load",
    "load_study_model": "harness.models.load",
    "LoadedModel": "harness.models.loaded",
    "pad_rows": "harness.models.loaded",
    "Site": "harness.models.sites",
    "unembed": "harness.models.logits",
    "last_logits": "harness.models.logits",
    "stop_at_final_norm": "harness.models.logits",
    "intervene": "harness.interventions",
    "Positions": "harness.interventions",
    "Record": "harness.interventions",
    "Add": "harness.interventions",
    "RmsAdd": "harness.interventions",
    "Patch": "harness.interventions",
    "Interchange": "harness.interventions",
    "Ablate": "harness.interventions",
    "Noise": "harness.interventions",
    "noise_draw": "harness.interventions",
    "check_acted": "harness.interventions",
    "ProjectOut": "harness.interventions",
    "Intervention": "harness.interventions",
    "Context": "harness.interventions",
    "register_architecture": "harness.models.architectures",
    "architectures": "harness.models.architectures",
    "site_for_hook": "harness.saes.hooks",
    "hook_for_site": "harness.saes.hooks",
    "hook_ref_for_site": "harness.saes.hooks",
    "logprob": "harness.measures.scores",
    "logprob_diff": "harness.measures.scores",
    "logit_diff": "harness.measures.scores",
    "last_token_accuracy": "harness.measures.scores",
    "next_token_logits": "harness.measures.scores",
    "Direction": "harness.measures.directions",
    "pooled_states": "harness.measures.directions",
    "pooled_states_at": "harness.measures.directions",
    "class_mean_direction": "harness.measures.directions",
    "random_direction": "harness.measures.directions",
    "shuffled_label_direction": "harness.measures.directions",
    "within_class_direction": "harness.measures.directions",
    "save_directions": "harness.measures.directions",
    "load_directions": "harness.measures.directions",
    "sweep": "harness.measures.sweeps",
    "sweep_directions": "harness.measures.sweeps",
    "symmetric": "harness.measures.sweeps",
    "scorer": "harness.measures.sweeps",
    "Curve": "harness.measures.sweeps",
    "patch_resid_map": "harness.measures.patching",
    "patch_head_map": "harness.measures.patching",
    "PatchMap": "harness.measures.patching",
    "Metric": "harness.measures.patching",
    "answer_logit_diff": "harness.measures.patching",
    "answer_logprob": "harness.measures.patching",
    "answer_prob": "harness.measures.patching",
    "patch_layer_map": "harness.measures.patching_outputs",
    "patch_neuron_map": "harness.measures.patching_units",
    "patch_qkv_map": "harness.measures.patching_units",
    "attribute_resid_map": "harness.measures.attribution",
    "attribute_head_map": "harness.measures.attribution",
    "attribute_layer_map": "harness.measures.attribution",
    "attribute_neuron_map": "harness.measures.attribution",
    "attribute_qkv_map": "harness.measures.attribution",
    "attribute_edges": "harness.measures.attribution_edges",
    "EdgeMap": "harness.measures.attribution_edges",
    "map_agreement": "harness.measures.agreement",
    "pair_mean": "harness.measures.agreement",
    "top_cell_rank": "harness.measures.agreement",
    "patch_effects": "harness.measures.agreement",
    "trace_resid_map": "harness.measures.tracing",
    "TraceMap": "harness.measures.tracing",
    "noise_seed": "harness.measures.tracing",
    "embedding_std": "harness.measures.tracing",
    "das": "harness.measures.das",
    "Subspace": "harness.measures.das",
    "interchange_logits": "harness.measures.das",
    "random_basis": "harness.measures.das",
    "greedy": "harness.measures.generate",
    "generate": "harness.measures.generate",
    "Generation": "harness.measures.generate",
    "END_OF_FUNCTION": "harness.measures.generate",
    "exact_match": "harness.measures.generate",
    "divergence": "harness.measures.divergence",
    "Divergence": "harness.measures.divergence",
    "logit_lens": "harness.measures.lens",
    "residuals_at": "harness.measures.lens",
    "layer_sites": "harness.measures.lens",
    "Lens": "harness.measures.lens",
    "fit_probe": "harness.measures.probes",
    "fit_control": "harness.measures.probes",
    "control_labels": "harness.measures.probes",
    "balance": "harness.measures.probes",
    "Probe": "harness.measures.probes",
    "attention_weights": "harness.measures.attention",
    "eager_attention": "harness.measures.attention",
    "ratio_to_uniform": "harness.measures.attention",
    "Estimate": "harness.stats.estimate",
    "expect": "harness.verdicts.expect",
    "HarnessError": "harness.errors",
    "SiteError": "harness.errors",
    "ShapeError": "harness.errors",
    "ModelLoadError": "harness.errors",
    "InterventionError": "harness.errors",
    "StatsError": "harness.errors",
    "DataError": "harness.errors",
}

# Modules that are public as modules: ``from harness import stats, evidence, progress``.
_MODULES: dict[str, str] = {
    "stats": "harness.stats",
    "evidence": "harness.verdicts.evidence",
    "progress": "harness.progress",
}

__all__ = sorted(_EXPORTS) + sorted(_MODULES)


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(_MODULES[name])
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'harness' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
