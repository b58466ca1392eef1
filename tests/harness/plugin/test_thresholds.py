"""Which threshold row a study uses (`harness.plugin.studies`): by spec, by ``--claims-thresholds``,
by what a checkpoint's config names, and a model without a row as one usage error before any
model loads."""

from __future__ import annotations

import dataclasses

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import MappingProxyType, SimpleNamespace

import pytest

from harness.plugin import SETTINGS_KEY, ClaimsSettings, resolve_row, study_of_path, thresholds_for
from harness.plugin.thresholds import register
from tests._support.paths import ROOT

HUB_ID = "kaiyuy/leandojo-lean4-tacgen-byt5-small"
TABLE = {"fixture:toy": "toy row", HUB_ID: "hub row", "/models/exact": "exact row"}
ROWS = "rows: ['/models/exact', 'fixture:toy', 'kaiyuy/leandojo-lean4-tacgen-byt5-small']"


def checkpoint(folder: Path, **config) -> str:
    """A checkpoint directory whose config.json holds `config` (no weights: nothing loads it)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "t5", **config}))
    return str(folder)


def test_the_row_of_the_models_spec():
    choice = resolve_row(TABLE, "fixture:toy", study="toy")
    assert (choice.name, choice.row, choice.why) == ("fixture:toy", "toy row", "the model's spec")
    assert choice.header()[0] == "toy thresholds: row 'fixture:toy' (the model's spec)"


def test_claims_thresholds_picks_a_row_by_name_over_the_specs_own():
    choice = resolve_row(TABLE, "fixture:toy", study="toy", chosen=HUB_ID)
    assert (choice.name, choice.row, choice.why) == (HUB_ID, "hub row", "--claims-thresholds")


def test_an_unknown_row_is_a_usage_error_that_lists_the_rows():
    with pytest.raises(pytest.UsageError) as err:
        resolve_row(TABLE, "fixture:toy", study="toy", chosen="fixture:tyo")
    assert str(err.value) == (f"--claims-thresholds toy=fixture:tyo: no row 'fixture:tyo' in the thresholds of "
                              f"the study.py of study 'toy' ({ROWS}); did you mean 'fixture:toy'?")


@pytest.mark.parametrize("key", ["_name_or_path", "name_or_path"])
def test_a_checkpoint_whose_config_names_a_model_with_a_row_uses_that_row(tmp_path, key):
    spec = checkpoint(tmp_path / "byt5-tacgen", **{key: HUB_ID})
    choice = resolve_row(TABLE, spec, study="toy")
    assert (choice.name, choice.row) == (HUB_ID, "hub row")
    assert choice.why == f"named by {spec}/config.json {key}"


def test_a_checkpoint_saved_from_a_cache_snapshot_uses_the_snapshots_hub_id(tmp_path):
    snapshot = "/root/.cache/huggingface/hub/models--kaiyuy--leandojo-lean4-tacgen-byt5-small/snapshots/0123abc"
    spec = checkpoint(tmp_path / "copy", _name_or_path=snapshot)
    assert resolve_row(TABLE, spec, study="toy").name == HUB_ID
    copy = checkpoint(tmp_path / "hub" / "models--kaiyuy--leandojo-lean4-tacgen-byt5-small" / "snapshots" / "0123abc")
    assert resolve_row(TABLE, copy, study="toy").name == HUB_ID


def test_a_fixture_seed_variant_uses_the_fixtures_row():
    choice = resolve_row(TABLE, "fixture:toy@seed=3", study="toy")
    assert (choice.name, choice.row, choice.why) == ("fixture:toy", "toy row", "fixture:toy@seed=3 is a variant of it")
    with pytest.raises(pytest.UsageError, match="neither it nor fixture:other has a row"):
        resolve_row(TABLE, "fixture:other@seed=3", study="toy")


def test_a_hub_id_uses_the_row_its_cached_config_names(tmp_path, monkeypatch):
    constants = pytest.importorskip("huggingface_hub.constants")
    repo = tmp_path / "hub" / "models--me--tacgen-finetune"
    checkpoint(repo / "snapshots" / "abc", _name_or_path=HUB_ID)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    choice = resolve_row(TABLE, "me/tacgen-finetune", study="toy")
    assert choice.name == HUB_ID and choice.why.endswith("snapshots/abc/config.json _name_or_path")
    with pytest.raises(pytest.UsageError, match="its config is not in the local Hugging Face cache"):
        resolve_row(TABLE, "me/not-cached", study="toy")


def test_a_model_without_a_row_is_a_usage_error_naming_the_option(tmp_path):
    spec = checkpoint(tmp_path / "byt5-tacgen", _name_or_path="google/byt5-small")
    with pytest.raises(pytest.UsageError) as err:
        resolve_row(TABLE, spec, study="toy")
    assert str(err.value) == (
        f"no thresholds for model {spec!r} (study toy): its config names no model with a row "
        f"({spec}/config.json _name_or_path = 'google/byt5-small'); pass --claims-thresholds toy=ROW "
        f"({ROWS}) or add a row to the thresholds in the study.py of study 'toy'")
    bare = checkpoint(tmp_path / "bare")
    with pytest.raises(pytest.UsageError, match=r"has no _name_or_path or name_or_path\); pass --claims-thresholds"):
        resolve_row(TABLE, bare, study="toy")
    with pytest.raises(pytest.UsageError, match="is not an existing directory; pass --claims-thresholds toy=ROW"):
        resolve_row(TABLE, str(tmp_path / "missing"), study="toy")
    for gguf in ("gguf:smollm2-135m-instruct", str(tmp_path / "model.Q4_1.gguf")):
        with pytest.raises(pytest.UsageError, match=r"no row is keyed by this GGUF spec, and a GGUF checkpoint "
                                                    r"names no hub model .*; pass --claims-thresholds toy=ROW"):
            resolve_row(TABLE, gguf, study="toy")


STUDIES = ("arith", "codegen", "planted", "tacgen", "tracer")


def session_config(**settings) -> SimpleNamespace:
    """What `thresholds_for` reads of a pytest config: the claims settings in its stash, and the
    five studies of this repository registered as collection registers them."""
    stash = pytest.Stash()
    stash[SETTINGS_KEY] = ClaimsSettings(**{k: MappingProxyType(v) for k, v in settings.items()})
    config = SimpleNamespace(stash=stash)
    for name in STUDIES:
        register(config, study_of_path(ROOT / "claims" / name / "conftest.py"))
    return config


def test_the_studies_resolve_from_the_command_line_with_their_default_models(tmp_path):
    config = session_config()
    assert [thresholds_for(config, s).name for s in STUDIES] == ["fixture:arith", "fixture:codegen", "fixture:planted",
                                                                  "fixture:tacgen", "fixture:tracer"]
    local = checkpoint(tmp_path / "byt5-tacgen", _name_or_path=HUB_ID)
    config = session_config(models={"tacgen": local, "arith": "fixture:arith@seed=1"},
                            thresholds={"planted": "fixture:planted-null"})
    from claims.tacgen.settings import THRESHOLDS
    assert thresholds_for(config, "tacgen").row is THRESHOLDS[HUB_ID]
    assert thresholds_for(config, "arith").name == "fixture:arith"
    assert thresholds_for(config, "planted").why == "--claims-thresholds"


def test_an_unknown_study_name_is_a_usage_error_with_the_closest_name():
    with pytest.raises(pytest.UsageError, match=r"no study 'tacgn' in this session \(studies: \['arith'.*did you mean 'tacgen'"):
        thresholds_for(session_config(), "tacgn")


def test_claims_n_sets_the_row_field_the_study_names_and_its_refuted_claims_run_as_claims():
    from claims.recall.settings import THRESHOLDS

    config = session_config(models={"recall": "gguf:gemma-3-270m"}, sizes={"recall": 60})
    register(config, study_of_path(ROOT / "claims" / "recall" / "conftest.py"))
    choice = thresholds_for(config, "recall")
    row = THRESHOLDS["gguf:gemma-3-270m"]
    assert row.n_prompts != 60 and row.refuted
    assert choice.row == dataclasses.replace(row, n_prompts=60, refuted={})
    assert choice.why == "the model's spec; n_prompts=60 from --claims-n, so its refuted claims run as claims"
    assert "n_prompts=60" in choice.header()[1]
    # the row's own count changes nothing
    config = session_config(models={"recall": "gguf:gemma-3-270m"}, sizes={"recall": row.n_prompts})
    register(config, study_of_path(ROOT / "claims" / "recall" / "conftest.py"))
    assert thresholds_for(config, "recall").row is row


def test_claims_n_sets_a_count_that_is_none_for_all_of_them():
    from claims.codegen.settings import THRESHOLDS

    assert THRESHOLDS["fixture:codegen"].n_problems is None
    config = session_config(sizes={"codegen": 20})
    assert thresholds_for(config, "codegen").row == dataclasses.replace(THRESHOLDS["fixture:codegen"], n_problems=20,
                                                                        refuted={})


def test_claims_n_for_a_study_that_names_no_count_field_is_a_usage_error():
    with pytest.raises(pytest.UsageError) as err:
        thresholds_for(session_config(sizes={"planted": 10}), "planted")
    assert str(err.value) == ("--claims-n planted=10: study 'planted' takes no count from the command line (its "
                              "declaration in claims/planted/study.py names no row field with Study(..., n=FIELD))")


@pytest.mark.parametrize("n, message", [
    (7, "`n` must name the row field that counts what the study measures (e.g. n='n_prompts'), got 7"),
    ("n_pairs", "`n='n_pairs'` must name an integer field of every threshold row (a dataclass; None counts as "
                "all); row 'fixture:toy' has n_pairs=None"),
    ("label", "`n='label'` must name an integer field of every threshold row (a dataclass; None counts as all); "
              "row 'fixture:toy' has label='x'"),
])
def test_a_study_whose_count_field_is_not_an_integer_field_of_its_rows_is_refused(n, message):
    from harness.plugin import Study

    @dataclasses.dataclass(frozen=True)
    class Row:
        n_prompts: int = 10
        label: str = "x"

    with pytest.raises(pytest.UsageError) as err:
        Study("toy", model="fixture:toy", thresholds={"fixture:toy": Row()}, n=n)
    assert str(err.value) == f"Study 'toy': {message}"


@pytest.mark.parametrize("text", ["0", "-3", "ten", "2.5"])
def test_claims_n_must_be_a_positive_integer(text):
    from harness.plugin.options import ClaimsOptionError, settings_from_options

    with pytest.raises(ClaimsOptionError) as err:
        settings_from_options(seed=0, resamples=10, models=None, data=None, report=None, rootdir=ROOT,
                              invocation_dir=ROOT, sizes=[("recall", text)])
    assert str(err.value) == f"--claims-n recall={text}: N must be a positive integer, e.g. --claims-n recall=200"


def test_arith_parametrizes_at_collection_by_the_same_row(tmp_path):
    from claims.arith.settings import THRESHOLDS, thresholds_at_collection

    variant = thresholds_at_collection(session_config(models={"arith": "fixture:arith@seed=2"}))
    # the trained fixture's bars, without its refuted list: what did not hold on seed 0 is measured afresh
    assert variant == dataclasses.replace(THRESHOLDS["fixture:arith"], refuted={})
    assert THRESHOLDS["fixture:arith"].refuted
    assert thresholds_at_collection(session_config(models={"arith": "fixture:arith"},
                                                   thresholds={"arith": "fixture:arith-null"})) is THRESHOLDS["fixture:arith-null"]
    assert thresholds_at_collection(session_config(models={"arith": checkpoint(tmp_path / "m")})) is None


def run_claims(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider"], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=300)
    return proc, time.perf_counter() - t0


@pytest.mark.parametrize("workers", [pytest.param([], id="serial"),
                                     pytest.param(["-n", "2"], id="xdist", marks=pytest.mark.slow)])
def test_a_model_without_a_row_ends_the_run_as_one_usage_error_before_any_model_loads(tmp_path, workers):
    spec = checkpoint(tmp_path / "byt5-tacgen", _name_or_path="google/byt5-small")
    proc, seconds = run_claims("claims/tacgen", *workers, "--claims-model", f"tacgen={spec}",
                               f"--claims-report={tmp_path / 'report'}")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 4, out[-3000:]
    assert out.count("ERROR: no thresholds for model") == 1, out[-3000:]
    assert "pass --claims-thresholds tacgen=ROW" in out
    assert "model tacgen:" not in out and "passed" not in out and "failed" not in out   # no model registered, nothing ran
    assert not (tmp_path / "report" / "tacgen").exists()
    assert seconds < 120   # collection only: the expensive fixtures never ran


@pytest.mark.parametrize("args, message", [
    (["--claims-model", "plantd=/nonexistent"],
     "--claims-model plantd=/nonexistent: no study in this run reads a model named 'plantd' (known: ['planted']); "
     "did you mean 'planted'?"),
    (["--claims-data", "plantd=/x"], "--claims-data plantd=/x: no study in this run reads a data named 'plantd'"),
    (["--claims-sae", "planted=/x"], "--claims-sae planted=/x: no study in this run reads a sae named 'planted' "
                                     "(the studies collected (['planted']) declare none)"),
    (["--claims-thresholds", "tacgen=fixture:tacgen"],
     "--claims-thresholds tacgen=fixture:tacgen: no selected test belongs to a study 'tacgen'"),
    (["--claims-thresholds", "planted=fixture:plantd"],
     "--claims-thresholds planted=fixture:plantd: no row 'fixture:plantd' in the thresholds of claims/planted/study.py"),
    (["--claims-n", "recal=50"],
     "--claims-n recal=50: no selected test belongs to a study 'recal' (studies with selected tests: ['planted'])"),
    (["--claims-n", "planted=50"], "--claims-n planted=50: study 'planted' takes no count from the command line"),
    (["--claims-n", "planted=many"], "--claims-n planted=many: N must be a positive integer"),
])
def test_a_misspelt_name_on_the_command_line_is_one_usage_error_at_collection(args, message):
    proc, _ = run_claims("claims/planted", "--collect-only", "-q", *args)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 4, out[-3000:]
    assert f"ERROR: {message}" in out, out[-3000:]


def test_a_seed_variant_does_not_inherit_the_refuted_list():
    @dataclasses.dataclass(frozen=True)
    class Row:
        bar: float
        refuted: dict

    table = {"fixture:toy": Row(0.5, {"test_x": "0.1 [0.0, 0.2] measured on seed 0"})}
    choice = resolve_row(table, "fixture:toy@seed=1", study="toy")
    assert choice.row == Row(0.5, {})
    assert choice.why == "fixture:toy@seed=1 is a variant of it; its refuted claims run as claims"
    assert resolve_row(table, "fixture:toy", study="toy").row.refuted  # the measured model keeps it
