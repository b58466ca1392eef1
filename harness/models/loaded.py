"""The loaded model's view of itself, and batching its inputs.

    LoadedModel         the torch module + tokenizer + site table + device/dtype + fingerprint:
                        ``site`` (a validated `Site`), ``hook_for`` (where it lives), ``width``;
                        ``tokenize`` warns (`UnknownTokenWarning`) of text that became the unknown token
    pad_rows            right-pads token rows into ``input_ids`` / ``attention_mask``
    length_order        row indices longest first, the order callers batch in

A `LoadedModel` comes from `harness.models.load` (``load_model``, ``from_module``); code that
runs a model it was given needs only this module. Right padding keeps every real token at the
position it has in the one-example run, so a padded batch equals the unpadded runs (pinned by
tests for every architecture).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from harness.errors import DataError, SiteError
from harness.models import placement
from harness.models.architectures import Layout
from harness.models.site_hooks import Hook, resolve_hook
from harness.models.sites import POINTS, Site, SiteTable, parse_site

__all__ = ["LoadedModel", "pad_rows", "length_order"]


@dataclass
class LoadedModel:
    """A model the harness can intervene on.

    Example::

        tacgen = load_model("fixture:tacgen")
        site = tacgen.site("encoder.12.resid_post")
        tacgen.fingerprint[:12], tacgen.device, tacgen.dtype
    """

    name: str
    spec: str
    module: torch.nn.Module
    tokenizer: Any
    layout: Layout
    sites: SiteTable
    fingerprint: str
    _hooks: dict[Site, Hook] = field(default_factory=dict, repr=False)
    _warned_unknown: set[str] = field(default_factory=set, repr=False, compare=False)

    @property
    def device(self) -> torch.device:
        """Where the model takes its input ids: its input embedding's device (for a model split by
        a device map, the execution device accelerate gives the embedding)."""
        return placement.input_device(self.module)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.module.parameters()).dtype

    @property
    def is_encoder_decoder(self) -> bool:
        return bool(getattr(self.module.config, "is_encoder_decoder", False))

    @property
    def main_stack(self) -> str:
        """The stack whose positions the input tokens index: ``encoder`` or ``blocks``."""
        return self.sites.stacks[0].name

    def site(self, stack_or_text: str | Site, layer: int | None = None,
             point: str | None = None, *, head: int | None = None,
             units: Sequence[int] | range | None = None) -> Site:
        """A validated site: ``m.site("encoder.12.resid_post")``, ``m.site("encoder", 12, "resid_post")``,
        ``m.site("blocks", 2, "attn.k", head=0)``, ``m.site("blocks", 1, "mlp_post", units=range(45, 51))``.

        `point` may also be written as in a site string (``"attn.q.head3"``, ``"mlp_post.neuron45"``).
        Raises `SiteError` for a site the model lacks, listing what it has (see `SiteTable.validate`).
        """
        if isinstance(stack_or_text, Site):
            return self.sites.validate(stack_or_text)
        if layer is None and point is None:
            if head is not None or units is not None:
                raise SiteError("`head` and `units` go with `stack`, `layer` and `point`, not with a site string; "
                                "write them in the string ('blocks.2.attn.q.head1', 'blocks.1.mlp_post.neuron45')")
            return self.sites.validate(parse_site(stack_or_text))
        if layer is None or point is None:
            raise SiteError("give either a site string, or all of `stack`, `layer` and `point`")
        try:  # ints, numpy ints, 0-d integer tensors; not bools, floats or strings
            if isinstance(layer, bool):
                raise TypeError
            layer = operator.index(layer)
        except TypeError:
            raise SiteError(f"`layer` must be an int, got {layer!r}") from None
        if point not in POINTS:
            # the string form ("attn.head2", "attn.q.head1", "mlp_post.neuron4"): parse it
            site = parse_site(f"{stack_or_text}.{layer}.{point}")
            if head is not None or units is not None:
                raise SiteError(f"`point` {point!r} already names its head or units; leave out `head` and `units`")
            return self.sites.validate(site)
        return self.sites.validate(Site(stack_or_text, layer, point, head,
                                        None if units is None else tuple(units)))

    def hook_for(self, site: Site) -> Hook:
        """Where `site`'s activation lives on this model (cached): a module, "input" or
        "output", and the columns the site takes (see `harness.models.site_hooks.Hook`)."""
        if site not in self._hooks:
            self._hooks[site] = resolve_hook(self.module, self.layout, self.sites, site)
        return self._hooks[site]

    def width(self, site: Site | str, *, varying: bool = False) -> int | None:
        """The last dimension of the activation at `site`: d_model; d_head for one head's
        output, query, key or value; n_heads * d_head for all queries (n_kv_heads * d_head
        for all keys or values); d_mlp, or the number of chosen units, for the MLP points;
        1 for ``final_scale``.

        A head's attention scores or pattern (``attn.scores.head{h}``, ``attn.pattern.head{h}``)
        have no fixed width: their last dimension is the key count of each forward. With
        ``varying=True`` their width is None; otherwise they raise `SiteError` (a direction, a
        probe or an SAE needs a fixed width)."""
        site = self.site(site)
        width = self.sites.stack(site.stack).width(site)
        if width is None and not varying:
            raise SiteError(f"site {site} has no fixed width: its last dimension is the key count of each "
                            "forward (`[batch, query, key]`); record, patch or ablate it with intervene, and "
                            "give directions, probes and SAEs a fixed-width site (resid, head, q/k/v, MLP)")
        return width

    def tokenize(self, texts: Sequence[str], *, add_special_tokens: bool = True,
                 max_length: int | None = None) -> list[list[int]]:
        """Token ids of each text; with `max_length`, truncated as the tokenizer truncates.

        A text with words or pieces the tokenizer could only map to its unknown token (``[UNK]``,
        ``<unk>``) gets an `UnknownTokenWarning` that lists them and the text (truncated), once
        per distinct text for this model; the ids are returned as the tokenizer gave them.
        Each distinct text is tokenized once per call (a scorer's continuations repeat one or
        two texts over every row); every row is a list of its own.
        """
        if isinstance(texts, str):
            raise TypeError("`texts` must be a sequence of strings, got a single str; wrap it in a list")
        kw: dict[str, Any] = {"add_special_tokens": add_special_tokens}
        if max_length is not None:
            kw.update(truncation=True, max_length=int(max_length))
        once = {t: self.tokenizer(t, **kw)["input_ids"] for t in dict.fromkeys(texts)}
        rows = [list(once[t]) for t in texts]
        unk = getattr(self.tokenizer, "unk_token_id", None)
        if unk is not None:
            for text, row in zip(texts, rows):
                if unk in row and text not in self._warned_unknown:
                    self._warn_unknown(text, row, unk, kw)
        return rows

    def _warn_unknown(self, text: str, row: list[int], unk: int, kw: dict[str, Any]) -> None:
        """Warn that parts of `text` became the unknown token `unk` (once per text)."""
        import warnings

        from harness.errors import UnknownTokenWarning

        self._warned_unknown.add(text)
        pieces = _unknown_pieces(self.tokenizer, text, row, unk, kw)
        if not pieces:  # only the unknown token itself, written out in the text
            return
        counts: dict[str, int] = {}
        for piece in pieces:
            counts[piece] = counts.get(piece, 0) + 1
        shown = ", ".join(repr(p) + (f" x{n}" if n > 1 else "") for p, n in list(counts.items())[:12])
        more = f" and {len(counts) - 12} more" if len(counts) > 12 else ""
        token = getattr(self.tokenizer, "unk_token", None)
        quoted = repr(text) if len(text) <= 120 else repr(text[:117] + "...")
        warnings.warn(UnknownTokenWarning(
            f"{len(pieces)} piece(s) of a text became the unknown token {token!r} (id {unk}) of "
            f"{self.name}'s tokenizer: {shown}{more}; in text {quoted}. The token ids are kept: "
            "the model reads each of these as the same token (check the input, or the tokenizer's vocabulary)"
        ), stacklevel=3)

    @property
    def pad_id(self) -> int:
        pad = getattr(self.tokenizer, "pad_token_id", None)
        return 0 if pad is None else int(pad)

    def describe(self) -> dict[str, str]:
        return {"name": self.name, "spec": self.spec, "fingerprint": self.fingerprint,
                "device": placement.placement_of(self.module), "dtype": str(self.dtype).replace("torch.", "")}


def _unknown_pieces(tokenizer: Any, text: str, row: list[int], unk: int, kw: dict[str, Any]) -> list[str]:
    """The parts of `text` that became the unknown token `unk` in `row`, in order: the source
    span of each unknown token where the tokenizer gives offsets (a fast tokenizer), else each
    whitespace-separated word that alone tokenizes to the unknown token. The unknown token
    written out literally in the text is not listed."""
    literal = getattr(tokenizer, "unk_token", None)
    if getattr(tokenizer, "is_fast", False):
        try:
            offsets = tokenizer(text, return_offsets_mapping=True, **kw)["offset_mapping"]
        except (NotImplementedError, TypeError, ValueError, KeyError):
            offsets = None
        if offsets is not None and len(offsets) == len(row):
            pieces = [text[a:b] for token, (a, b) in zip(row, offsets) if token == unk]
            return [p if p else "?" for p in pieces if p != literal]
    words = []
    for word in text.split():
        if word != literal and unk in tokenizer(word, add_special_tokens=False)["input_ids"]:
            words.append(word)
    if words:
        return words
    unexplained = sum(token == unk for token in row) - (text.count(literal) if literal else 0)
    return ["?"] * max(unexplained, 0)


def length_order(rows: Sequence[Sequence[int]]) -> list[int]:
    """Indices of `rows`, longest first (ties keep their order): chunks of similar length pad less.

    Callers batch in this order and put each result back at its index, so the output order (and,
    since padding does not change a row's numbers, the values within 1e-4) is the input's.
    """
    return sorted(range(len(rows)), key=lambda i: -len(rows[i]))


def pad_rows(rows: Sequence[Sequence[int]], *, pad_id: int,
             device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token rows: returns ``input_ids`` and ``attention_mask``, both ``[batch, pos]``."""
    if len(rows) == 0:
        raise DataError("`rows` is empty; pass at least one tokenized example")
    width = max(len(r) for r in rows)
    if width == 0:
        raise DataError("every row in `rows` is empty; each example needs at least one token")
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.as_tensor(list(row), dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids.to(device), mask.to(device)
