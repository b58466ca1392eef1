"""The decoding loop behind `generate`: batches, the key/value cache, per-row edits, stop rules.

    END_OF_FUNCTION     stop rule: a newline followed by a non-space character (a dedented line)
    stop_index          where the earliest stop (string or pattern) starts in a text, or None
    cacheable           whether an intervention plan can run under the key/value cache
    rows_of             the plan with every per-row tensor cut to the rows of a batch
    decode_batch        greedy decoding of one batch of token rows, row by row as they stop

With the cache, a batch is left-padded (pads carry attention mask 0 and position id 0, every
real token the position id it has alone), the prompt runs once, and each step runs only the
newest token of the rows still decoding; the rows that stopped leave the batch, the cache and
every per-row tensor of the plan. Under the cache a hook sees the new position only, so an edit
may be cached only when it acts at every position and what it does at a position depends on
that position's activation and its row alone (`cacheable`); then every cached key and value is
what a full recomputation would give, up to float rounding.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any, Callable, Mapping, Sequence

import torch

from harness.errors import DataError
from harness.interventions import Ablate, Add, RmsAdd, intervene
from harness.models.loaded import LoadedModel

__all__ = ["END_OF_FUNCTION", "stop_index", "cacheable", "check_rows", "rows_of", "decode_batch"]

END_OF_FUNCTION = re.compile(r"\n(?=\S)")
"""Stop rule for code: a line that starts with a non-space character, after the body. The
generated text is cut before that newline (``"    return x\\nprint"`` -> ``"    return x"``)."""


def stop_index(text: str, stops: Sequence[Any]) -> int | None:
    """Where the earliest of `stops` (strings, or compiled patterns) starts in `text`; None if none."""
    found = []
    for s in stops:
        if isinstance(s, str):
            i = text.find(s)
            if i >= 0:
                found.append(i)
        else:
            hit = s.search(text)
            if hit is not None:
                found.append(hit.start())
    return min(found) if found else None


def _chain(value: Any) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def cacheable(interventions: Mapping[Any, Any]) -> bool:
    """Whether every edit acts at all positions and position by position (Add, RmsAdd, zero and
    mean Ablate at `Positions.all()`), so a cached key/value never needs recomputing."""
    for value in interventions.values():
        for item in _chain(value):
            if isinstance(item, Ablate) and item.kind not in ("zero", "mean"):
                return False
            if not isinstance(item, (Add, RmsAdd, Ablate)) or item.positions.kind != "all":
                return False
    return True


def _per_row(item: Any) -> bool:
    return isinstance(item, (Add, RmsAdd)) and isinstance(item.alpha, torch.Tensor) and item.alpha.dim() > 0


def check_rows(model: LoadedModel, interventions: Mapping[Any, Any], n: int) -> None:
    """Raise `DataError` unless every per-row ``alpha`` has one value per prompt row (``[n]``)."""
    for key, value in interventions.items():
        for item in _chain(value):
            if _per_row(item) and (item.alpha.dim() != 1 or item.alpha.shape[0] != n):
                raise DataError(
                    f"`alpha` of the {type(item).__name__} at {model.site(key)} has shape "
                    f"{tuple(item.alpha.shape)} but `prompts` has {n} rows; give one coefficient per "
                    f"row of `prompts` (shape [{n}]), repeating a prompt once per coefficient")


def rows_of(interventions: Mapping[Any, Any], rows: Sequence[int]) -> dict:
    """The plan for a batch of prompt rows: each per-row ``alpha`` ``[n]`` becomes ``alpha[rows]``."""
    index = torch.as_tensor(list(rows), dtype=torch.long)
    out = {}
    for key, value in interventions.items():
        chain = [dataclasses.replace(i, alpha=i.alpha[index.to(i.alpha.device)]) if _per_row(i) else i
                 for i in _chain(value)]
        out[key] = chain if isinstance(value, (list, tuple)) else chain[0]
    return out


def _forward_kwargs(model: LoadedModel) -> tuple[dict, str]:
    """``logits_to_keep=1`` where the forward takes it (only the last position's logits are read),
    and the name of its cache argument (``cache`` from transformers 5.2x, else ``past_key_values``)."""
    params = inspect.signature(model.module.forward).parameters
    return ({"logits_to_keep": 1} if "logits_to_keep" in params else {},
            "cache" if "cache" in params else "past_key_values")


def decode_batch(model: LoadedModel, toks: Sequence[Sequence[int]], plan_for: Callable[[list[int]], dict], *,
                 max_new_tokens: int, eos: int | None, stops: Sequence[Any], cache: bool,
                 on_stop: Callable[[int, list[int], list[torch.Tensor], str], None]) -> None:
    """Greedy decoding of one batch of token rows (all of one length unless `cache`).

    `plan_for(live)` gives the interventions for the batch rows `live` (indices into `toks`).
    Each row stops at `eos` (kept as its last id), when `stops` occur in its decoded text, or
    after `max_new_tokens`; then ``on_stop(row, ids, logits, reason)`` is called with the row's
    generated ids, the float32 logits ``[vocab]`` each was the argmax of, and ``"eos"``,
    ``"stop"`` or ``"max_new_tokens"``.
    """
    dev, stack, (extra, cache_arg) = model.device, model.main_stack, _forward_kwargs(model)
    width = max(len(t) for t in toks)
    if not cache and any(len(t) != width for t in toks):
        raise DataError("without the cache a batch must hold prompts of one length")  # internal: callers group
    ids = torch.full((len(toks), width), model.pad_id, dtype=torch.long)
    mask = torch.zeros((len(toks), width), dtype=torch.long)
    for i, t in enumerate(toks):  # left padding: every row's last token is the last column
        ids[i, width - len(t):] = torch.as_tensor(list(t), dtype=torch.long)
        mask[i, width - len(t):] = 1
    ids, mask = ids.to(dev), mask.to(dev)
    live = list(range(len(toks)))
    new: list[list[int]] = [[] for _ in toks]
    scores: list[list[torch.Tensor]] = [[] for _ in toks]
    kv = None
    if cache:
        from transformers import DynamicCache
        kv = DynamicCache(config=model.module.config)
    step_ids, step_mask = ids, mask  # what this step's forward takes, and the mask its hooks see
    for step in range(max_new_tokens):
        if cache:
            position = (mask.cumsum(1) - 1).clamp(min=0)[:, -step_ids.shape[1]:]
            kw = {"attention_mask": mask, "position_ids": position, cache_arg: kv, "use_cache": True}
        else:
            kw = {"attention_mask": mask, "use_cache": False}
        with intervene(model, plan_for(live), masks={stack: step_mask}):
            logits = model.module(input_ids=step_ids, **kw, **extra).logits[:, -1].float()
        nxt = logits.argmax(-1)
        keep = []
        for j, (row, tok) in enumerate(zip(live, nxt.tolist())):
            new[row].append(tok)
            scores[row].append(logits[j])
            if eos is not None and tok == eos:
                reason = "eos"
            elif stops and stop_index(model.tokenizer.decode(new[row], skip_special_tokens=True), stops) is not None:
                reason = "stop"
            elif step + 1 == max_new_tokens:
                reason = "max_new_tokens"
            else:
                keep.append(j)
                continue
            on_stop(row, new[row], scores[row], reason)
        if not keep:
            return
        if len(keep) < len(live):  # the stopped rows leave the batch, its cache and the plan's rows
            sel = torch.as_tensor(keep, dtype=torch.long, device=dev)
            ids, mask, nxt = ids[sel], mask[sel], nxt[sel]
            live = [live[j] for j in keep]
            if kv is not None:
                kv.batch_select_indices(sel)
        ones = torch.ones((len(live), 1), dtype=torch.long, device=dev)
        mask = torch.cat([mask, ones], dim=1)
        if cache:
            step_ids, step_mask = nxt[:, None], ones
        else:
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            step_ids, step_mask = ids, mask
