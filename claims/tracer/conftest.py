"""Fixtures of the variable-tracing study: model, programs, pairs, the patching and tracing maps, and
the attribution-patching estimates of the patching maps (`claims.tracer.attribution`, 200 test-half pairs).

Defaults: `fixture:tracer` (a 4-block Qwen2 trained by `fixtures/tracer/recipe.py`) on the shipped
splits in `fixtures/tracer/data/` (``selection`` and ``test``, never trained on). The real setting::

    --claims-model tracer=Qwen/Qwen2.5-0.5B-Instruct      (or a local folder)

runs the same claims with the model's own tokenizer: pairs are drawn and checked in its tokens
(`claims.tracer.programs`). ``--claims-data tracer=DIR`` reads ``DIR/selection.jsonl`` and
``DIR/test.jsonl`` in the generator's row format instead.

Pairs (`programs.draw_pairs`) are drawn at the length the source's selection rule picks
(`pair_length`: the longest of at least 6 steps whose accuracy CI lies above 0.8), half from each
split: heads are chosen on the selection half and measured on the test half; the maps use all
of them. A model with no such length gets no pairs: every claim built on them is skipped with
the reason (the shipped fixture is such a model: its accuracy claims say by how much).
Everything is computed once per session and written beside the report under ``tracer/``
(`claims.tracer.artifacts`): ``pairs.jsonl``, ``maps.json``, the heat maps and the per-role traces.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from harness import (DataError, answer_logprob, answer_prob, embedding_std, evidence, load_study_model,
                     patch_resid_map, trace_resid_map)
from harness.models.fixtures import fixtures_dir

from harness.plugin import threshold_row
from claims.tracer import artifacts, attribution, programs
from claims.tracer.settings import (DEFAULT_MODEL, N_ATTRIBUTION_PAIRS, N_CONTROL_PAIRS, N_PAIRS, N_TRACE_PAIRS, NOISE_FACTOR,
                                    NOISE_SAMPLES, SEED, Thresholds)

SPLITS = ("selection", "test")


@pytest.fixture(scope="session")
def tracer(claims_settings):
    return load_study_model("tracer", claims_settings.model_spec("tracer", DEFAULT_MODEL))


@pytest.fixture(scope="session")
def thresholds(pytestconfig) -> Thresholds:
    """The run's THRESHOLDS row (claims/tracer/settings.py), from the model's spec."""
    return threshold_row(pytestconfig, "tracer")


@pytest.fixture(scope="session")
def splits(claims_settings) -> dict:
    """``{"selection", "test", "pool": [row]}``: the generator's rows (program, answer, n_steps, ...);
    ``pool`` (optional, ``pool.jsonl``) holds more held-out programs of one length for the pairs."""
    folder = Path(claims_settings.data_path("tracer", str(fixtures_dir() / "tracer" / "data"))).expanduser()
    missing = [name for name in SPLITS if not (folder / f"{name}.jsonl").is_file()]
    if missing:
        raise DataError(f"{folder} lacks {', '.join(f'{m}.jsonl' for m in missing)}; pass a folder with both splits "
                        "(python fixtures/tracer/data.py --write DIR)")
    out = {name: programs.generator().read_rows(folder / f"{name}.jsonl") for name in SPLITS}
    pool = folder / "pool.jsonl"
    out["pool"] = programs.generator().read_rows(pool) if pool.is_file() else []
    digest = hashlib.sha256(json.dumps({k: [r["program"] for r in v] for k, v in out.items()}).encode()).hexdigest()
    evidence.register_dataset("tracer", path=str(folder), content_hash=f"sha256:{digest}")
    return out


@pytest.fixture(scope="session")
def answered(tracer, splits) -> programs.Answered:
    """Whether the model answers each test program right (teacher-forced greedy)."""
    rows = splits["test"]
    return programs.answered(tracer, [r["program"] for r in rows], [r["answer"] for r in rows])


@pytest.fixture(scope="session")
def pair_length(splits, answered, thresholds) -> int:
    """The pairs' length by the source's selection rule (`programs.selection_rule`): the longest
    length of at least the row's ``min_length`` steps whose accuracy CI (at the level the per-length
    accuracy claims are judged at, Bonferroni over the lengths) lies above ``min_accuracy``. A model
    with no such length is not measured on pairs: every claim built on them is skipped with the
    rule's message (the accuracy claims say how far below the bar it is)."""
    steps = [r["n_steps"] for r in splits["test"]]
    try:
        return programs.selection_rule(answered.right, steps, min_accuracy=thresholds.min_accuracy,
                                       min_length=thresholds.min_length, level=1 - 0.05 / len(set(steps)))
    except DataError as exc:
        pytest.skip(str(exc))


def _folder(claims_settings) -> Path:
    return Path(claims_settings.report_dir) / "tracer"


@pytest.fixture(scope="session")
def pairs(tracer, splits, pair_length, claims_settings) -> dict:
    """``{"selection", "test": [pair]}``: `N_PAIRS` / 2 counterfactual pairs from each split (and
    half of the pool each) at the length the selection rule chose (`pair_length`), both programs
    answered right, checked in the model's tokens; written to ``tracer/pairs.jsonl``."""
    half = N_PAIRS // 2
    cut = len(splits["pool"]) // 2
    pools = {"selection": splits["selection"] + splits["pool"][:cut], "test": splits["test"] + splits["pool"][cut:]}
    out = {name: programs.draw_pairs(tracer, pools[name], half, steps=pair_length, seed=SEED + i,
                                     split=f"{name} (with half of the pool)" if cut else name)
           for i, name in enumerate(SPLITS)}
    artifacts.write_pairs(_folder(claims_settings), out)
    return out


@pytest.fixture(scope="session")
def every_pair(pairs) -> list[dict]:
    """The selection half, then the test half."""
    return pairs["selection"] + pairs["test"]


@pytest.fixture(scope="session")
def halves(pairs) -> dict:
    """Row indices of each half in `every_pair`."""
    n = len(pairs["selection"])
    return {"selection": np.arange(n), "test": np.arange(n, n + len(pairs["test"]))}


@pytest.fixture(scope="session")
def positions(tracer, every_pair) -> list[dict]:
    """Each pair's positions by role (`settings.ROLES`), in the model's tokens."""
    return [programs.roles(tracer, p) for p in every_pair]


def _first(model, values) -> list[int]:
    return [programs.answer_ids(model, v)[0] for v in values]


@pytest.fixture(scope="session")
def resid_map(tracer, every_pair):
    """`patch_resid_map` a -> b over every pair; metric: logit(a's answer) - logit(b's answer)
    (`attribution.pair_args`)."""
    return attribution.patch(tracer, every_pair, "resid")


@pytest.fixture(scope="session")
def recovery(tracer, resid_map, positions, every_pair, claims_settings) -> np.ndarray:
    """Normalised recovery ``(patched - corrupt) / (clean - corrupt)`` by role, ``[n, layers, roles]``."""
    out = programs.by_role(resid_map.normalized(), positions)
    artifacts.write_residual(_folder(claims_settings), tracer, out, resid_map, positions, every_pair)
    return out


@pytest.fixture(scope="session")
def head_patch(tracer, every_pair):
    """`patch_head_map` a -> b over every pair, each head's output at the final position only
    (a `PatchMap` ``[n, layers, heads]`` of logit differences)."""
    return attribution.patch(tracer, every_pair, "heads")


@pytest.fixture(scope="session")
def head_map(head_patch):
    """Each head's output patched at the final position only, normalised, ``[n, layers, heads]``."""
    return head_patch.normalized().numpy()


@pytest.fixture(scope="session")
def layer_patch(tracer, every_pair):
    """`patch_layer_map` a -> b over every pair, each block's attention and MLP output at the final
    position (a `PatchMap` ``[n, layers, 2]`` of logit differences)."""
    return attribution.patch(tracer, every_pair, "outputs")


@pytest.fixture(scope="session")
def layer_map(layer_patch):
    """Each block's attention and MLP output patched at the final position, normalised, ``[n, layers, 2]``."""
    return layer_patch.normalized().numpy()


@pytest.fixture(scope="session")
def attribution_rows(every_pair) -> np.ndarray:
    """Indices into `every_pair` of the attribution claims' pairs: the first `N_ATTRIBUTION_PAIRS`
    of the test half (the traced pairs among them)."""
    n_sel = len(every_pair) // 2
    return np.arange(n_sel, min(len(every_pair), n_sel + N_ATTRIBUTION_PAIRS))


def _attributed(tracer, every_pair, rows, family: str):
    return attribution.attribute(tracer, [every_pair[i] for i in rows], family)


@pytest.fixture(scope="session")
def resid_attribution(tracer, every_pair, attribution_rows):
    """`attribute_resid_map` a -> b over `attribution_rows` (the estimate of those rows of
    `resid_map`, same metric)."""
    return _attributed(tracer, every_pair, attribution_rows, "resid")


@pytest.fixture(scope="session")
def head_attribution(tracer, every_pair, attribution_rows):
    """`attribute_head_map` at the final position over `attribution_rows` (of `head_patch`)."""
    return _attributed(tracer, every_pair, attribution_rows, "heads")


@pytest.fixture(scope="session")
def layer_attribution(tracer, every_pair, attribution_rows):
    """`attribute_layer_map` at the final position over `attribution_rows` (of `layer_patch`)."""
    return _attributed(tracer, every_pair, attribution_rows, "outputs")


@pytest.fixture(scope="session")
def components(head_map, layer_map, halves, claims_settings) -> None:
    """Writes the heads' and the outputs' recoveries (``tracer/heads.png``, ``maps.json``)."""
    artifacts.write_components(_folder(claims_settings), head_map, layer_map, halves["test"])


@pytest.fixture(scope="session")
def control_pairs(tracer, splits, pair_length) -> list[dict]:
    """`N_CONTROL_PAIRS` pairs from the test split whose answers agree (the change does not reach it),
    at the selection rule's length (`pair_length`)."""
    rows = splits["test"] + splits["pool"][len(splits["pool"]) // 2:]
    return programs.draw_pairs(tracer, rows, N_CONTROL_PAIRS, steps=pair_length, seed=SEED + 7, agree=True)


@pytest.fixture(scope="session")
def control_map(tracer, control_pairs):
    """`patch_resid_map` a -> b over the agreeing pairs; metric: log P(the shared answer)."""
    metric = answer_logprob(_first(tracer, [p["ground_truth_a"] for p in control_pairs]))
    return patch_resid_map(tracer, [p["program_a"] for p in control_pairs], [p["program_b"] for p in control_pairs],
                           metric)


@pytest.fixture(scope="session")
def noise_std(tracer, every_pair) -> float:
    """ROME's noise level: `NOISE_FACTOR` x the std of the token embeddings of the pairs' programs."""
    return NOISE_FACTOR * embedding_std(tracer, [t for p in every_pair for t in tracer.tokenize([p["program_a"]])[0]])


@pytest.fixture(scope="session")
def traced(tracer, every_pair, positions, noise_std, recovery, claims_settings) -> dict:
    """Causal tracing (ROME) of program a of the first `N_TRACE_PAIRS` test-half pairs: noise on the
    tokens of the changed step, `NOISE_SAMPLES` draws, every clean resid_pre state restored in turn;
    metric: P(a's answer). ``{"rows": indices into every_pair, "map": TraceMap}``."""
    n_sel = len(every_pair) // 2
    rows = np.arange(n_sel, min(len(every_pair), n_sel + N_TRACE_PAIRS))
    chosen = [every_pair[i] for i in rows]
    spans = [programs.step_span(tracer, p) for p in chosen]
    metric = answer_prob(_first(tracer, [p["ground_truth_a"] for p in chosen]))
    tm = trace_resid_map(tracer, [p["program_a"] for p in chosen], spans, metric, std=noise_std,
                         samples=NOISE_SAMPLES, seed=SEED)
    effect = programs.by_role(tm.indirect_effect(), [positions[i] for i in rows])
    artifacts.write_tracing(_folder(claims_settings), effect, recovery[rows], tm.total_effect().numpy(), noise_std)
    return {"rows": rows, "map": tm, "effect": effect}


def pytest_generate_tests(metafunc):
    """Claims per layer take ``block`` (every block of the row's model), ``later_block`` (every
    block after the first) or ``middle_layer`` (the row's middle layers), claims per program
    length ``length`` (2-10), so ids name them
    (``-k layer3``, ``-k len6``)."""
    from claims.tracer.settings import thresholds_at_collection

    row = thresholds_at_collection(metafunc.config)
    lengths = list(programs.generator().LENGTHS)
    layers = row.layers if row else 2
    for name, values in (("block", range(1, layers + 1)), ("later_block", range(2, layers + 1)),
                         ("middle_layer", row.middle_layers if row else (1,)), ("length", lengths)):
        if name in metafunc.fixturenames:
            prefix = "len" if name == "length" else "layer"
            metafunc.parametrize(name, list(values), ids=[f"{prefix}{v}" for v in values])
    if "last_role" in metafunc.fixturenames:     # a role at the last block: ``layer4-final-position``
        from claims.tracer.settings import ROLES

        metafunc.parametrize("last_role", list(ROLES), ids=[f"layer{layers}-{r}-position" for r in ROLES])

