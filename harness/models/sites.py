"""Sites: the address of one activation in a model.

    Site            a frozen value: stack, layer, point (and head for per-head points)
    Site.parse      "encoder.12.resid_post" -> Site;  str(site) gives the string back
    SiteTable       what a loaded model offers: stacks, layers per stack, heads, points
    POINTS          the point names and the layers each accepts

Layer numbering follows Hugging Face ``output_hidden_states``. ``resid_post`` at layer L is
exactly ``hidden_states[L]``: layer 0 is the embedding output, layer L (1 <= L < n) the
residual stream after block L, and layer n (the last) the output *after the stack's final
norm*. Every other point belongs to block L, counted from 1 (``L.resid_pre`` is the input of
block L, ``L.attn_out`` what its attention adds to the residual, ``L.attn.head{h}`` head h at
the input of the attention output projection, ``L.block_out`` its raw output, which for the
last block is the residual *before* the final norm).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from harness.errors import SiteError

__all__ = ["Site", "SiteTable", "POINTS", "parse_site"]

# point name -> lowest layer it accepts (the highest is always n, the stack's block count)
POINTS: dict[str, int] = {
    "resid_pre": 1,
    "resid_post": 0,
    "attn_out": 1,
    "mlp_out": 1,
    "block_out": 1,
    "cross_attn_out": 1,
    "head": 1,
}

_HEAD_RE = re.compile(r"^attn\.head(-?\d+)$")
_SITE_RE = re.compile(r"^(?P<stack>[A-Za-z_]\w*)\.(?P<layer>-?\d+)\.(?P<point>.+)$")


@dataclass(frozen=True, order=True)
class Site:
    """One activation: ``Site("encoder", 12, "resid_post")`` or ``Site("blocks", 2, "head", head=2)``.

    >>> Site.parse("blocks.2.attn.head2")
    Site(stack='blocks', layer=2, point='head', head=2)
    >>> str(Site("encoder", 12, "resid_post"))
    'encoder.12.resid_post'
    >>> Site.parse("encoder.12.resid_pots")
    Traceback (most recent call last):
    ...
    harness.errors.SiteError: site 'encoder.12.resid_pots' has unknown point 'resid_pots'; ... did you mean 'resid_post'?
    """

    stack: str
    layer: int
    point: str
    head: int | None = None

    def __post_init__(self) -> None:
        if self.point not in POINTS:
            raise SiteError(
                f"`point` must be one of {_point_names()}, got {self.point!r}"
                f"{_did_you_mean(self.point, list(POINTS))}"
            )
        if (self.point == "head") != (self.head is not None):
            raise SiteError(
                f"`head` is required exactly for the per-head point; got point={self.point!r}, "
                f"head={self.head!r} (write e.g. 'blocks.2.attn.head2')"
            )

    @classmethod
    def parse(cls, text: str) -> "Site":
        return parse_site(text)

    @property
    def point_name(self) -> str:
        return f"attn.head{self.head}" if self.point == "head" else self.point

    def __str__(self) -> str:
        return f"{self.stack}.{self.layer}.{self.point_name}"


def parse_site(text: str) -> Site:
    """Parse ``STACK.LAYER.POINT`` (``encoder.12.resid_post``, ``blocks.2.attn.head2``)."""
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
    head_match = _HEAD_RE.match(point)
    if head_match:
        point, head = "head", int(head_match[1])
    elif point not in POINTS or point == "head":
        raise SiteError(
            f"site {text!r} has unknown point {point!r}; valid points are {_point_names()}"
            f"{_did_you_mean(point, [p for p in POINTS if p != 'head'] + ['attn.head0'])}"
        )
    return Site(match["stack"], int(match["layer"]), point, head)


@dataclass(frozen=True)
class StackShape:
    """What one stack of a loaded model offers."""

    name: str
    n_layers: int
    n_heads: int
    d_model: int
    d_head: int
    points: tuple[str, ...]


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
        """Return the site if the model has it; otherwise raise `SiteError` listing valid values."""
        if isinstance(site, str):
            site = parse_site(site)
        shape = self.stack(site.stack)
        if site.point not in shape.points:
            shown = [p if p != "head" else "attn.head{h}" for p in shape.points]
            raise SiteError(
                f"`point` must be one of {shown} for {site.stack} of {self.model_name}, "
                f"got {site.point_name!r}"
            )
        low, high = POINTS[site.point], shape.n_layers
        if not low <= site.layer <= high:
            hint = ""
            if site.point == "resid_post" and site.layer == high + 1:
                hint = f"; layer {high} is the output after the final norm"
            elif site.point != "resid_post" and site.layer == 0:
                hint = "; blocks are counted from 1 (layer 0 exists only as resid_post, the embeddings)"
            raise SiteError(
                f"`layer` must be in {low}..{high} for {site.point_name} of {site.stack} of "
                f"{self.model_name}, got {site.layer}{hint}"
            )
        if site.point == "head" and not 0 <= site.head < shape.n_heads:  # type: ignore[operator]
            raise SiteError(
                f"`head` must be in 0..{shape.n_heads - 1} for {site.stack} of {self.model_name} "
                f"({shape.n_heads} heads), got {site.head}"
            )
        return site

    def all_sites(self, point: str, stack: str | None = None) -> list[Site]:
        """Every valid site with this point, in layer (then head) order.

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
            for layer in range(POINTS[point], shape.n_layers + 1):
                if point == "head":
                    out.extend(Site(shape.name, layer, "head", h) for h in range(shape.n_heads))
                else:
                    out.append(Site(shape.name, layer, point))
        return out


def _point_names() -> list[str]:
    return [p if p != "head" else "attn.head{h}" for p in POINTS]


def _did_you_mean(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
