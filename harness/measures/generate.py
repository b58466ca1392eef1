"""Greedy decoding for decoder-only models, under interventions, and exact match of whole answers.

    generate(model, prompts, interventions=..., stop=[END_OF_FUNCTION])   a Generation per row
    greedy(model, prompts, max_new_tokens=8)       the argmax continuation of each prompt (text)
    exact_match(model, prompts, answers)           bool per prompt: the whole answer, then a stop
    Generation                                     text, ids, why it stopped, and (optionally) logits
    END_OF_FUNCTION                                stop rule: a line that starts with a non-space

Each row stops at the model's end-of-sequence token, at any of `stop` (strings or compiled
patterns, searched in the row's generated text) or after `max_new_tokens`. A per-row ``alpha``
(``Add(d, alpha=coefficients)``, shape ``[len(prompts)]``) steers each row with its own
coefficient, so one call decodes a whole grid (the same prompt on several rows). With the
key/value cache (the default wherever the plan allows it, see `harness.measures.decoding`) the
prompt runs once and each step runs only the new token; the result equals the plain loop (one
prompt, no cache, the whole sequence recomputed under the same hook at every step) token for
token, and its logits within float rounding (pinned by tests on GPT-2, Qwen2 and Gemma-2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from harness import progress
from harness.errors import DataError, InterventionError
from harness.measures.decoding import END_OF_FUNCTION, cacheable, check_rows, decode_batch, rows_of, stop_index
from harness.models.loaded import LoadedModel, length_order

__all__ = ["generate", "Generation", "END_OF_FUNCTION", "greedy", "exact_match"]


@dataclass(frozen=True)
class Generation:
    """One row's greedy continuation.

    ``text``: the decoded continuation, without the end-of-sequence token and cut before the
    earliest stop; ``ids``: every generated token id (the end-of-sequence token, and the tokens
    that made the stop, included); ``stop``: ``"eos"``, ``"stop"`` or ``"max_new_tokens"``;
    ``logits``: float32 ``[len(ids), vocab]``, the next-token logits each id was the argmax of
    (only with ``return_logits=True``, else None).
    """

    text: str
    ids: list[int]
    stop: str
    logits: torch.Tensor | None = None


def _batches(rows: list[list[int]], batch_size: int, group: bool) -> list[list[int]]:
    if not group:  # longest first, so a batch pads little
        order = length_order(rows)
        return [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    groups: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(len(row), []).append(i)
    return [idx[s:s + batch_size] for _, idx in sorted(groups.items()) for s in range(0, len(idx), batch_size)]


def _check(model: LoadedModel, prompts: Any, max_new_tokens: Any, batch_size: Any, caller: str) -> None:
    if model.is_encoder_decoder:
        raise DataError(f"{caller}() decodes decoder-only models; {model.spec!r} is an encoder-decoder "
                        "(use its `generate` method)")
    if isinstance(prompts, str):
        raise DataError("`prompts` must be a list of strings, got a single str; wrap it in a list")
    if len(prompts) == 0:
        raise DataError("`prompts` is empty; pass at least one prompt")
    for name, value in (("max_new_tokens", max_new_tokens), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise DataError(f"`{name}` must be a positive integer, got {value!r}")


@torch.no_grad()
def generate(model: LoadedModel, prompts: Sequence[str], *, max_new_tokens: int = 64,
             interventions: Mapping[Any, Any] | None = None, stop: Sequence[Any] = (),
             cache: bool | None = None, group_by_length: bool = False, batch_size: int = 64,
             return_logits: bool = False) -> list[Generation]:
    """Greedy continuation of every row of `prompts`, under `interventions`, as `Generation`s.

    Example (7 coefficients of one direction, every prompt at each)::

        coefs = [-8, -4, -2, 0, 2, 4, 8]
        rows = [p for p in prompts for _ in coefs]
        alpha = torch.tensor([c for _ in prompts for c in coefs], dtype=torch.float32)
        out = generate(m, rows, interventions={"blocks.6.resid_post": Add(d, alpha=alpha)},
                       max_new_tokens=64, stop=[END_OF_FUNCTION])

    The interventions act at every forward of the decoding, on the prompt and on each generated
    token alike. A tensor ``alpha`` of an `Add` or `RmsAdd` is per row, ``[len(prompts)]``;
    everything else is shared by all rows. Two directions in one call: chain two edits whose
    alphas are 0 on the other direction's rows (adding 0 changes nothing).

    `cache`: None (default) uses the key/value cache when the plan is `cacheable` (Add, RmsAdd,
    zero/mean Ablate at all positions) and otherwise recomputes the whole sequence at every step
    (then a `Positions` indexes the growing sequence); True requires the cache; False never uses
    it. With the cache, batches of `batch_size` rows (longest first) are left-padded, unless
    `group_by_length` (batches of one prompt length, no padding); without it, batches are always
    grouped by length. `stop`: strings, or compiled patterns such as `END_OF_FUNCTION`, searched
    in the generated text only (not the prompt).

    Raises `DataError` on a single string, an empty `prompts`, `max_new_tokens` or `batch_size`
    below 1, a per-row ``alpha`` not of shape ``[len(prompts)]``, or an encoder-decoder model;
    `InterventionError` for ``cache=True`` with a plan that cannot be cached.
    """
    return _run(model, prompts, max_new_tokens=max_new_tokens, interventions=interventions, stop=stop,
                cache=cache, group_by_length=group_by_length, batch_size=batch_size,
                return_logits=return_logits, caller="generate")


def _run(model: LoadedModel, prompts: Sequence[str], *, max_new_tokens: int, interventions: Any,
         stop: Sequence[Any], cache: bool | None, group_by_length: bool, batch_size: int,
         return_logits: bool, caller: str) -> list[Generation]:
    _check(model, prompts, max_new_tokens, batch_size, caller)
    plan = dict(interventions or {})
    stop = [stop] if isinstance(stop, str) else list(stop)
    rows = model.tokenize(list(prompts))
    if any(not r for r in rows):
        raise DataError("a prompt has no tokens; every prompt needs at least one")
    check_rows(model, plan, len(rows))
    if cache is None:
        cache = cacheable(plan)
    elif cache and not cacheable(plan):
        raise InterventionError(
            "`cache=True` needs edits that act at every position, position by position (Add, RmsAdd, "
            "Ablate.zero/mean at Positions.all()); this plan changes with the sequence, so pass cache=False")
    eos = getattr(model.tokenizer, "eos_token_id", None)
    out: list[Generation | None] = [None] * len(rows)
    with progress.task("greedy decoding", total=len(rows), unit="prompts") as bar:
        for idx in _batches(rows, batch_size, group_by_length or not cache):
            def finish(j: int, ids: list[int], logits: list[torch.Tensor], reason: str, idx=idx) -> None:
                body = ids[:-1] if reason == "eos" else ids
                text = model.tokenizer.decode(body, skip_special_tokens=True)
                cut = stop_index(text, stop)
                out[idx[j]] = Generation(text if cut is None else text[:cut], list(ids), reason,
                                         torch.stack(logits) if return_logits else None)
                bar.advance(1)

            decode_batch(model, [rows[i] for i in idx], lambda live, idx=idx: rows_of(plan, [idx[j] for j in live]),
                         max_new_tokens=max_new_tokens, eos=eos, stops=stop, cache=cache, on_stop=finish)
    return out  # type: ignore[return-value]


def greedy(model: LoadedModel, prompts: Sequence[str], *, max_new_tokens: int = 8, stop: Sequence[str] = (),
           interventions=None, batch_size: int = 256, cache: bool | None = None, _ids: bool = False) -> list:
    """The greedy continuation of each prompt as text (at most `max_new_tokens` tokens, cut at the
    end-of-sequence token or at the first of `stop`): `generate` with batches of one prompt length.
    With `interventions`, every forward runs under them (per-row alphas ``[len(prompts)]``; a plan
    that is not `cacheable` recomputes the sequence each step and its `Positions` index the
    growing sequence). Errors as `generate`'s."""
    got = _run(model, prompts, max_new_tokens=max_new_tokens, interventions=interventions,
               stop=() if _ids else stop, cache=cache, group_by_length=True, batch_size=batch_size,
               return_logits=False, caller="greedy")
    return [g.ids if _ids else g.text for g in got]  # exact_match reads the ids, end-of-sequence included


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
