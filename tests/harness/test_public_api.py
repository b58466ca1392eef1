"""The public surface: `harness.__all__` names exactly what is meant to be public."""

import ast
import importlib
import subprocess
import sys

import harness
from tests._support.paths import ROOT


def test_every_name_in_all_resolves_to_an_object():
    for name in harness.__all__:
        assert getattr(harness, name) is not None, name


def test_all_lists_each_module_export_that_is_re_exported():
    for name, module in harness._EXPORTS.items():
        assert name in importlib.import_module(module).__all__, f"{module}.__all__ lacks {name}"


def test_unknown_attribute_is_an_attribute_error():
    try:
        harness.no_such_name  # noqa: B018
    except AttributeError as err:
        assert "no_such_name" in str(err)
    else:
        raise AssertionError("expected AttributeError")


def test_importing_harness_does_not_import_torch():
    code = "import sys, harness; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# What is meant to be public, written out: a name added to or dropped from the surface is a
# decision, made here and in the README, not a side effect of a refactor.
PUBLIC = {
    # models and sites
    "load_model", "load_study_model", "LoadedModel", "pad_rows", "Site", "register_architecture", "architectures",
    "unembed", "last_logits", "stop_at_final_norm",
    # interventions
    "intervene", "Positions", "Record", "Add", "RmsAdd", "Patch", "Interchange", "Ablate", "Noise", "noise_draw", "check_acted",
    "ProjectOut", "Intervention", "Context",
    # measures
    "logprob", "logprob_diff", "logit_diff", "last_token_accuracy", "next_token_logits",
    "Direction", "pooled_states", "pooled_states_at", "class_mean_direction", "random_direction",
    "shuffled_label_direction", "within_class_direction", "save_directions", "load_directions",
    "sweep", "sweep_directions", "symmetric", "scorer", "Curve",
    "patch_resid_map", "patch_head_map", "patch_layer_map", "patch_neuron_map", "patch_qkv_map", "PatchMap", "Metric", "answer_logit_diff", "answer_logprob",
    "answer_prob", "trace_resid_map", "TraceMap", "noise_seed", "embedding_std",
    "attribute_resid_map", "attribute_head_map", "attribute_layer_map", "attribute_neuron_map", "attribute_qkv_map",
    "attribute_edges", "EdgeMap", "map_agreement", "top_cell_rank", "patch_effects", "pair_mean",
    "das", "Subspace", "interchange_logits", "random_basis",
    "generate", "Generation", "END_OF_FUNCTION", "divergence", "Divergence", "greedy", "exact_match", "logit_lens", "residuals_at", "layer_sites", "Lens",
    "fit_probe", "fit_control", "control_labels", "balance", "Probe",
    "attention_weights", "eager_attention", "ratio_to_uniform",
    # SAE hook names <-> sites
    "site_for_hook", "hook_for_site", "hook_ref_for_site",
    # verdicts
    "Estimate", "expect",
    # errors
    "HarnessError", "SiteError", "ShapeError", "ModelLoadError", "InterventionError", "StatsError", "DataError",
    # modules public as modules
    "stats", "evidence", "progress",
}

# Besides `harness` itself, the one documented module a study may import each kind of thing from
# (README, "The library"): data readers, code execution, SAEs, fixture models, plots, the plugin's
# settings and seeds, atomic writes.
STUDY_MODULES = {"harness", "harness.data", "harness.execution", "harness.saes", "harness.models.fixtures",
                 "harness.reports.plots", "harness.plugin", "harness.atomic"}



def test_all_is_exactly_the_public_surface():
    assert set(harness.__all__) == PUBLIC
    assert len(harness.__all__) == len(PUBLIC)


def test_studies_import_from_the_public_surface_or_a_documented_module():
    stray = []
    for path in sorted((ROOT / "claims").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            modules = ([node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                       else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            stray += [f"{path.relative_to(ROOT)}:{node.lineno} {m}" for m in modules
                      if (m == "harness" or m.startswith("harness.")) and m not in STUDY_MODULES]
    assert not stray, "studies import from the public surface (`from harness import ...`) or " \
                      f"one of {sorted(STUDY_MODULES)}; found: {stray}"


def test_every_subpackage_lists_its_modules_in_its_docstring():
    for package in sorted(p for p in (ROOT / "harness").iterdir() if (p / "__init__.py").is_file()):
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
        missing = [m.stem for m in package.glob("*.py")
                   if m.stem != "__init__" and not m.stem.startswith("_") and m.stem not in doc]
        assert not missing, f"harness/{package.name}/__init__.py's docstring does not name {missing}"
