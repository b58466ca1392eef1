"""The recall study's prompts in a model's own tokens, and which facts the model knows.

    LEAD                  the neutral sentence every prompt starts with (the control's noise goes there)
    Prompt                one fact in the model's tokens: ids, subject span, answer token, control span
    tokenize_facts(m, F)  `Prompt` per fact; the subject's token span from the tokenizer's offsets
    known(m, prompts)     which prompts the model completes with the answer's first token (greedy)
    other_subject_pairs   for each known prompt, a known prompt of the same relation and token length
                          whose answer differs (the source of activation patching)
    categories(p, width)  ROME's position categories of a prompt, by position

A prompt is ``LEAD + fact.prompt`` (``"Here is a fact that everyone knows. The capital of France
is"``): the lead raises SmolLM2-135M's known facts from 178 to 257 of 383 and gives the control a
span of tokens that are neither the subject nor the relation. The answer is the first token that
``prompt + " " + object`` has after the prompt's tokens (or, where the tokenizer merges across that
boundary, the first token of ``" " + object`` alone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from harness import DataError, next_token_logits

from claims.recall.facts import Fact

LEAD = "Here is a fact that everyone knows. "
CATEGORIES = ("first_subject", "middle_subject", "last_subject", "first_after", "further", "last")
"""ROME's position categories (Meng et al. 2022, Fig. 1): the subject's first, middle and last
token, the first token after the subject, further tokens, the last token. The lead is none of them."""


@dataclass(frozen=True)
class Prompt:
    """`fact` in a model's tokens. ``subject`` and ``control`` are token spans ``[start, end)``;
    ``control`` has the subject's length and lies inside the lead, ending where the fact begins
    (None when the lead is too short for it, its first token kept out)."""

    fact: Fact
    text: str
    ids: tuple[int, ...]
    subject: tuple[int, int]
    target: int
    control: tuple[int, int] | None

    @property
    def last_subject(self) -> int:
        return self.subject[1] - 1

    @property
    def last(self) -> int:
        return len(self.ids) - 1


def _span(offsets: Sequence[tuple[int, int]], start: int, end: int, *, what: str) -> tuple[int, int]:
    hit = [i for i, (a, b) in enumerate(offsets) if b > a and a < end and b > start]
    if not hit:
        raise DataError(f"no token of {what} covers characters {start}..{end}")
    return hit[0], hit[-1] + 1


def tokenize_facts(model, facts: Sequence[Fact]) -> list[Prompt]:
    """Each fact as a `Prompt` in `model`'s tokens. Raises `DataError` when the tokenizer gives no
    offsets (a slow tokenizer) or its ids differ from ``model.tokenize``'s."""
    tok = model.tokenizer
    texts = [LEAD + f.prompt for f in facts]
    ids = model.tokenize(texts)
    full = model.tokenize([t + f.target for t, f in zip(texts, facts)])
    out = []
    for f, text, row, longer in zip(facts, texts, ids, full):
        enc = tok(text, return_offsets_mapping=True, add_special_tokens=True)
        if list(enc["input_ids"]) != list(row):
            raise DataError(f"the tokenizer's ids of {text!r} differ from model.tokenize's; the subject's span "
                            "cannot be read from its offsets")
        subject = _span(enc["offset_mapping"], len(LEAD) + f.subject_start, len(LEAD) + f.subject_end,
                        what=f"the subject {f.subject!r}")
        fact_start = _span(enc["offset_mapping"], len(LEAD), len(text), what="the fact")[0]
        if list(longer[:len(row)]) == list(row) and len(longer) > len(row):
            target = int(longer[len(row)])
        else:
            target = int(model.tokenize([f.target], add_special_tokens=False)[0][0])
        k = subject[1] - subject[0]
        lead_first = _span(enc["offset_mapping"], 0, len(LEAD), what="the lead")[0]
        control = (fact_start - k, fact_start) if fact_start - k > lead_first else None
        out.append(Prompt(f, text, tuple(int(i) for i in row), subject, target, control))
    return out


def known(model, prompts: Sequence[Prompt], *, batch_size: int = 64) -> np.ndarray:
    """Bool ``[n]``: the model's greedy next token after each prompt is its answer's first token."""
    logits = next_token_logits(model, [p.text for p in prompts], batch_size=batch_size)
    return (logits.argmax(-1).cpu().numpy() == np.array([p.target for p in prompts]))


def other_subject_pairs(prompts: Sequence[Prompt]) -> list[tuple[int, int]]:
    """``(i, j)`` for each prompt i that has a partner j: the next prompt (cyclically, in order) of
    the same relation with the same token length and another answer token. Patching goes from i
    (clean) into j (corrupt), so the two share every token but the subject's."""
    out = []
    for i, p in enumerate(prompts):
        same = [j for j, q in enumerate(prompts) if j != i and q.fact.relation == p.fact.relation
                and len(q.ids) == len(p.ids) and q.subject == p.subject and q.target != p.target]
        if same:
            after = [j for j in same if j > i]
            out.append((i, (after or same)[0]))
    return out


def categories(p: Prompt) -> np.ndarray:
    """Int ``[len(ids)]``: each position's index in `CATEGORIES` (-1 for the lead)."""
    a, b = p.subject
    cat = np.full(len(p.ids), -1)
    cat[a] = 0
    cat[a + 1: b - 1] = 1
    cat[b - 1] = 2
    if b < p.last:
        cat[b] = 3
        cat[b + 1: p.last] = 4
    cat[p.last] = 5
    return cat
