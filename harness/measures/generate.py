"""Greedy decoding for decoder-only models, and exact-match accuracy of whole answers.

    greedy(model, prompts, max_new_tokens=8)          the argmax continuation of each prompt
    exact_match(model, prompts, answers)              bool per prompt: the whole answer, then a stop

Prompts are batched by token length, so no row is ever padded: a batched run is the same
computation as one prompt at a time. Decoding stops at the model's end-of-sequence token (or
at any of `stop`'s strings) and returns the text generated before it.
"""

from __future__ import annotations

from typing import Sequence

import torch

from harness import progress
from harness.errors import DataError
from harness.interventions import intervene
from harness.models.load import LoadedModel

__all__ = ["greedy", "exact_match"]


def _by_length(rows: list[list[int]], batch_size: int) -> list[list[int]]:
    groups: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(len(row), []).append(i)
    return [idx[s:s + batch_size] for _, idx in sorted(groups.items()) for s in range(0, len(idx), batch_size)]


@torch.no_grad()
def greedy(model: LoadedModel, prompts: Sequence[str], *, max_new_tokens: int = 8, stop: Sequence[str] = (),
           interventions=None, batch_size: int = 256, _ids: bool = False) -> list:
    """The greedy continuation of each prompt (at most `max_new_tokens` tokens, cut at the end-of-
    sequence token or at the first of `stop`). With `interventions`, every forward runs under
    them (their `Positions` index the growing sequence; use whole-site edits)."""
    if model.is_encoder_decoder:
        raise DataError(f"greedy() decodes decoder-only models; {model.spec!r} is an encoder-decoder "
                        "(use its `generate` method)")
    if isinstance(prompts, str):
        raise DataError("`prompts` must be a list of strings, got a single str; wrap it in a list")
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 1:
        raise DataError(f"`max_new_tokens` must be a positive integer, got {max_new_tokens!r}")
    rows = model.tokenize(list(prompts))
    if any(not r for r in rows):
        raise DataError("a prompt has no tokens; every prompt needs at least one")
    eos = getattr(model.tokenizer, "eos_token_id", None)
    out: list = [""] * len(rows)
    with progress.task("greedy decoding", total=len(rows), unit="prompts") as bar:
        for idx in _by_length(rows, batch_size):
            ids = torch.as_tensor([rows[i] for i in idx], dtype=torch.long, device=model.device)
            start = ids.shape[1]
            done = torch.zeros(len(idx), dtype=torch.bool, device=model.device)
            for _ in range(max_new_tokens):
                mask = torch.ones_like(ids)
                with intervene(model, dict(interventions or {}), masks={model.main_stack: mask}):
                    logits = model.module(input_ids=ids, attention_mask=mask).logits[:, -1]
                nxt = logits.argmax(-1)
                if eos is not None:
                    done |= nxt == eos
                ids = torch.cat([ids, nxt[:, None]], dim=1)
                if bool(done.all()):
                    break
            for row, i in enumerate(idx):
                new = ids[row, start:].tolist()
                if _ids:  # exact_match reads the raw ids, end-of-sequence included
                    out[i] = new
                    continue
                if eos is not None and eos in new:
                    new = new[: new.index(eos)]
                text = model.tokenizer.decode(new, skip_special_tokens=True)
                for s in stop:
                    text = text.split(s)[0]
                out[i] = text
            bar.advance(len(idx))
    return out


def exact_match(model: LoadedModel, prompts: Sequence[str], answers: Sequence[str], **kw) -> list[bool]:
    """Whether the greedy continuation of each prompt is exactly its answer (the whole string):
    with an end-of-sequence token, the answer's tokens and then that token, so an answer that
    runs on ("12" for "1") or is cut off by `max_new_tokens` does not count."""
    if len(prompts) != len(answers):
        raise DataError(f"`prompts` has {len(prompts)} rows but `answers` has {len(answers)}; give one answer per prompt")
    eos = getattr(model.tokenizer, "eos_token_id", None)
    if eos is None:
        kw.setdefault("max_new_tokens", max(len(model.tokenize([a], add_special_tokens=False)[0]) for a in answers) + 1)
        return [got == want for got, want in zip(greedy(model, prompts, **kw), answers)]
    wanted = [model.tokenize([a], add_special_tokens=False)[0] + [eos] for a in answers]
    kw.setdefault("max_new_tokens", max(len(w) for w in wanted))
    got = greedy(model, prompts, _ids=True, **kw)
    return [g[: len(w)] == w for g, w in zip(got, wanted)]
