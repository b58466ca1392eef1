"""Scores: per-example numbers computed from a model's forward pass, optionally under interventions.

    logprob              teacher-forced log P(continuation | input), summed over its tokens
    logprob_diff         log P(a | x) - log P(b | x) (for encoder-decoders the encoder runs once)
    logit_diff           logit[a] - logit[b] at the next-token position
    last_token_accuracy  whether the argmax next token is the first token of the target

Every score takes ``inputs`` (a list of n strings) and returns a float tensor ``[n]`` (bool
for accuracy). Interventions act at the positions of the input's tokens (`Positions` index the
input; for a decoder-only model the teacher-forced continuation is not intervened on), so
``logprob`` of a one-token continuation agrees with ``next_token_logits`` under any intervention.

All rows run as one right-padded batch; pass ``batch_size`` to chunk when no
interventions are given (chunks are formed longest first and results come back in input order) (an intervention with per-row tensors fits one batch, so chunking
belongs to the caller, e.g. a sweep). ``batch_size="auto"`` sizes the chunks from the memory
available and one row's measured peak (at most `AUTO_CAP`); a chunk that runs out of memory
runs again at half the size and later chunks keep it (`harness.measures.batching`). Batched
and padded runs equal one-example runs within 1e-4 (pinned by tests). Continuations are tokenized without special tokens, so
``logprob(x, "intro")`` is the probability that the output *begins* with "intro".
"""

from __future__ import annotations

import contextlib
import numbers
from typing import Any, Callable, Mapping, Sequence

import torch

from harness import progress
from harness.errors import DataError, InterventionError
from harness.interventions import intervene
from harness.measures.batching import AUTO, resolve_batch_size, run_batched
from harness.models.loaded import LoadedModel, length_order, pad_rows
from harness.models.logits import last_logits
from harness.models.sites import Site

__all__ = ["logprob", "logprob_diff", "logprob_diff_from_encoding", "logit_diff", "last_token_accuracy", "next_token_logits"]

Interventions = Mapping[Site | str, Any]


def _per_row(value: str | int | Sequence[Any], n: int, name: str) -> list[Any]:
    if isinstance(value, (str, int)):
        return [value] * n
    rows = list(value)
    if len(rows) != n:
        raise DataError(f"`{name}` has {len(rows)} entries but `inputs` has {n}; give one per input or a single value")
    return rows


def _check_inputs(inputs: Sequence[str]) -> list[str]:
    if isinstance(inputs, str):
        raise DataError("`inputs` must be a list of strings, got a single str; wrap it in a list")
    rows = list(inputs)
    if not rows:
        raise DataError("`inputs` is empty; pass at least one example")
    return rows


# The largest chunk of rows a batch_size of "auto" chooses.
AUTO_CAP = 256


def _batched(model: LoadedModel, rows: list[str], batch_size: int | str | None, interventions: Interventions | None,
             max_length: int | None, label: str, compute: Callable[[list[int]], torch.Tensor]) -> torch.Tensor:
    """``compute(chunk)`` (the rows at those indices) over all rows, in input order: one batch
    of every row in order (`batch_size` None), or chunks of `batch_size` longest first, each
    halved when it runs out of memory (`harness.measures.batching.run_batched`)."""
    if batch_size is None:
        chunk = list(range(len(rows)))
        return _in_input_order([compute(chunk)], [chunk])
    if not (isinstance(batch_size, str) and batch_size == AUTO) and (
            isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1):
        raise DataError(f"`batch_size` must be a positive integer, got {batch_size!r}; or None (one batch) "
                        "or 'auto' (sized from the memory available)")
    if interventions:
        raise InterventionError(
            f"`batch_size`={batch_size} with interventions: per-row intervention tensors describe "
            "one batch; chunk the rows yourself (as sweep() does) or drop `batch_size`"
        )
    order = length_order(model.tokenize(rows, max_length=max_length))
    size = resolve_batch_size(batch_size, probe=lambda: compute(order[:1]), rows=len(rows), cap=AUTO_CAP,
                              device=model.device)
    with progress.task(label, total=len(rows), unit="rows") if len(rows) > size else contextlib.nullcontext() as bar:
        def step(start: int, stop: int) -> torch.Tensor:
            got = compute(order[start:stop])
            if bar is not None:
                bar.update(stop)
            return got

        done, _ = run_batched(step, len(rows), size, what=label)
    return _in_input_order([got for _, _, got in done], [order[a:b] for a, b, _ in done])


def _in_input_order(parts: list[torch.Tensor], chunks: list[list[int]]) -> torch.Tensor:
    out = torch.cat(parts).cpu()
    index = torch.as_tensor([i for chunk in chunks for i in chunk])
    return out[index.argsort()]


def _stacks(model: LoadedModel) -> tuple[str, str]:
    """The names of the stack the input tokens index and of the one the output head reads (the
    architecture table's first and last stacks: ``encoder``/``decoder`` for T5, the same stack for
    a decoder-only model)."""
    stacks = model.layout.stacks
    return stacks[0].name, stacks[-1].name


def _split_by_stack(interventions: Interventions | None, model: LoadedModel) -> tuple[dict, dict]:
    """The interventions on the input's stack and those on the output stack of an encoder-decoder."""
    enc, dec = {}, {}
    _, output = _stacks(model)
    for key, value in (interventions or {}).items():
        site = model.site(key)
        (dec if model.is_encoder_decoder and site.stack == output else enc)[site] = value
    return enc, dec


def _token_id(model: LoadedModel, token: str | int) -> int:
    if isinstance(token, int):
        return token
    ids = model.tokenize([token], add_special_tokens=False)[0]
    if len(ids) != 1:
        raise DataError(f"answer token {token!r} is {len(ids)} tokens {ids} for this tokenizer; give a single token or its id")
    return ids[0]


# --------------------------------------------------------------------------- core forwards


@torch.no_grad()
def _encode(model: LoadedModel, inputs: list[str], interventions: dict, max_length: int | None):
    ids, mask = pad_rows(model.tokenize(inputs, max_length=max_length), pad_id=model.pad_id, device=model.device)
    with intervene(model, interventions, masks={_stacks(model)[0]: mask}):
        hidden = model.module.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
    return hidden, mask


@torch.no_grad()
def _decode_logprob(model: LoadedModel, hidden: torch.Tensor, enc_mask: torch.Tensor,
                    continuations: list[str], interventions: dict) -> torch.Tensor:
    rows = model.tokenize(continuations, add_special_tokens=False)
    _require_tokens(rows, continuations)
    start = int(model.module.config.decoder_start_token_id)
    dec_ids, dec_mask = pad_rows([[start] + r[:-1] for r in rows], pad_id=model.pad_id, device=model.device)
    labels, _ = pad_rows(rows, pad_id=0, device=model.device)
    from transformers.modeling_outputs import BaseModelOutput

    source, output = _stacks(model)
    with intervene(model, interventions, masks={source: enc_mask, output: dec_mask}):
        logits = model.module(encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
                              attention_mask=enc_mask, decoder_input_ids=dec_ids,
                              decoder_attention_mask=dec_mask).logits
    logp = torch.log_softmax(logits.float(), -1).gather(-1, labels[..., None])[..., 0]
    return (logp * dec_mask).sum(1)


@torch.no_grad()
def logprob_diff_from_encoding(model: LoadedModel, hidden: torch.Tensor, enc_mask: torch.Tensor,
                               a: Sequence[str], b: Sequence[str]) -> torch.Tensor:
    """``log P(a | x) - log P(b | x)`` from encoder states ``[n, pos, d]``, both continuations
    decoded in one pass (rows ``[a_0..a_n, b_0..b_n]``), ``[n]``."""
    n = hidden.shape[0]
    both = _decode_logprob(model, torch.cat([hidden, hidden]), torch.cat([enc_mask, enc_mask]),
                           list(a) + list(b), {})
    return both[:n] - both[n:]


@torch.no_grad()
def _causal_logprob(model: LoadedModel, inputs: list[str], continuations: list[str],
                    interventions: dict, max_length: int | None) -> torch.Tensor:
    prompts = model.tokenize(inputs, max_length=max_length)
    conts = model.tokenize(continuations, add_special_tokens=False)
    _require_tokens(conts, continuations)
    ids, mask = pad_rows([p + c for p, c in zip(prompts, conts)], pad_id=model.pad_id, device=model.device)
    # interventions act on the input's tokens only, as on an encoder-decoder's encoder and in
    # next_token_logits: Positions.last() is the last *input* token (acting at the last
    # continuation token could never change the score), and the continuation is left as it is
    input_mask = torch.zeros_like(mask)
    for i, p in enumerate(prompts):
        input_mask[i, : len(p)] = 1
    with intervene(model, interventions, masks={model.main_stack: input_mask}):
        logits = model.module(input_ids=ids, attention_mask=mask).logits
    logp = torch.log_softmax(logits.float(), -1)
    total = torch.zeros(len(inputs), device=logits.device)
    for i, (p, c) in enumerate(zip(prompts, conts)):
        pos = torch.arange(len(p) - 1, len(p) + len(c) - 1, device=logits.device)
        total[i] = logp[i, pos, torch.as_tensor(c, device=logits.device)].sum()
    return total


def _require_tokens(rows: list[list[int]], texts: list[str]) -> None:
    for r, t in zip(rows, texts):
        if not r:
            raise DataError(f"continuation {t!r} has no tokens; score a non-empty continuation")


# --------------------------------------------------------------------------- public scores


def logprob(model: LoadedModel, inputs: Sequence[str], continuation: str | Sequence[str], *,
            interventions: Interventions | None = None, batch_size: int | str | None = None,
            max_length: int | None = None) -> torch.Tensor:
    """Teacher-forced ``log P(continuation | input)`` summed over the continuation's tokens, ``[n]``.

    Example::

        logprob(tacgen, states, "intro", max_length=384)
    """
    rows = _check_inputs(inputs)
    conts = _per_row(continuation, len(rows), "continuation")

    def compute(chunk: list[int]) -> torch.Tensor:
        texts, targets = [rows[i] for i in chunk], [conts[i] for i in chunk]
        if model.is_encoder_decoder:
            enc, dec = _split_by_stack(interventions, model)
            hidden, mask = _encode(model, texts, enc, max_length)
            return _decode_logprob(model, hidden, mask, targets, dec)
        return _causal_logprob(model, texts, targets, dict(interventions or {}), max_length)

    return _batched(model, rows, batch_size, interventions, max_length, "log-probabilities", compute)


def logprob_diff(model: LoadedModel, inputs: Sequence[str], a: str | Sequence[str], b: str | Sequence[str], *,
                 interventions: Interventions | None = None, batch_size: int | str | None = None,
                 max_length: int | None = None) -> torch.Tensor:
    """``log P(a | x) - log P(b | x)`` per input, ``[n]``.

    Example::

        logprob_diff(tacgen, states, "intro", "apply")   # > 0 where the model prefers intro

    For an encoder-decoder the encoder runs once and both continuations decode from its output.
    """
    rows = _check_inputs(inputs)
    conts_a, conts_b = _per_row(a, len(rows), "a"), _per_row(b, len(rows), "b")
    if not model.is_encoder_decoder:
        return (logprob(model, rows, conts_a, interventions=interventions, batch_size=batch_size, max_length=max_length)
                - logprob(model, rows, conts_b, interventions=interventions, batch_size=batch_size, max_length=max_length))
    enc, dec = _split_by_stack(interventions, model)

    def compute(chunk: list[int]) -> torch.Tensor:
        hidden, mask = _encode(model, [rows[i] for i in chunk], enc, max_length)
        return (_decode_logprob(model, hidden, mask, [conts_a[i] for i in chunk], dec)
                - _decode_logprob(model, hidden, mask, [conts_b[i] for i in chunk], dec))

    return _batched(model, rows, batch_size, interventions, max_length, "log-probability differences", compute)


@torch.no_grad()
def next_token_logits(model: LoadedModel, inputs: Sequence[str], *,
                      interventions: Interventions | None = None, batch_size: int | str | None = None,
                      max_length: int | None = None) -> torch.Tensor:
    """Logits of the next token after each input, ``[n, vocab]`` (float32).

    Decoder-only: at the last real token of each row. Encoder-decoder: the first decoder step.
    """
    rows = _check_inputs(inputs)

    def compute(chunk: list[int]) -> torch.Tensor:
        texts = [rows[i] for i in chunk]
        if model.is_encoder_decoder:
            enc, dec = _split_by_stack(interventions, model)
            hidden, mask = _encode(model, texts, enc, max_length)
            start = int(model.module.config.decoder_start_token_id)
            dec_ids = torch.full((hidden.shape[0], 1), start, dtype=torch.long, device=model.device)
            dec_mask = torch.ones_like(dec_ids)
            from transformers.modeling_outputs import BaseModelOutput

            source, output = _stacks(model)
            with intervene(model, dec, masks={source: mask, output: dec_mask}):
                logits = model.module(encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
                                      attention_mask=mask, decoder_input_ids=dec_ids,
                                      decoder_attention_mask=dec_mask).logits[:, 0]
        else:
            ids, mask = pad_rows(model.tokenize(texts, max_length=max_length), pad_id=model.pad_id, device=model.device)
            with intervene(model, dict(interventions or {}), masks={model.main_stack: mask}):
                logits = last_logits(model, ids, mask)
        return logits.float()

    return _batched(model, rows, batch_size, interventions, max_length, "next-token logits", compute)


def logit_diff(model: LoadedModel, inputs: Sequence[str], a: str | int | Sequence[str | int],
               b: str | int | Sequence[str | int], **kwargs: Any) -> torch.Tensor:
    """``logit[a] - logit[b]`` of the next token, ``[n]``; `a`/`b` one token or one per input.

    Example::

        logit_diff(arith, prompts, answers, wrong_answers)
    """
    logits = next_token_logits(model, inputs, **kwargs)
    n = logits.shape[0]
    ta = torch.as_tensor([_token_id(model, t) for t in _per_row(a, n, "a")])
    tb = torch.as_tensor([_token_id(model, t) for t in _per_row(b, n, "b")])
    rows = torch.arange(n)
    return logits[rows, ta] - logits[rows, tb]


def last_token_accuracy(model: LoadedModel, inputs: Sequence[str], targets: str | Sequence[str],
                        **kwargs: Any) -> torch.Tensor:
    """Whether the argmax next token equals the first token of each target, bool ``[n]``."""
    logits = next_token_logits(model, inputs, **kwargs)
    firsts = []
    for t in _per_row(targets, logits.shape[0], "targets"):
        ids = model.tokenize([t], add_special_tokens=False)[0] if isinstance(t, str) else [t]
        if not ids:
            raise DataError(f"target {t!r} has no tokens")
        firsts.append(ids[0])
    return logits.argmax(-1) == torch.as_tensor(firsts)
