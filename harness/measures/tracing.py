"""Causal tracing (ROME): noise the subject's embeddings, restore one clean state, read the metric.

    trace_resid_map(model, prompts, spans, metric, std=)   restore clean ``blocks.L.resid_pre`` at
                                                         every (layer, position) into each noise
                                                         sample's corrupted run
    TraceMap                                             values ``[n, samples, layers, pos]``, the
                                                         clean and corrupted baselines, indirect
                                                         and total effects
    noise_seed(seed, sample)                             the `Noise` seed of one sample
    embedding_std(model, token_ids)                      the std of the embeddings the first block
                                                         sees for those tokens (ROME's noise unit)

The method of Meng et al. 2022, "Locating and Editing Factual Associations in GPT" (ROME),
Sec. 2.1: run the clean prompt; run it again with Gaussian noise ``std * N(0, 1)`` added to the
embeddings of a span of positions (the subject), the *corrupted run*; then, for each state
(layer, position), run the corrupted run with that one hidden state restored to its clean value
and read the metric (ROME: the probability of the correct answer, `answer_prob`). The *indirect
effect* of a state is ``metric(restored) - metric(corrupted)``, averaged over noise samples;
the *total effect* of the corruption is ``metric(clean) - metric(corrupted)``.

Where the noise goes: ``blocks.1.resid_pre``, the input of the first block (the embedding
output as the blocks see it: GPT-2's token plus position embeddings, which is ROME's noise on
the token embeddings since addition commutes; Llama/Qwen2's token embeddings; Gemma's scaled
ones), at the span's positions, drawn by `harness.interventions.Noise` with the seed
``noise_seed(seed, sample)``: a function of (seed, sample, the prompt's real tokens, position)
only, so a prompt gets the same noise in any batch, at any batch size, next to any other
prompts, and the samples are independent draws. A restored state is ``blocks.L.resid_pre``
(the input of block L, TransformerLens' ``blocks.{L-1}.hook_resid_pre``) at one position.

How it runs (`harness.measures.patching_engine`, with the noised runs as the corrupt rows and
each prompt's clean run as the source of its samples): one plain forward of the clean prompts,
one plain forward of the corrupted runs of every (prompt, sample) in one batch (inside
``intervene`` with the noise), each capturing every block's input and call arguments; a cell restoring a state at block
L replays only blocks L.. of its corrupted run (on the suffix path only from the restored
position), cells of all prompts and samples in the batch dimension (rows = prompts x samples x
cells, chunks of ``batch_size``). A state before the span's start is the same in the clean and
the corrupted run (the model is causal and the noise starts at the span), and so is a state of
block 1 outside the span (an embedding); restoring it is the corrupted run itself: its value is
the corrupted metric, with no forward. Values equal a per-cell loop of full forwards (each with
the same `Noise` and a `Patch` of the clean state) within 1e-4 (tests/harness/measures/test_tracing.py). Every
hook is removed when a call returns or raises.

The metric protocol is `harness.measures.patching`'s: ``metric(logits [rows, vocab], pairs
[rows]) -> [rows]``, logits at the last real token; here ``pairs`` holds the *prompt* index
of each row (whatever its sample), so per-prompt targets are ``targets[pairs]``.
"""

from __future__ import annotations

import hashlib
import math
import numbers
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from harness.errors import DataError, InterventionError
from harness.interventions import Noise, Positions, intervene
from harness.models.loaded import LoadedModel, pad_rows
from harness.measures.patching import Metric
from harness.measures.patching_engine import (Block, Column, check_map_args, each_position, patch_cells, plain_run,
                                              token_rows)

__all__ = ["TraceMap", "trace_resid_map", "noise_seed", "embedding_std"]


def noise_seed(seed: int, sample: int) -> int:
    """The `Noise` seed of noise sample `sample` of a trace with seed `seed`: 63 bits of
    blake2b over both, so different (seed, sample) give independent streams (not ``seed +
    sample``, under which sample 1 of seed 0 would be sample 0 of seed 1)."""
    h = hashlib.blake2b(f"{int(seed)}|{int(sample)}".encode(), digest_size=8, person=b"harness.trace")
    return int.from_bytes(h.digest(), "little") >> 1


@dataclass(frozen=True)
class TraceMap:
    """Causal-tracing results.

    ``values[i, s, j, p]`` is the metric of prompt i's corrupted run under noise sample s with
    ``blocks.{j+1}.resid_pre`` at position p restored to its clean value (NaN past the prompt's
    length). ``clean[i]`` is the clean run's metric, ``corrupted[i, s]`` the corrupted run's
    (no state restored). ``spans[i]`` is the noised ``(start, end)`` of prompt i.
    """

    values: torch.Tensor      # [n, samples, layers, pos] float32
    clean: torch.Tensor       # [n]
    corrupted: torch.Tensor   # [n, samples]
    lengths: torch.Tensor     # [n] tokens per prompt
    spans: tuple[tuple[int, int], ...]
    std: float
    seed: int
    fingerprint: str

    @property
    def n(self) -> int:
        return int(self.values.shape[0])

    @property
    def samples(self) -> int:
        return int(self.values.shape[1])

    @property
    def layers(self) -> list[int]:
        """The harness layer of each row of a map (``blocks.{L}.resid_pre``), 1..n_layers."""
        return list(range(1, self.values.shape[2] + 1))

    def restored(self) -> torch.Tensor:
        """The restored metric averaged over noise samples, ``[n, layers, pos]``."""
        return self.values.mean(1)

    def indirect_effect(self) -> torch.Tensor:
        """ROME's indirect effect per prompt, ``[n, layers, pos]``: the mean over samples of
        ``values - corrupted`` (NaN past a prompt's length)."""
        return (self.values - self.corrupted[:, :, None, None]).mean(1)

    def total_effect(self) -> torch.Tensor:
        """ROME's total effect of the corruption per prompt, ``[n]``: ``clean - mean corrupted``."""
        return self.clean - self.corrupted.mean(1)

    def mean(self) -> torch.Tensor:
        """The restored metric averaged over samples and prompts, ``[layers, pos]`` (positions past
        a prompt's length are skipped)."""
        return self.restored().nanmean(0)

    def mean_indirect_effect(self) -> torch.Tensor:
        """The indirect effect averaged over prompts, ``[layers, pos]`` (ROME's heat maps)."""
        return self.indirect_effect().nanmean(0)


def embedding_std(model: LoadedModel, token_ids: Sequence[int]) -> float:
    """The standard deviation (over tokens and dimensions) of the input embeddings of the distinct
    `token_ids`, as the model's embedding module returns them: ROME's noise level is 3 x this
    over the corpus's tokens (Meng et al. 2022, Sec. 2.1). Computed through the module's forward,
    not its weight, so a model that scales its embeddings (Gemma's sqrt(d_model)) gets the scale
    the first block sees. Raises `DataError` for no tokens or an id outside the vocabulary."""
    ids = sorted({int(t) for t in token_ids})
    embed = model.module.get_input_embeddings()
    vocab = int(embed.weight.shape[0])
    if not ids or ids[0] < 0 or ids[-1] >= vocab:
        raise DataError(f"`token_ids` must be a non-empty set of ids in 0..{vocab - 1}, got "
                        f"{ids[:3] + ['...'] + ids[-3:] if len(ids) > 6 else ids}")
    with torch.no_grad():
        emb = embed(torch.tensor(ids, device=embed.weight.device))
    return float(emb.float().std())


def _std(std: Any) -> float:
    if isinstance(std, torch.Tensor) and std.numel() == 1:
        std = std.item()
    if isinstance(std, bool) or not isinstance(std, numbers.Real) or not math.isfinite(float(std)) \
            or float(std) <= 0:
        raise InterventionError(
            f"`std` must be a finite number > 0 (the noise's standard deviation, in the units of the "
            f"embeddings), got {std!r}; ROME uses 3 x the standard deviation of the embeddings over a "
            "corpus, e.g. std = 3 * float(embeddings.std())")
    return float(std)


def _spans(spans: Any, rows: list[list[int]]) -> tuple[tuple[int, int], ...]:
    if isinstance(spans, torch.Tensor):
        spans = spans.tolist()
    if isinstance(spans, (str, bytes)) or not isinstance(spans, Sequence):
        raise DataError(f"`spans` must be one (start, end) per prompt, got {type(spans).__name__}")
    if len(spans) != len(rows):
        raise DataError(f"`spans` has {len(spans)} spans but `prompts` has {len(rows)} prompts; give one "
                        "(start, end) token span per prompt")
    out = []
    for i, (span, row) in enumerate(zip(spans, rows)):
        try:
            a, b = span
            if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, numbers.Integral) \
                    or not isinstance(b, numbers.Integral):
                raise TypeError
        except (TypeError, ValueError):
            raise DataError(f"`spans[{i}]` must be a pair of token positions (start, end), got {span!r}") from None
        a, b = int(a), int(b)
        if not 0 <= a < b <= len(row):
            raise DataError(f"`spans[{i}]` is ({a}, {b}) but prompt {i} has {len(row)} tokens; a span is "
                            f"[start, end) with 0 <= start < end <= {len(row)} (token positions, not characters)")
        out.append((a, b))
    return tuple(out)


@torch.no_grad()
def trace_resid_map(model: LoadedModel, prompts: Sequence[Any], spans: Sequence[tuple[int, int]],
                    metric: Metric, *, std: float, samples: int = 10, seed: int | None = None,
                    batch_size: int = 256) -> TraceMap:
    """ROME's causal trace of ``blocks.L.resid_pre`` at every layer L and position.

    Example::

        tm = trace_resid_map(m, ["The Eiffel Tower is in"], [(0, 4)], answer_prob(paris_id),
                             std=3 * float(m.module.get_input_embeddings().weight.std()))
        tm.values               # [n, samples, n_layers, max_len]; NaN past a prompt's length
        tm.indirect_effect()    # [n, n_layers, max_len]: mean over samples of values - corrupted
        tm.mean_indirect_effect()  # [n_layers, max_len], averaged over prompts

    `prompts`: a list of strings (tokenized with ``model.tokenize``) or of token-id lists, of any
    lengths (right padding). `spans`: one ``(start, end)`` per prompt, the token positions
    ``[start, end)`` whose embeddings get noise. `std`: the noise's standard deviation in the
    units of the embeddings (a finite number > 0). `samples`: noise samples per prompt, sample
    s drawn with seed ``noise_seed(seed, s)``. `metric`: see the module docstring.

    All samples' corrupted runs go in one plain forward of ``n * samples`` rows and their cells
    are batched together (no loop over samples).

    Raises `InterventionError` for an encoder-decoder model, a bad `std`, or noise too small to
    change the embeddings; `DataError` for empty prompts, a span outside its prompt or a count
    of spans other than the prompts', a bad `seed` / `samples` / `batch_size` / `metric`;
    `ShapeError` for a metric that does not return one value per row.
    """
    std = _std(std)
    from harness.verdicts.context import draw_seed

    seed = draw_seed(seed, owner="trace_resid_map")
    if isinstance(samples, bool) or not isinstance(samples, numbers.Integral) or samples < 1:
        raise DataError(f"`samples` must be a positive integer, got {samples!r}")
    check_map_args(metric, batch_size)
    if model.is_encoder_decoder:
        raise InterventionError(f"causal tracing needs a decoder-only model; {model.name} is an encoder-decoder")
    rows = token_rows(model, prompts, "prompts")
    if not rows:
        raise DataError("`prompts` is empty; give at least one prompt")
    for i, row in enumerate(rows):
        if not row:
            raise DataError(f"prompt {i} has no tokens; each prompt needs at least one token")
    spans_ = _spans(spans, rows)
    S = int(samples)
    ids, mask = pad_rows(rows, pad_id=model.pad_id, device=model.device)
    n, width = mask.shape
    stack = model.main_stack

    # the corrupted runs: row r = prompt r // S, sample r % S
    ids_x, mask_x = ids.repeat_interleave(S, 0), mask.repeat_interleave(S, 0)
    prompt_of = torch.arange(n * S, device=mask.device) // S
    starts = torch.tensor([a for a, _ in spans_], device=mask.device)
    ends = torch.tensor([b for _, b in spans_], device=mask.device)
    pos = torch.arange(width, device=mask.device)
    in_span = (pos[None] >= starts[:, None]) & (pos[None] < ends[:, None])          # [n, pos]
    in_span_x = in_span.repeat_interleave(S, 0)
    sample_of = torch.arange(n * S, device=mask.device) % S
    noise = [Noise(std, noise_seed(seed, s), Positions.of_mask(in_span_x & (sample_of == s)[:, None]))
             for s in range(S)]

    def by_prompt(logits: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        return metric(logits, pairs // S)

    clean_run = plain_run(model, ids, mask, metric, suffix=False)
    with intervene(model, {model.site(stack, 1, "resid_pre"): noise}, masks={stack: mask_x}):
        noised = plain_run(model, ids_x, mask_x, by_prompt, suffix=True)
    d = noised.inputs[0].shape[-1]
    changed = (noised.inputs[0].reshape(n, S, width, d) != clean_run.inputs[0][:, None]).any(-1)  # [n, S, pos]
    if not bool(changed.any()):
        raise InterventionError(
            f"the noise (std={std}) did not change the embeddings at blocks.1.resid_pre of any span in "
            f"{noised.inputs[0].dtype}; pass a larger `std` (ROME: 3 x the embeddings' standard deviation)")

    # a state before the span's start is the clean one: restoring it is the corrupted run
    where = each_position(mask_x.bool() & (pos[None] >= starts[:, None]).repeat_interleave(S, 0))

    def block(j: int) -> Block:
        site = model.site(stack, j + 1, "resid_pre")
        return Block([Column(site, clean_run.inputs[j], noised.inputs[j])] * width, where)

    values = patch_cells(model, noised, mask_x, by_prompt, blocks=block, n_blocks=len(noised.inputs),
                         batch_size=int(batch_size), valid=mask_x.bool(), source_rows=prompt_of)
    return TraceMap(values=values.view(n, S, -1, width).contiguous(), clean=clean_run.metric,
                    corrupted=noised.metric.view(n, S), lengths=mask.sum(1).cpu(), spans=spans_, std=std, seed=seed,
                    fingerprint=model.fingerprint)
