"""The code-generation study's measurements: prompts, greedy (steered) generation executed against
the tests, feature separation, the coefficient scale and the selection rule.

    prompts_of(problems, shots)          the MBPP prompts, and where each problem's own block starts
    problem_feature_means(...)           each SAE feature's mean activation over a problem's block, [n, d_sae]
    solved_and_failed(solved)            the check that a split has both outcomes (else no feature can be chosen)
    separation(means, solved)            AUROC of every feature for solved vs failed, [d_sae]
    Steering / steer(...)                one batched greedy run of many (direction, coefficient) conditions
    balanced_draws(task_ids, k, seed=)   which of a control's k random draws steers each problem
    Outcomes                             per problem: text, code, tokens, status, passed, syntax error
    Executor                             runs extracted code against a problem's tests, once per distinct code
    select_coefficient(grid, ...)        the source's hand selection as a rule
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from harness import Add, DataError, generate
from harness.data import DONE, MbppProblem, extract_code, mbpp_prompt
from harness.execution import ExecutionResult, run_many
from harness.saes import encode_at

EXECUTION_LIMITS = dict(timeout_s=5.0, memory_mb=512)
SYNTAX = "syntax_error"


def prompts_of(problems: Sequence[MbppProblem], shots: Sequence[MbppProblem] = ()) -> tuple[list[str], list[int]]:
    """The prompt of each problem (`mbpp_prompt` with `shots`) and the character offset where its
    own block (task, tests, ``[BEGIN]``) starts: the part that says which problem it is."""
    out, starts = [], []
    own = mbpp_prompt  # the last block of a prompt is the problem's own header
    for p in problems:
        text = own(p, shots)
        alone = own(p)
        out.append(text)
        starts.append(len(text) - len(alone))
    return out, starts


@torch.no_grad()
def problem_feature_means(model, sae, prompts: Sequence[str], starts: Sequence[int], *,
                          batch_size: int = 32) -> np.ndarray:
    """``[n, d_sae]``: each feature's mean activation over the tokens of each problem's own block
    (the prompt's tokens from the one that holds character ``starts[i]``; all of a zero-shot prompt)."""
    out = []
    for lo in range(0, len(prompts), batch_size):
        chunk = list(prompts[lo: lo + batch_size])
        fa = encode_at(model, sae, chunk, batch_size=batch_size)
        for j, text in enumerate(chunk):
            first = len(model.tokenize([text[: starts[lo + j]]], add_special_tokens=True)[0]) if starts[lo + j] else 0
            m = fa.mask[j].clone()
            m[:first] = 0
            out.append((fa.acts[j] * m[:, None]).sum(0) / m.sum().clamp(min=1))
    return torch.stack(out).numpy().astype(np.float64)


def solved_and_failed(solved: np.ndarray) -> np.ndarray:
    """`solved` as a bool array ``[n]``, checked to hold both outcomes. Raises `DataError` when the
    problems are all solved or all failed: no feature can separate them."""
    solved = np.asarray(solved, dtype=bool)
    n1, n0 = int(solved.sum()), int((~solved).sum())
    if n1 == 0 or n0 == 0:
        raise DataError(f"the baseline solved {n1} of {len(solved)} problems of the selection split: no feature "
                        "can be selected, since selection compares solved with failed problems; use a split "
                        "(or a model) where the baseline solves some problems and fails others")
    return solved


def separation(means: np.ndarray, solved: np.ndarray) -> np.ndarray:
    """``[d_sae]``: the AUROC of each feature's mean activation for solved (positive) vs failed
    problems (0.5 for a feature that never fires). Raises `DataError` when the problems are all
    solved or all failed (`solved_and_failed`)."""
    from scipy.stats import rankdata

    solved = solved_and_failed(solved)
    n1, n0 = int(solved.sum()), int((~solved).sum())
    ranks = rankdata(means, axis=0)
    u = ranks[solved].sum(0) - n1 * (n1 + 1) / 2
    return u / (n1 * n0)


@dataclass(frozen=True)
class Outcomes:
    """One condition's greedy run on n problems: the generated text, the extracted code, the
    generated token ids, the execution status (`harness.execution.STATUSES`)."""

    texts: tuple[str, ...]
    codes: tuple[str, ...]
    tokens: tuple[tuple[int, ...], ...]
    statuses: tuple[str, ...]

    @property
    def passed(self) -> np.ndarray:
        return np.array([s == "passed" for s in self.statuses])

    @property
    def syntax_error(self) -> np.ndarray:
        return np.array([s == SYNTAX for s in self.statuses])


class Executor:
    """Runs extracted code against a problem's tests in the contained pool, once per distinct
    (problem, code): steered runs often write the baseline's code again."""

    def __init__(self, workers: int = 2):
        self.workers = workers
        self.results: dict[tuple[int, str], ExecutionResult] = {}
        self.executed = 0

    def statuses(self, problems: Sequence[MbppProblem], codes: Sequence[str]) -> list[str]:
        keys = [(p.task_id, hashlib.sha256(c.encode()).hexdigest()) for p, c in zip(problems, codes)]
        todo = {}
        for k, p, c in zip(keys, problems, codes):
            if k not in self.results and k not in todo:
                todo[k] = p.program(c)
        if todo:
            for k, r in zip(todo, run_many(list(todo.values()), workers=self.workers, compare="strict",
                                            **EXECUTION_LIMITS)):
                self.results[k] = r
            self.executed += len(todo)
        return [self.results[k].status for k in keys]


@dataclass(frozen=True)
class Condition:
    """A direction (a name in the run's directions, or None: unsteered) at a coefficient."""

    direction: str | None
    coefficient: float = 0.0


def steer(model, problems: Sequence[MbppProblem], prompts: Sequence[str], conditions: Sequence[Condition], *,
          directions: dict[str, torch.Tensor], site: str | None, scale: float, max_new_tokens: int,
          executor: Executor, batch_size: int = 64, draw_of: Sequence[int] | None = None) -> dict[Condition, Outcomes]:
    """Greedy generation of every problem under every condition in one batched run, executed.

    The steering vector of a condition is ``coefficient * scale * directions[name]`` (unit
    directions ``[d_model]``), added to the residual stream at `site` at every position of the
    prompt and of each generated token (the source's forward pre-hook on the next layer). Only
    the unsteered condition (``Condition(None)``) needs no site: pass ``site=None`` (no SAE). A
    direction given as ``[k, d_model]`` is a control's k random draws: problem i is steered by
    its row ``draw_of[i]``. All rows go through one `generate` call: one chained `Add` per
    direction (per draw) with a per-row alpha that is 0 on the other rows. Raises `DataError`
    for an empty or non-finite coefficient list, an unknown direction name, a steered condition
    without a `site`, a stack of draws without `draw_of` (one draw index per problem, below k).
    """
    if not conditions:
        raise DataError("`conditions` is empty; give at least one (direction, coefficient)")
    for c in conditions:
        if not np.isfinite(c.coefficient):
            raise DataError(f"coefficient {c.coefficient!r} is not finite; give finite steering coefficients")
        if c.direction is not None and c.direction not in directions:
            raise DataError(f"condition direction {c.direction!r} is not one of {sorted(directions)}")
        if c.direction is not None and site is None:
            raise DataError(f"condition {c.direction!r} at {c.coefficient:g} steers, but `site` is None; give the "
                            "site to steer at (the SAE's, `harness.saes.sae_site`)")
    rows = [(c, i) for c in conditions for i in range(len(problems))]
    used = sorted({c.direction for c in conditions if c.direction is not None})
    plan = []
    for name in used:
        stack = directions[name]
        if stack.dim() == 1:
            alpha = torch.tensor([c.coefficient * scale if c.direction == name else 0.0 for c, _ in rows],
                                 dtype=torch.float32)
            plan.append(Add(stack.float(), alpha=alpha))
            continue
        if draw_of is None or len(draw_of) != len(problems) or not all(0 <= j < stack.shape[0] for j in draw_of):
            raise DataError(f"direction {name!r} is {stack.shape[0]} draws; give `draw_of`, one draw index in "
                            f"0..{stack.shape[0] - 1} per problem ({len(problems)})")
        for j in range(stack.shape[0]):
            alpha = torch.tensor([c.coefficient * scale if c.direction == name and draw_of[i] == j else 0.0
                                  for c, i in rows], dtype=torch.float32)
            plan.append(Add(stack[j].float(), alpha=alpha))
    gens = generate(model, [prompts[i] for _, i in rows], max_new_tokens=max_new_tokens, stop=[DONE],
                    interventions={site: plan} if plan else None, batch_size=batch_size)
    codes = [extract_code(g.text) for g in gens]
    statuses = executor.statuses([problems[i] for _, i in rows], codes)
    out = {}
    n = len(problems)
    for k, c in enumerate(conditions):
        sl = slice(k * n, (k + 1) * n)
        out[c] = Outcomes(tuple(g.text for g in gens[sl]), tuple(codes[sl]),
                          tuple(tuple(_generated(model, g)) for g in gens[sl]), tuple(statuses[sl]))
    return out


def _generated(model, gen) -> list[int]:
    """The generated token ids of a `Generation`, without a final end-of-sequence token."""
    eos = getattr(model.tokenizer, "eos_token_id", None)
    ids = list(gen.ids)
    return ids[:-1] if ids and ids[-1] == eos else ids


def flips(baseline: Outcomes, steered: Outcomes) -> dict[str, np.ndarray]:
    """Per problem: ``fixed`` (failed -> passed), ``broken`` (passed -> failed), both ``[n]`` bool."""
    b, s = baseline.passed, steered.passed
    return {"fixed": ~b & s, "broken": b & ~s}


def select_coefficient(rows: Sequence[dict], *, band: tuple[float, float], max_syntax: float) -> dict | None:
    """The source's hand selection as a rule: of `rows` (one per coefficient, ascending, each with
    ``coefficient``, ``flip_rate``, ``syntax_error_rate``), the first whose flip rate lies in
    `band` and whose syntax-error rate is below `max_syntax`; None when none does."""
    for row in sorted(rows, key=lambda r: r["coefficient"]):
        if band[0] <= row["flip_rate"] <= band[1] and row["syntax_error_rate"] < max_syntax:
            return row
    return None


def unit(v: torch.Tensor) -> torch.Tensor:
    """`v` scaled to norm 1 (float32, CPU). Raises `DataError` for a zero vector."""
    v = v.detach().float().cpu()
    norm = float(v.norm())
    if not norm > 0:
        raise DataError("a steering direction has norm 0; a dead SAE feature's decoder row cannot steer")
    return v / norm


def balanced_draws(task_ids: Sequence[int], k: int, *, seed: int) -> dict[int, int]:
    """Which of a control's `k` draws steers each problem: a seeded permutation of the problems
    dealt round-robin (``{task_id: draw}``, every draw within one problem of ``n / k``)."""
    order = np.random.default_rng(seed).permutation(len(task_ids))
    return {int(task_ids[i]): j % k for j, i in enumerate(order)}


def random_unit(d: int, seed: int) -> torch.Tensor:
    """A random direction ``[d]`` of norm 1 (Gaussian, seeded): the norm-matched control."""
    g = torch.Generator().manual_seed(seed)
    return unit(torch.randn(d, generator=g))


def residual_norm(model, prompts: Sequence[str], site: str) -> float:
    """The mean L2 norm of the residual stream at `site` over the prompts' tokens."""
    from harness.saes import site_activations

    return float(site_activations(model, list(prompts), site).norm(dim=-1).mean())


def describe(x: Any) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)
