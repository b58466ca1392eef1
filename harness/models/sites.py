"""Sites: the address of one activation in a model.

    Site            a frozen value: stack, layer, point, and a head or a set of units where the
                    point has them
    Site.parse      "encoder.12.resid_post" -> Site;  str(site) gives the string back
    SiteTable       what a loaded model offers: stacks, layers per stack, heads, widths, points
    POINTS          the point names and the layers each accepts

A site is written ``STACK.LAYER.POINT``. Layer numbering follows Hugging Face
``output_hidden_states``. ``resid_post`` at layer L is exactly ``hidden_states[L]``: layer 0 is
the embedding output, layer L (1 <= L < n) the residual stream after block L, and layer n (the
last) the output *after the stack's final norm*. Every other point belongs to block L, counted
from 1. The points, with the TransformerLens hook each equals (k = L - 1):

    POINT                      the activation                                 width       TransformerLens
    resid_pre                  the input of block L                           d_model     blocks.k.hook_resid_pre
    resid_mid                  the residual between attention and MLP (the    d_model     blocks.k.hook_resid_mid
                               input of the MLP's norm); none in parallel blocks
    resid_post                 hidden_states[L] (see above)                   d_model     blocks.k.hook_resid_post
    attn_out, mlp_out          what attention / the MLP adds to the residual  d_model     blocks.k.hook_attn_out ...
    cross_attn_out             what cross-attention adds (T5 decoder)         d_model     decoder.k.hook_cross_attn_out
    block_out                  block L's raw output (for the last block, the  d_model     blocks.k.hook_resid_post
                               residual *before* the final norm)
    attn.head{h}               head h at the input of the attention output    d_head      blocks.k.attn.hook_z[:, :, h]
                               projection
    attn.q, attn.q.head{h}     queries (all heads side by side, or head h):   n_heads*d_head, d_head
                               the projection's output, before rotary                     blocks.k.attn.hook_q[:, :, h]
    attn.k, attn.k.head{g}     keys, by key/value head g (see below)          n_kv*d_head, d_head
    attn.v, attn.v.head{g}     values, likewise                                           blocks.k.attn.hook_k / hook_v
    attn.scores.head{h}        head h's attention scores, scaled, soft-capped key count    blocks.k.attn.hook_attn_scores
                               and masked: ``[batch, query, key]``                    [:, h]
    attn.pattern.head{h}       head h's attention pattern, their softmax      key count   blocks.k.attn.hook_pattern[:, h]
    mlp_pre                    the MLP pre-activation, what the activation    d_mlp       blocks.k.mlp.hook_pre
                               function reads (a gated MLP's gate projection)
    mlp_pre_linear             a gated MLP's up projection (only gated MLPs)  d_mlp       blocks.k.mlp.hook_pre_linear
    mlp_post                   the MLP post-activation: the input of the      d_mlp       blocks.k.mlp.hook_post
                               down projection
    final_norm_in              (layer n only) the input of the final norm     d_model     blocks.{n-1}.hook_resid_post
    final_scale                (layer n only) the final norm's scale, what it 1           ln_final.hook_scale
                               divides by: sqrt(mean(x**2) + eps) (RMSNorm) or
                               sqrt(var(x) + eps) (LayerNorm), ``[batch, pos, 1]``;
                               it can be recorded, not edited

MLP units (neurons) are addressed on ``mlp_pre``, ``mlp_pre_linear`` and ``mlp_post``: one
neuron, ``blocks.1.mlp_post.neuron45``, or a set, ``blocks.1.mlp_post.neurons[45:51]`` (45..50)
or ``neurons[3,17,40:42]``; ``Site(..., units=(45, 46))`` in code. The site's activation is
then those columns, in the order given: ``[batch, pos, len(units)]``.

Under grouped-query attention keys and values belong to key/value heads: ``attn.k.head{g}``
and ``attn.v.head{g}`` take g in ``0..n_kv_heads - 1``, and query head h reads key/value head
``h // (n_heads // n_kv_heads)``. An edit at ``attn.k.head{g}`` therefore changes what every
query head of group g reads; a query head's own share of a key is not a site.
"""

from __future__ import annotations

import difflib
import functools
import operator
import re
from dataclasses import dataclass
from typing import Iterable

from harness.errors import SiteError

__all__ = ["Site", "SiteTable", "StackShape", "POINTS", "HEAD_POINTS", "UNIT_POINTS", "parse_site"]

# point name -> lowest layer it accepts (the highest is always n, the stack's block count);
# None: the point exists only at layer n (it belongs to the stack's final norm)
POINTS: dict[str, int | None] = {
    "resid_pre": 1,
    "resid_mid": 1,
    "resid_post": 0,
    "attn_out": 1,
    "mlp_out": 1,
    "block_out": 1,
    "cross_attn_out": 1,
    "head": 1,
    "attn.q": 1,
    "attn.k": 1,
    "attn.v": 1,
    "attn.scores": 1,
    "attn.pattern": 1,
    "mlp_pre": 1,
    "mlp_pre_linear": 1,
    "mlp_post": 1,
    "final_norm_in": None,
    "final_scale": None,
}
HEAD_POINTS = ("attn.q", "attn.k", "attn.v")   # a head index is optional (None: every head)
PATTERN_POINTS = ("attn.scores", "attn.pattern")   # a head index is required; width: the key count
UNIT_POINTS = ("mlp_pre", "mlp_pre_linear", "mlp_post")   # units (neurons) are optional

_SITE_RE = re.compile(r"^(?P<stack>[A-Za-z_]\w*)\.(?P<layer>-?\d+)\.(?P<point>.+)$")
_HEAD_RE = re.compile(r"^attn\.head(-?\d+)$")
_QKV_RE = re.compile(r"^(attn\.(?:[qkv]|scores|pattern))\.head(-?\d+)$")
_UNIT_RE = re.compile(r"^(\w+)\.(?:neuron(-?\d+)|neurons\[([^\]]*)\])$")
_ITEM_RE = re.compile(r"^\s*(-?\d+)\s*(?::\s*(-?\d+)\s*)?$")


def _shown(point: str) -> str:
    """How a point is written in a site string, its optional parts in brackets."""
    if point == "head":
        return "attn.head{h}"
    if point in PATTERN_POINTS:
        return point + ".head{h}"
    if point in HEAD_POINTS:
        return point + "[.head{h}]"
    if point in UNIT_POINTS:
        return point + "[.neuron{i}]"
    return point


@functools.total_ordering
@dataclass(frozen=True)
class Site:
    """One activation: ``Site("encoder", 12, "resid_post")``, ``Site("blocks", 2, "head", head=2)``,
    ``Site("blocks", 1, "mlp_post", units=(45,))``.

    >>> Site.parse("blocks.2.attn.head2")
    Site(stack='blocks', layer=2, point='head', head=2, units=None)
    >>> Site.parse("blocks.1.mlp_post.neurons[45:48]").units
    (45, 46, 47)
    >>> str(Site("blocks", 3, "attn.k", head=1))
    'blocks.3.attn.k.head1'
    >>> Site.parse("encoder.12.resid_pots")
    Traceback (most recent call last):
    ...
    harness.errors.SiteError: site 'encoder.12.resid_pots' has unknown point 'resid_pots'; ... did you mean 'resid_post'?

    `head` is required for ``head`` and optional for ``attn.q/k/v``; `units` (distinct neuron
    indices, in the order the activation's columns are to be taken) are optional for the MLP
    points. Ranges (a head below the stack's head count, a neuron below d_mlp) are checked by
    `SiteTable.validate`, which knows the model.
    """

    stack: str
    layer: int
    point: str
    head: int | None = None
    units: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.point not in POINTS:
            raise SiteError(
                f"`point` must be one of {_point_names()}, got {self.point!r}"
                f"{_did_you_mean(self.point, list(POINTS))}"
            )
        if self.head is not None and (isinstance(self.head, bool) or not isinstance(self.head, int)):
            raise SiteError(f"`head` must be an int, got {self.head!r}")
        if self.point in ("head",) + PATTERN_POINTS and self.head is None or \
                self.head is not None and self.point not in ("head",) + HEAD_POINTS + PATTERN_POINTS:
            raise SiteError(
                f"`head` is required exactly for the per-head points {['head', *PATTERN_POINTS]} (and optional "
                f"for {list(HEAD_POINTS)}); got point={self.point!r}, head={self.head!r} (write e.g. "
                "'blocks.2.attn.head2' or 'blocks.2.attn.pattern.head2')"
            )
        if self.units is not None:
            object.__setattr__(self, "units", _check_units(self.units, self.point))

    @classmethod
    def parse(cls, text: str) -> "Site":
        return parse_site(text)

    @property
    def point_name(self) -> str:
        """The POINT part of the site string: ``attn.head2``, ``attn.q.head1``, ``mlp_post.neuron45``."""
        if self.point == "head":
            return f"attn.head{self.head}"
        if self.head is not None:
            return f"{self.point}.head{self.head}"
        if self.units is not None:
            return f"{self.point}.{_units_text(self.units)}"
        return self.point

    def _key(self) -> tuple:
        return (self.stack, self.layer, self.point, self.head is not None, self.head or 0,
                self.units is not None, self.units or ())

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Site):
            return NotImplemented
        return self._key() < other._key()

    def __str__(self) -> str:
        return f"{self.stack}.{self.layer}.{self.point_name}"


def _check_units(units: Iterable[int], point: str) -> tuple[int, ...]:
    if point not in UNIT_POINTS:
        raise SiteError(f"`units` (neurons) are addressable only on {list(UNIT_POINTS)}, got units for "
                        f"point {point!r}; select a head with `head`, or record the whole site")
    if isinstance(units, (str, bytes)) or not isinstance(units, Iterable):
        raise SiteError(f"`units` must be a sequence of neuron indices (ints), got {units!r}")
    out = []
    for u in units:
        try:
            if isinstance(u, bool):
                raise TypeError
            out.append(operator.index(u))
        except TypeError:
            raise SiteError(f"`units` must hold neuron indices (ints), got {u!r} in {units!r}") from None
    if not out:
        raise SiteError("`units` is empty; give at least one neuron index, or units=None for the whole layer")
    if len(set(out)) != len(out):
        dup = sorted({u for u in out if out.count(u) > 1})
        raise SiteError(f"`units` must be distinct neuron indices, got {dup} more than once in {tuple(out)}")
    return tuple(out)


def _units_text(units: tuple[int, ...]) -> str:
    if len(units) == 1:
        return f"neuron{units[0]}"
    if all(b == a + 1 for a, b in zip(units, units[1:])):
        return f"neurons[{units[0]}:{units[-1] + 1}]"
    return "neurons[" + ",".join(str(u) for u in units) + "]"


def _parse_units(text: str, site_text: str) -> tuple[int, ...]:
    out: list[int] = []
    for item in text.split(","):
        match = _ITEM_RE.match(item)
        if match is None:
            raise SiteError(f"site {site_text!r}: `neurons[...]` must hold indices or ranges a:b separated by "
                            f"commas (e.g. 'neurons[45:51]' or 'neurons[3,17]'), got {item.strip()!r}")
        start, stop = int(match[1]), match[2]
        if stop is None:
            out.append(start)
        elif int(stop) <= start:
            raise SiteError(f"site {site_text!r}: the range {item.strip()!r} is empty; write a:b with a < b "
                            "(b excluded, as in Python)")
        else:
            out.extend(range(start, int(stop)))
    return tuple(out)


def parse_site(text: str) -> Site:
    """Parse ``STACK.LAYER.POINT`` (``encoder.12.resid_post``, ``blocks.2.attn.head2``,
    ``blocks.2.attn.k.head0``, ``blocks.1.mlp_post.neurons[45:51]``); see the module docstring.

    Raises `SiteError` for a string of another form or an unknown point, listing the valid ones."""
    if not isinstance(text, str):
        raise SiteError(f"a site must be a string like 'encoder.12.resid_post', got {text!r}")
    match = _SITE_RE.match(text.strip())
    if match is None:
        raise SiteError(
            f"site {text!r} is not of the form STACK.LAYER.POINT; "
            "write e.g. 'encoder.12.resid_post' or 'blocks.2.attn.head2'"
        )
    point = match["point"]
    head: int | None = None
    units: tuple[int, ...] | None = None
    head_match, qkv_match, unit_match = _HEAD_RE.match(point), _QKV_RE.match(point), _UNIT_RE.match(point)
    if head_match:
        point, head = "head", int(head_match[1])
    elif qkv_match:
        point, head = qkv_match[1], int(qkv_match[2])
    elif unit_match and unit_match[1] in UNIT_POINTS:
        point = unit_match[1]
        units = (int(unit_match[2]),) if unit_match[2] is not None else _parse_units(unit_match[3], text)
    elif point not in POINTS or point == "head":
        options = [p for p in POINTS if p != "head"] + ["attn.head0", "attn.q.head0", "mlp_post.neuron0"]
        raise SiteError(
            f"site {text!r} has unknown point {point!r}; valid points are {_point_names()}"
            f"{_did_you_mean(point, options)}"
        )
    return Site(match["stack"], int(match["layer"]), point, head, units)


@dataclass(frozen=True)
class StackShape:
    """What one stack of a loaded model offers.

    ``n_kv_heads``: key/value heads (None: as many as ``n_heads``); ``d_mlp``: the MLP width
    (None: no MLP unit sites); ``lacks``: ``(point, why)`` for points the stack does not offer,
    shown in the error for such a site.
    """

    name: str
    n_layers: int
    n_heads: int
    d_model: int
    d_head: int
    points: tuple[str, ...]
    n_kv_heads: int | None = None
    d_mlp: int | None = None
    lacks: tuple[tuple[str, str], ...] = ()

    @property
    def kv_heads(self) -> int:
        """The key/value head count (``n_heads`` without grouped-query attention)."""
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    def heads_of(self, point: str) -> int:
        """How many heads a per-head site of `point` ranges over (key/value heads for k and v)."""
        return self.kv_heads if point in ("attn.k", "attn.v") else self.n_heads

    def width(self, site: Site) -> int | None:
        """The last dimension of the activation at `site` (a site of this stack); None for the
        attention scores and pattern, whose last dimension is the key count of each forward."""
        if site.point in PATTERN_POINTS:
            return None
        if site.point == "head" or site.head is not None:
            return self.d_head
        if site.point in HEAD_POINTS:
            return self.heads_of(site.point) * self.d_head
        if site.point in UNIT_POINTS:
            return len(site.units) if site.units is not None else int(self.d_mlp or 0)
        if site.point == "final_scale":
            return 1
        return self.d_model


@dataclass(frozen=True)
class SiteTable:
    """The sites a loaded model offers, used to validate a `Site` and to say what is valid."""

    model_name: str
    stacks: tuple[StackShape, ...]

    def stack(self, name: str) -> StackShape:
        for shape in self.stacks:
            if shape.name == name:
                return shape
        names = [s.name for s in self.stacks]
        raise SiteError(
            f"`stack` must be one of {names} for {self.model_name}, got {name!r}"
            f"{_did_you_mean(name, names)}"
        )

    def validate(self, site: Site | str) -> Site:
        """Return the site if the model has it; otherwise raise `SiteError` listing valid values
        (the stacks, the points the stack has and why one is missing, the layer range, the
        head range with the query-to-key/value-head rule, the neuron range)."""
        if isinstance(site, str):
            site = parse_site(site)
        shape = self.stack(site.stack)
        if site.point not in shape.points:
            shown = [_shown(p) for p in shape.points]
            why = dict(shape.lacks).get(site.point)
            if why is not None:
                raise SiteError(f"`point` {site.point!r} is no site of {site.stack} of {self.model_name}: {why}; "
                                f"its points are {shown}")
            raise SiteError(
                f"`point` must be one of {shown} for {site.stack} of {self.model_name}, "
                f"got {site.point_name!r}"
            )
        low, high = POINTS[site.point], shape.n_layers
        if low is None:
            if site.layer != high:
                raise SiteError(f"`layer` must be {high} (the last block: {site.point} belongs to the final norm) "
                                f"for {site.point} of {site.stack} of {self.model_name}, got {site.layer}")
        elif not low <= site.layer <= high:
            hint = ""
            if site.point == "resid_post" and site.layer == high + 1:
                hint = f"; layer {high} is the output after the final norm"
            elif site.point != "resid_post" and site.layer == 0:
                hint = "; blocks are counted from 1 (layer 0 exists only as resid_post, the embeddings)"
            raise SiteError(
                f"`layer` must be in {low}..{high} for {site.point_name} of {site.stack} of "
                f"{self.model_name}, got {site.layer}{hint}"
            )
        if site.point in ("head",) + PATTERN_POINTS and not 0 <= site.head < shape.n_heads:  # type: ignore[operator]
            raise SiteError(
                f"`head` must be in 0..{shape.n_heads - 1} for {site.stack} of {self.model_name} "
                f"({shape.n_heads} heads), got {site.head}"
            )
        if site.point in HEAD_POINTS and site.head is not None:
            self._check_qkv_head(site, shape)
        if site.units is not None:
            bad = [u for u in site.units if not 0 <= u < int(shape.d_mlp or 0)]
            if bad:
                raise SiteError(
                    f"`units` must be neuron indices in 0..{int(shape.d_mlp or 0) - 1} for {site.point} of "
                    f"{site.stack} of {self.model_name} (d_mlp = {shape.d_mlp}), got {bad[0]}"
                    + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
                )
        return site

    def _check_qkv_head(self, site: Site, shape: StackShape) -> None:
        count = shape.heads_of(site.point)
        if 0 <= site.head < count:  # type: ignore[operator]
            return
        if site.point == "attn.q" or shape.kv_heads == shape.n_heads:
            raise SiteError(f"`head` must be in 0..{count - 1} for {site.point} of {site.stack} of "
                            f"{self.model_name} ({count} heads), got {site.head}")
        group = shape.n_heads // shape.kv_heads
        hint = ""
        if 0 <= site.head < shape.n_heads:  # type: ignore[operator]
            hint = (f"; query head {site.head} reads key/value head {site.head // group}: write "
                    f"'{site.stack}.{site.layer}.{site.point}.head{site.head // group}'")
        raise SiteError(
            f"`head` must be a key/value head in 0..{count - 1} for {site.point} of {site.stack} of "
            f"{self.model_name}, got {site.head}: under grouped-query attention its {shape.n_heads} query "
            f"heads share {count} key/value heads, query head h reading key/value head h // {group}{hint}"
        )

    def all_sites(self, point: str, stack: str | None = None) -> list[Site]:
        """Every valid site with this point, in layer (then head) order: one per head for
        ``head`` and ``attn.q/k/v`` (key/value heads for k and v), one per layer (all units)
        for the MLP points, layer n alone for ``final_norm_in`` and ``final_scale``.

        An unknown `point` or `stack` is a `SiteError`, never an empty list.
        """
        if point not in POINTS:
            raise SiteError(
                f"`point` must be one of {list(POINTS)}, got {point!r}{_did_you_mean(point, list(POINTS))}"
            )
        if stack is not None:
            self.stack(stack)
        out: list[Site] = []
        for shape in self.stacks:
            if (stack is not None and shape.name != stack) or point not in shape.points:
                continue
            low = POINTS[point]
            for layer in range(shape.n_layers if low is None else low, shape.n_layers + 1):
                if point == "head" or point in HEAD_POINTS or point in PATTERN_POINTS:
                    out.extend(Site(shape.name, layer, point, h) for h in range(shape.heads_of(point)))
                else:
                    out.append(Site(shape.name, layer, point))
        return out


def _point_names() -> list[str]:
    return [_shown(p) for p in POINTS]


def _did_you_mean(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
