"""The tracer study's programs on a model: its answers, counterfactual pairs in its own tokens,
and where each position of a pair sits (its role).

    generator()                     fixtures/tracer/data.py (the program generator, pairs, checks)
    answer_ids(model, value)        the model's tokens of an answer
    Answered                        per program: answered right (teacher-forced greedy), the
                                    logits of its answer's first token and of another's
    answered(model, programs)       `Answered` for a batch of programs
    accuracy_by_length(right, n_steps, level=)  the accuracy at each length (Wilson CIs)
    selection_rule(right, n_steps, ...)  the pairs' length by the source's rule (the longest whose
                                    accuracy CI lies above the bar), or a `DataError` that says
                                    the model does not meet it
    draw_pairs(model, rows, n, ...) n counterfactual pairs both of whose programs the model
                                    answers right, of equal length in the model's tokens
    roles(model, pair)              role -> positions of program a, in the model's tokens
    step_span(model, pair)          the positions of program a's changed step (traced with noise)
    by_role(values, positions)      per-pair [layers, pos] maps -> [layers, roles] means
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from harness import DataError, Estimate, LoadedModel, ShapeError, pad_rows, stats, stop_at_final_norm, unembed
from harness.models.fixtures import import_module as fixture_module

from claims.tracer.settings import ROLES


def generator():
    """The program generator ``fixtures/tracer/data.py`` (``fixtures.tracer.data``)."""
    return fixture_module("tracer.data")


def answer_ids(model: LoadedModel, value: int) -> list[int]:
    """The model's token ids of the answer ``str(value)`` (one token in the fixture; digits, say,
    in a real model's tokenizer)."""
    ids = model.tokenize([str(int(value))], add_special_tokens=False)[0]
    if not ids:
        raise DataError(f"the model's tokenizer gives no tokens for the answer {value!r}")
    return ids


def length_in(model: LoadedModel):
    """``program -> its length in the model's tokens`` (the pairs' length check)."""
    return lambda program: len(model.tokenize([program])[0])


@dataclass(frozen=True)
class Answered:
    """Per program: whether greedy decoding gives its answer (every answer token the argmax,
    teacher-forced), and the logit of each program's answer's first token at its last position."""

    right: np.ndarray       # [n] bool
    logit: np.ndarray       # [n] logit of the answer's first token after the program


@torch.no_grad()
def answered(model: LoadedModel, programs: Sequence[str], answers: Sequence[int], *, batch_size: int = 256) -> Answered:
    """`Answered` for `programs` with their true `answers` (teacher-forced: a multi-token answer
    is right when each of its tokens is the argmax after the program and the tokens before).

    The output head runs only at each row's answer positions (`stop_at_final_norm`, then
    `unembed`): a real vocabulary, Gemma 3's 262k tokens, over every position of a batch of 256
    would need tens of GB."""
    right, logit = [], []
    for start in range(0, len(programs), batch_size):
        progs = programs[start:start + batch_size]
        prompt_ids = model.tokenize(list(progs))
        targets = [answer_ids(model, a) for a in answers[start:start + batch_size]]
        rows = [p + t[:-1] for p, t in zip(prompt_ids, targets)]
        ids, mask = pad_rows(rows, pad_id=model.pad_id, device=model.device)
        # [batch, k]: row i's answer positions len(p) - 1 ... (k the longest answer), clamped into the row
        k = max(len(t) for t in targets)
        at = torch.tensor([[min(len(p) - 1 + j, ids.shape[1] - 1) for j in range(k)] for p in prompt_ids],
                          device=ids.device)
        with stop_at_final_norm(model) as final:
            model.module(input_ids=ids, attention_mask=mask, use_cache=False)
        logits = unembed(model, final["normed"][torch.arange(len(rows), device=ids.device)[:, None], at])
        for i, t in enumerate(targets):
            picked = logits[i, :len(t)]
            right.append(bool((picked.argmax(-1).cpu() == torch.tensor(t)).all()))
            logit.append(float(picked[0, t[0]]))
    return Answered(np.array(right, dtype=bool), np.array(logit))


def accuracy_by_length(right: Sequence[bool], n_steps: Sequence[int], *, level: float) -> dict[int, Estimate]:
    """Exact-match accuracy on the test programs of each length (steps), a Wilson CI at `level`:
    ``{length: Estimate}``, lengths ascending; `right` and `n_steps` are per test program.

    Raises `ShapeError` when `right` and `n_steps` differ in length."""
    right, steps = np.asarray(right, dtype=bool), np.asarray(n_steps)
    if right.shape != steps.shape:
        raise ShapeError(f"`right` and `n_steps` must have one entry per test program, got shapes {right.shape} and "
                         f"{steps.shape}; pass both for the same rows")
    return {int(n): stats.proportion_of(right[steps == n], level=level).with_context(
        statistic=f"exact-match accuracy on held-out programs of {int(n)} steps (teacher-forced greedy, Wilson)")
        for n in np.unique(steps)}


def selection_rule(right: Sequence[bool], n_steps: Sequence[int], *, min_accuracy: float, min_length: int,
                   level: float) -> int:
    """The source's selection rule ("the smallest model that achieves >= 80% accuracy on at least
    one sequence length >= N", N = 6) as the choice of the pairs' length: the longest length of
    at least `min_length` steps whose accuracy's Wilson CI at `level` lies above `min_accuracy`
    (`accuracy_by_length`; the per-length accuracy claims are judged at the same level).

        length = selection_rule(answered.right, [r["n_steps"] for r in rows], min_accuracy=0.8,
                                min_length=6, level=1 - 0.05 / 9)

    Raises `DataError` when no length qualifies: the model does not meet the rule, and claims
    built on pairs drawn from the few programs it answers would measure something the source
    never did. The message gives the best length's accuracy and CI."""
    by = accuracy_by_length(right, n_steps, level=level)
    above = [n for n, est in by.items() if n >= min_length and est.ci_low >= min_accuracy]
    if above:
        return max(above)
    if not by:
        raise DataError("the test split has no program: the selection rule cannot be checked; pass data with programs")
    def best(lengths) -> str:
        n = max(lengths, key=lambda k: (by[k].ci_low, k))
        est = by[n]
        return f"{est.value:.1%} [{est.ci_low:.1%}, {est.ci_high:.1%}] ({int(round(est.value * est.n))} of {est.n}) at {n} steps"

    long_enough = [n for n in by if n >= min_length]
    raise DataError(
        f"the model does not meet the study's selection rule: no length of at least {min_length} steps has its "
        f"accuracy CI above {min_accuracy:.0%} (best there: {best(long_enough) if long_enough else 'no such program'}; "
        f"best at any length: {best(by)}; {level:.1%} Wilson CIs); the claims built on counterfactual pairs need a "
        "model that answers the programs and are not measured on the few it does "
        "(test_accuracy_by_program_length reports each length)")


def draw_pairs(model: LoadedModel, rows: Sequence[dict], n: int, *, steps: int, seed: int, agree: bool = False,
               split: str = "test") -> list[dict]:
    """`n` counterfactual pairs (``data.make_pair``) from the `rows` of `steps` steps, both of
    whose programs the model answers right, of equal length in the model's tokens, whose
    answers' first tokens differ (or, with `agree`, whose answers are equal: the control), each
    checked by ``data.check_pair`` in the model's tokens. Each pair gains ``answer_logits``: the
    logit of its own answer's first token on each program (``a``, ``b``).

    Raises `DataError` when fewer than `n` can be formed, saying how many programs of that
    length the model answered and how many pairs it formed.
    """
    data = generator()
    pool = [r for r in rows if r["n_steps"] == steps]
    if not pool:
        raise DataError(f"the {split} split has no program of {steps} steps; the pairs are drawn at the threshold "
                        f"row's length ({steps}): pass data with such programs")
    got = answered(model, [r["program"] for r in pool], [r["answer"] for r in pool])
    ok = [r for r, right in zip(pool, got.right) if right]
    length = length_in(model)
    rng = random.Random(seed)
    cands: list[dict] = []
    seen: set[tuple[str, str]] = set()
    for _ in range(40 * n + 1000 if ok else 0):
        if len(cands) >= 3 * n:
            break
        row = rng.choice(ok)
        pair = data.make_pair(row["program"], rng.randrange(steps), rng, length=length, agree=agree)
        if pair is None or (pair["program_a"], pair["program_b"]) in seen:
            continue
        first_a, first_b = answer_ids(model, pair["ground_truth_a"])[0], answer_ids(model, pair["ground_truth_b"])[0]
        if not agree and first_a == first_b:
            continue    # the logit difference of the first answer tokens would be 0 by construction
        seen.add((pair["program_a"], pair["program_b"]))
        cands.append(pair)
    b = answered(model, [p["program_b"] for p in cands], [p["ground_truth_b"] for p in cands]) if cands else None
    a_logit = {r["program"]: lg for r, lg in zip(pool, got.logit)}
    out = []
    for i, pair in enumerate(cands):
        if b.right[i] and len(out) < n:
            data.check_pair(pair, length=length, agree=agree)
            out.append({**pair, "answer_logits": {"a": round(a_logit[pair["program_a"]], 4),
                                                  "b": round(float(b.logit[i]), 4)}})
    if len(out) < n:
        raise DataError(
            f"formed {len(out)} of the {n} {'agreeing ' if agree else ''}pairs asked for: the model answers "
            f"{len(ok)} of the {len(pool)} {split} programs of {steps} steps right"
            + (f", and {int(b.right.sum())} of {len(cands)} counterfactual programs" if cands else "")
            + "; pairs need both programs answered right. Use a model that answers more programs (accuracy "
              "claims say how many), or fewer pairs")
    return out


def _step_ends(model: LoadedModel, program: str, ids: list[int]) -> list[int]:
    """The position of each step's last token (its ``;``) in the model's tokens of `program`."""
    ends, at = [], 0
    for piece in program.split(";")[:-1]:
        at += len(piece) + 1
        prefix = model.tokenize([program[:at]])[0]
        if prefix != ids[:len(prefix)]:
            raise DataError(f"the model's tokens of {program[:at]!r} are not a prefix of those of {program!r}; "
                            "step positions cannot be read off this tokenizer")
        ends.append(len(prefix) - 1)
    return ends


def step_span(model: LoadedModel, pair: dict) -> tuple[int, int]:
    """``(start, end)``: the model-token positions of program a's changed step (its ``;`` included),
    the span causal tracing noises."""
    a = pair["program_a"]
    ends = _step_ends(model, a, model.tokenize([a])[0])
    k = pair["step"]
    return (ends[k - 1] + 1 if k else 0, ends[k] + 1)


def roles(model: LoadedModel, pair: dict) -> dict[str, list[int]]:
    """Positions of program a (model tokens) by role (`settings.ROLES`), for one pair."""
    data = generator()
    a, b = pair["program_a"], pair["program_b"]
    ta, tb = model.tokenize([a])[0], model.tokenize([b])[0]
    div = next(i for i, (x, y) in enumerate(zip(ta, tb)) if x != y)
    ends = _step_ends(model, a, ta)
    k = pair["step"]
    steps_a, steps_b = data.parse(a), data.parse(b)
    env_a: dict[str, int] = {}
    env_b: dict[str, int] = {}
    readers, others = [], []
    vals_a, vals_b = data.values(a), data.values(b)
    changed = steps_a[k].target
    for j, (sa, sb) in enumerate(zip(steps_a, steps_b)):
        if j > k:
            reads = sa.reads()
            if changed is not None and changed in reads:
                readers.append(ends[j])
            elif all(env_a[v] == env_b[v] for v in reads):
                others.append(ends[j])
            if sa.target == changed:
                changed = None      # overwritten: later steps read another value
        env_a[sa.target], env_b[sb.target] = vals_a[j], vals_b[j]
    query_end = len(model.tokenize([a[:-1]])[0]) - 1
    final = len(ta) - 1
    out = {"divergence": [div], "step": list(range(div + 1, ends[k] + 1)), "readers": readers, "others": others,
           "query": [query_end] if query_end != final else [], "final": [final]}
    assert tuple(out) == ROLES
    return out


def by_role(values: torch.Tensor, positions: Sequence[dict[str, list[int]]]) -> np.ndarray:
    """``[n, layers, pos]`` per-pair values -> ``[n, layers, roles]``: the mean over each role's
    positions in that pair (NaN where a pair has none)."""
    v = values.numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    out = np.full((v.shape[0], v.shape[1], len(ROLES)), np.nan)
    for i, where in enumerate(positions):
        for r, role in enumerate(ROLES):
            if where[role]:
                out[i, :, r] = v[i][:, where[role]].mean(-1)
    return out
