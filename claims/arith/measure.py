"""What the arithmetic study measures, on top of the harness: rows, head ablation impacts,
clean/corrupt pairs that differ in their bracketing, and answers under head patches.

Every number here is per example (so the claims can bootstrap over examples or count trials).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from harness import Ablate, DataError, intervene, LoadedModel, pad_rows, Patch, Positions, progress, Record

from claims.arith.rebracket import inside_parentheses, rebracket, value

FIELDS = {"expression": str, "answer": str, "has_parens": bool, "depth": int, "n_tokens": int}


@dataclass(frozen=True)
class Row:
    expression: str
    answer: str
    has_parens: bool
    depth: int
    n_tokens: int


def read_rows(path: str | Path) -> list[Row]:
    """Rows of a JSONL split (fields `FIELDS`), with errors that name the line and the fix."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"arithmetic split {str(path)!r} does not exist; pass a folder with selection.jsonl and "
                        "test.jsonl with --claims-data arith=DIR (default: fixtures/arith/data)")
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{i} is not JSON ({exc.msg}); each line must be one object with "
                            f"fields {sorted(FIELDS)}") from None
        for name, kind in FIELDS.items():
            if not isinstance(obj, dict) or name not in obj or not isinstance(obj[name], kind):
                raise DataError(f"{path}:{i} needs field {name!r} of type {kind.__name__}; got "
                                f"{obj.get(name, '<missing>') if isinstance(obj, dict) else obj!r}")
        rows.append(Row(**{k: obj[k] for k in FIELDS}))
    if not rows:
        raise DataError(f"{path} holds no rows; write the split with python -m fixtures.arith.recipe --write-data")
    return rows


def first_tokens(model: LoadedModel, texts: Sequence[str]) -> torch.Tensor:
    """The first token id of each text (an answer: tokenized without special tokens)."""
    return torch.as_tensor([row[0] for row in model.tokenize(list(texts), add_special_tokens=False)])


def first_answer_token(model: LoadedModel, rows: Sequence[Row]) -> torch.Tensor:
    return first_tokens(model, [r.answer for r in rows])


@torch.no_grad()
def answer_logprobs(model: LoadedModel, rows: Sequence[Row], interventions=None) -> np.ndarray:
    """log P(first answer token | prompt) per row, under `interventions` (whole-site edits).
    Rows are grouped by prompt length, so nothing is padded."""
    targets = first_answer_token(model, rows)
    out = np.empty(len(rows))
    for idx in _same_length(rows):
        ids = torch.as_tensor(model.tokenize([rows[i].expression for i in idx]))
        mask = torch.ones_like(ids)
        with intervene(model, dict(interventions or {}), masks={model.main_stack: mask}):
            logits = model.module(input_ids=ids, attention_mask=mask).logits[:, -1].float()
        out[idx] = torch.log_softmax(logits, -1)[torch.arange(len(idx)), targets[idx]].numpy()
    return out


def _same_length(rows: Sequence[Row]) -> list[list[int]]:
    groups: dict[int, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r.n_tokens, []).append(i)
    return [g for _, g in sorted(groups.items())]


@torch.no_grad()
def head_means(model: LoadedModel, rows: Sequence[Row]) -> dict:
    """Each head's mean output over the real tokens of `rows` (one pass, grouped by length)."""
    sites = [model.site(f"blocks.{layer}.attn.head{h}") for layer in range(1, model.module.config.n_layer + 1)
             for h in range(model.module.config.n_head)]
    total: dict = {}
    count = 0
    for idx in _same_length(rows):
        ids = torch.as_tensor(model.tokenize([rows[i].expression for i in idx]))
        mask = torch.ones_like(ids)
        with intervene(model, {site: Record() for site in sites}, masks={model.main_stack: mask}) as run:
            model.module(input_ids=ids, attention_mask=mask)
        for site in sites:
            part = run.recorded[site].double().sum((0, 1))
            total[site] = part if site not in total else total[site] + part
        count += ids.numel()
    return {site: (v / count).float() for site, v in total.items()}


@torch.no_grad()
def ablation_impacts(model: LoadedModel, rows: Sequence[Row], kind: str, *, means: dict | None = None,
                     heads: Sequence[tuple[int, int]] | None = None) -> np.ndarray:
    """``[n, layers, heads]``: drop of log P(first answer token) when one head is ablated
    (``zero``, or ``mean``: the head's mean output `means`, from `head_means`) at every position.

    `heads` lists the (layer, head) cells to compute (layers counted from 1); the others are NaN.
    ``None`` computes every head. Raises `DataError` when ``kind="mean"`` comes without `means`.
    """
    layers, n_heads = model.module.config.n_layer, model.module.config.n_head
    if kind == "mean" and means is None:
        raise DataError("ablation_impacts: kind='mean' needs means=head_means(model, reference_rows)")
    cells = [(layer, h) for layer in range(1, layers + 1) for h in range(n_heads)] if heads is None else list(heads)
    plain = answer_logprobs(model, rows)
    out = np.full((len(rows), layers, n_heads), np.nan)
    for layer, head in progress.track(cells, f"{kind} ablation of {len(rows)} rows", unit="heads"):
        site = model.site(f"blocks.{layer}.attn.head{head}")
        edit = Ablate.zero() if kind == "zero" else Ablate.mean(means[site][None, None, :])
        out[:, layer - 1, head] = plain - answer_logprobs(model, rows, {site: edit})
    return out


@dataclass(frozen=True)
class Pairs:
    """Clean/corrupt prompt pairs of the same token length: ``corrupt[i]`` is ``clean[i]`` with
    its parentheses moved (`rebracket`); ``answers[i]`` is the clean prompt's answer (what a
    patch should restore), ``contrasts[i]`` the corrupt prompt's own answer."""

    clean: list[str]
    corrupt: list[str]
    answers: list[str]
    contrasts: list[str]

    def __len__(self) -> int:
        return len(self.clean)

    def take(self, keep: np.ndarray) -> "Pairs":
        idx = np.flatnonzero(keep)
        return Pairs(*([getattr(self, f)[i] for i in idx] for f in ("clean", "corrupt", "answers", "contrasts")))


def pair_rng(seed: int, expression: str) -> random.Random:
    """The generator of one example's pair draw: seeded from (`seed`, the example's expression)
    (`random.Random` hashes the string with SHA-512: the same on every run and platform)."""
    return random.Random(f"{int(seed)}|{expression}")


def rebracketed_pairs(rows: Sequence[Row], correct: np.ndarray, *, clean_correct: bool, n: int, seed: int) -> Pairs:
    """Up to `n` pairs from the parenthesised rows the model answers correctly (or, for the
    wrong-source control, incorrectly), each with a seeded other bracketing of a different value
    (rows with none, like ``1+(2+3)``, are skipped). Raises when no pair can be formed.

    Each candidate row draws from a generator of its own (`pair_rng`: seeded from `seed` and
    its expression): first its rank, then its other bracketing. The pairs are the first `n`
    candidates with another bracketing in rank order, so a row's corrupt prompt depends only on
    the seed and its expression, and which rows are taken on the set of candidates, never on
    their order or on the rows before them."""
    paren = [i for i, r in enumerate(rows) if r.has_parens]
    chosen = [i for i in paren if bool(correct[i]) == clean_correct]
    rngs = {i: pair_rng(seed, rows[i].expression) for i in chosen}
    ranked = sorted(chosen, key=lambda i: (rngs[i].random(), rows[i].expression, i))
    out = Pairs([], [], [], [])
    for i in ranked:
        other = rebracket(rows[i].expression, rngs[i])
        if other is None:
            continue
        out.clean.append(rows[i].expression)
        out.corrupt.append(other)
        out.answers.append(rows[i].answer)
        out.contrasts.append(str(value(other)))
        if len(out) == n:
            break
    if not len(out):
        kind = "correctly" if clean_correct else "incorrectly"
        raise DataError(f"no patching pairs: none of the {len(paren)} parenthesised rows is answered {kind} and has "
                        "another bracketing of a different value; use a larger split, or a model that answers "
                        "some rows correctly and some not")
    return out


@dataclass(frozen=True)
class Patched:
    """Per pair: whether the whole clean answer came out (`exact`), and the logit difference
    first answer token - first contrast token at the first answer position (`logit_diff`)."""

    exact: np.ndarray
    logit_diff: np.ndarray


@torch.no_grad()
def patched(model: LoadedModel, pairs: Pairs, sites: Sequence = (), positions: Sequence[Sequence[bool]] | None = None,
            *, source: str = "clean", target: str = "corrupt") -> Patched:
    """Run each `target` prompt of `pairs` with every head in `sites` patched, at the prompt
    positions `positions[i]` (default: all), from the run on its `source` prompt (same token
    length); read whether the greedy output is exactly the clean answer and the first-token
    logit difference answer - contrast.

    Exact match is teacher-forced: the greedy output is the answer exactly when, fed the answer,
    the argmax at each answer position is the next answer token (then end-of-sequence); so one
    forward per batch decides it. ``source="clean", target="clean"`` with no sites is the clean
    run; with no sites at all, the corrupt run."""
    sources, targets = getattr(pairs, source), getattr(pairs, target)
    prompts, source_rows = model.tokenize(list(targets)), model.tokenize(list(sources))
    for i, (s, t) in enumerate(zip(source_rows, prompts)):
        if len(s) != len(t):
            raise DataError(f"pair {i}: source {sources[i]!r} has {len(s)} tokens but target {targets[i]!r} has "
                            f"{len(t)}; patching aligns positions, so pair prompts of the same token length")
    if positions is not None:
        if len(positions) != len(prompts):
            raise DataError(f"positions has {len(positions)} rows for {len(prompts)} pairs; give one per pair")
        for i, (where, t) in enumerate(zip(positions, prompts)):
            if len(where) != len(t):
                raise DataError(f"positions[{i}] has {len(where)} entries for a {len(t)}-token prompt; give one "
                                "bool per prompt token")
    eos = model.tokenizer.eos_token_id
    answer_rows = [row + [eos] for row in model.tokenize(list(pairs.answers), add_special_tokens=False)]
    ids, mask = pad_rows([p + a for p, a in zip(prompts, answer_rows)], pad_id=model.pad_id)
    edits = {}
    if sites:
        where = torch.zeros_like(mask)
        for i, p in enumerate(prompts):
            where[i, : len(p)] = 1 if positions is None else torch.as_tensor(list(positions[i]), dtype=torch.long)
        resolved = [model.site(s) for s in sites]
        src_ids, src_mask = pad_rows(source_rows, pad_id=model.pad_id)
        with intervene(model, {s: Record() for s in resolved}, masks={model.main_stack: src_mask}) as run:
            model.module(input_ids=src_ids, attention_mask=src_mask)
        for s in resolved:
            recorded = run.recorded[s]
            full = torch.zeros(ids.shape[0], ids.shape[1], recorded.shape[-1], dtype=recorded.dtype)
            full[:, : recorded.shape[1]] = recorded
            edits[s] = Patch(full, Positions.of_mask(where))
    with intervene(model, edits, masks={model.main_stack: mask}):
        logits = model.module(input_ids=ids, attention_mask=mask).logits.float()
    predicted = logits.argmax(-1)
    last = torch.as_tensor([len(p) - 1 for p in prompts])
    rows = torch.arange(len(prompts))
    first = logits[rows, last]
    diff = first[rows, first_tokens(model, pairs.answers)] - first[rows, first_tokens(model, pairs.contrasts)]
    exact = np.array([predicted[i, len(p) - 1: len(p) - 1 + len(a)].tolist() == a
                      for i, (p, a) in enumerate(zip(prompts, answer_rows))], dtype=bool)
    return Patched(exact=exact, logit_diff=diff.numpy().astype(np.float64))


def inside_positions(pairs: Pairs) -> list[list[bool]]:
    """Per pair and prompt position: inside a parenthesis pair of the clean or the corrupt prompt
    (the parentheses included): where the two bracketings can differ."""
    return [[a or b for a, b in zip(inside_parentheses(c), inside_parentheses(d))]
            for c, d in zip(pairs.clean, pairs.corrupt)]


def head_site(name: str) -> str:
    """``"layer2-head2"`` -> ``"blocks.2.attn.head2"``."""
    layer, head = head_id(name)
    return f"blocks.{layer}.attn.head{head}"


def head_name(layer: int, head: int) -> str:
    return f"layer{layer}-head{head}"


def head_id(name: str) -> tuple[int, int]:
    """``"layer2-head2"`` -> (2, 2)."""
    try:
        layer, head = name.removeprefix("layer").split("-head")
        return int(layer), int(head)
    except ValueError:
        raise DataError(f"head {name!r} is not of the form 'layerL-headH' (e.g. 'layer2-head2')") from None
