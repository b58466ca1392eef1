"""Fixtures of the recall study: the model, its facts, which it knows, the traces and maps, and the
attribution-patching estimates of the patching maps (`claims.recall.attribution`).

Defaults: `fixture:recall` (a 6-block Llama trained by `fixtures/recall/recipe.py` to complete the
facts). The real models::

    --claims-model recall=gguf:smollm2-135m-instruct      (or gguf:gemma-3-270m, or a folder)

Everything is computed once per session; ``recall/facts.jsonl`` beside the report lists every fact
with its prompt, subject span, answer token and whether the model knows it (the excluded ones are
counted there and in the known-facts claim), and ``recall/maps.json`` holds the mean maps.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest

from harness import pair_mean, DataError, answer_prob, embedding_std, evidence, load_study_model, trace_resid_map
from harness.plugin import threshold_row

from claims.recall import attribution, measure
from claims.recall.facts import facts
from claims.recall.prompts import CATEGORIES, known, other_subject_pairs, tokenize_facts
from claims.recall.settings import DEFAULT_MODEL, NOISE_FACTOR, SEED, Thresholds


@pytest.fixture(scope="session")
def recall(claims_settings):
    return load_study_model("recall", claims_settings.model_spec("recall", DEFAULT_MODEL))


@pytest.fixture(scope="session")
def thresholds(pytestconfig) -> Thresholds:
    """The run's THRESHOLDS row (claims/recall/settings.py), from the model's spec."""
    return threshold_row(pytestconfig, "recall")


def _folder(claims_settings) -> Path:
    out = Path(claims_settings.report_dir) / "recall"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="session")
def all_prompts(recall) -> list:
    """Every fact as a prompt in the model's tokens (`claims.recall.prompts.tokenize_facts`)."""
    rows = facts()
    digest = hashlib.sha256(json.dumps([[f.relation, f.subject, f.object, f.prompt] for f in rows]).encode())
    evidence.register_dataset("recall", path="claims/recall/facts.py", content_hash=f"sha256:{digest.hexdigest()}")
    return tokenize_facts(recall, rows)


@pytest.fixture(scope="session")
def knows(recall, all_prompts, claims_settings) -> np.ndarray:
    """Bool ``[facts]``: the model completes the fact (greedy first token); written to recall/facts.jsonl."""
    got = known(recall, all_prompts)
    with open(_folder(claims_settings) / "facts.jsonl", "w") as fh:
        for p, k in zip(all_prompts, got):
            fh.write(json.dumps({"relation": p.fact.relation, "prompt": p.text, "subject": p.fact.subject,
                                 "object": p.fact.object, "subject_tokens": list(p.subject),
                                 "answer_token": p.target, "known": bool(k)}) + "\n")
    return got


@pytest.fixture(scope="session")
def chosen(all_prompts, knows, thresholds) -> list:
    """The traced prompts: the facts the model knows (every fact under a row with ``facts="all"``),
    the first ``n_prompts`` in a seeded order."""
    pool = [p for p, k in zip(all_prompts, knows) if k or thresholds.facts == "all"]
    if len(pool) < 20:
        raise DataError(f"the model completes {int(knows.sum())} of {len(knows)} facts; tracing needs at least 20 "
                        "known facts (recall/facts.jsonl lists them)")
    order = list(range(len(pool)))
    random.Random(SEED).shuffle(order)
    return [pool[i] for i in sorted(order[: thresholds.n_prompts])]


@pytest.fixture(scope="session")
def noise_std(recall, all_prompts) -> float:
    """ROME's noise level: `NOISE_FACTOR` x the std of the embeddings of the facts' tokens."""
    return NOISE_FACTOR * embedding_std(recall, [t for p in all_prompts for t in p.ids])


@pytest.fixture(scope="session")
def traced(recall, chosen, noise_std, thresholds):
    """`trace_resid_map` of the chosen prompts, noise on the subject; metric P(answer)."""
    return trace_resid_map(recall, [list(p.ids) for p in chosen], [p.subject for p in chosen],
                           answer_prob([p.target for p in chosen]), std=noise_std, samples=thresholds.samples,
                           seed=SEED, batch_size=128)


@pytest.fixture(scope="session")
def effects(traced, chosen, claims_settings) -> dict:
    """Per prompt: ``clean``, ``corrupted``, ``total`` ``[n]`` and the indirect effect by category
    ``[n, layers, categories]``; the mean maps go to recall/maps.json."""
    ie = traced.indirect_effect().numpy()
    out = {"clean": traced.clean.numpy().astype(float), "corrupted": traced.corrupted.mean(1).numpy().astype(float),
           "total": traced.total_effect().numpy().astype(float), "ie": ie,
           "by_category": measure.by_category(ie, chosen)}
    _write_map(claims_settings, "tracing_indirect_effect", out["by_category"])
    return out


@pytest.fixture(scope="session")
def outputs(recall, chosen, noise_std, thresholds) -> dict:
    """P(answer) under subject noise with clean ``mlp_out`` / ``attn_out`` restored over the early
    band at the last subject token, and over the late band at the last token: ``{(point, site): [n]}``."""
    out = {}
    spans = [p.subject for p in chosen]
    for site, layers, at in (("early", thresholds.early_layers, [p.last_subject for p in chosen]),
                             ("late", thresholds.late_layers, [p.last for p in chosen])):
        for point in ("mlp_out", "attn_out"):
            out[point, site] = measure.noised_runs(recall, chosen, spans, std=noise_std, samples=thresholds.samples,
                                                   seed=SEED, point=point, layers=layers, at=at)
    return out


@pytest.fixture(scope="session")
def control(recall, chosen, noise_std, thresholds) -> dict:
    """P(answer) with the noise on the lead's tokens just before the fact (as many as the subject's),
    for the prompts whose lead is long enough: ``{"rows", "noised"}``."""
    rows = [i for i, p in enumerate(chosen) if p.control is not None]
    noised = measure.noised_runs(recall, [chosen[i] for i in rows], [chosen[i].control for i in rows], std=noise_std,
                                 samples=thresholds.samples, seed=SEED)
    return {"rows": np.array(rows), "noised": noised}


@pytest.fixture(scope="session")
def patched(recall, chosen, claims_settings) -> dict:
    """`patch_resid_map` from each prompt (clean) into a prompt of the same relation and length with
    another subject (corrupt); metric P(the clean prompt's answer) (`attribution.pair_args`).
    ``{"rows", "pairs" [(i, j)], "map", "recovery" [pairs, layers, categories]}``."""
    pairs = other_subject_pairs(chosen)
    if len(pairs) < 10:
        raise DataError(f"only {len(pairs)} traced prompts have a partner of the same relation and token length with "
                        "another answer; patching needs at least 10")
    rows = np.array([i for i, _ in pairs])
    pm = attribution.patch(recall, chosen, pairs, "resid")
    recovery = measure.by_category(pm.normalized().numpy(), [chosen[i] for i in rows])
    _write_map(claims_settings, "patching_recovery", recovery)
    return {"rows": rows, "pairs": pairs, "map": pm, "recovery": recovery}


@pytest.fixture(scope="session")
def resid_attribution(recall, chosen, patched):
    """`attribute_resid_map` over `patched`'s pairs with its metric: the estimate of ``patched["map"]``."""
    return attribution.attribute(recall, chosen, patched["pairs"], "resid")


@pytest.fixture(scope="session")
def output_patch(recall, chosen, patched):
    """`patch_layer_map` over `patched`'s pairs with its metric: each block's ``attn_out`` and
    ``mlp_out`` patched at every position, ``[pairs, layers, 2]`` of P(answer)."""
    return attribution.patch(recall, chosen, patched["pairs"], "outputs")


@pytest.fixture(scope="session")
def output_attribution(recall, chosen, patched):
    """`attribute_layer_map` over the same pairs and metric: the estimate of `output_patch`."""
    return attribution.attribute(recall, chosen, patched["pairs"], "outputs")


def _write_map(claims_settings, name: str, values: np.ndarray) -> None:
    path = _folder(claims_settings) / "maps.json"
    maps = json.loads(path.read_text()) if path.is_file() else {}
    means = pair_mean(values)
    maps[name] = {"layers": list(range(1, values.shape[1] + 1)), "prompts": int(values.shape[0]),
                  "mean": {c: [None if not np.isfinite(v) else round(float(v), 5) for v in means[:, k]]
                           for k, c in enumerate(CATEGORIES)}}
    path.write_text(json.dumps(maps, indent=1))


def pytest_generate_tests(metafunc):
    """``site`` is ROME's early or late site (``-k early-site``)."""
    if "site" in metafunc.fixturenames:
        metafunc.parametrize("site", ["early", "late"], ids=["early-site", "late-site"])
