"""The ``claim`` marker: what ``@pytest.mark.claim(text, *, source=None, family=None)`` says.

`parse_claim_mark` checks a marker's arguments into a `ClaimMark` (or raises
`ClaimMarkerError`); `family_name` names the family a claim is judged in; `MARKER_HELP` is the
marker's line in ``pytest --markers``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.errors import HarnessError


MARKER_HELP = (
    "claim(text, *, source=None, family=None): this test states a finding about a model; `text` is "
    "the finding in one sentence, `source` where it was first reported, `family` a name shared by "
    "claims judged as one family (default: the parametrizations of this function). Example: "
    '@pytest.mark.claim("Layer-12 class-mean steering moves logP(intro) - logP(apply)", '
    'source="notebook 000, cell 12")'
)


class ClaimMarkerError(HarnessError, ValueError):
    """A `claim` marker written wrongly (no text, text not a string, unknown keyword)."""


@dataclass(frozen=True)
class ClaimMark:
    """What ``@pytest.mark.claim(text, source=...)`` says."""

    text: str
    source: str | None = None
    family: str | None = None


def parse_claim_mark(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> ClaimMark:
    """Check a claim marker's arguments and return them, or raise `ClaimMarkerError`."""
    example = '@pytest.mark.claim("Layer-12 steering moves the score", source="notebook 000")'
    unknown = sorted(set(kwargs) - {"text", "source", "family"})
    if unknown:
        raise ClaimMarkerError(
            f"@pytest.mark.claim got unexpected keyword argument(s) "
            f"{', '.join(map(repr, unknown))}; it takes the text and source=..., e.g. {example}"
        )
    args = tuple(args)
    if "text" in kwargs:
        args = (kwargs["text"], *args)
    if not args:
        raise ClaimMarkerError(
            f"@pytest.mark.claim needs the finding as its text, got no text; e.g. {example}"
        )
    if len(args) > 1:
        raise ClaimMarkerError(
            f"@pytest.mark.claim takes one text, got {len(args)}: {args!r}; give the source "
            f"as a keyword, e.g. {example}"
        )
    text = args[0]
    if not isinstance(text, str):
        raise ClaimMarkerError(
            f"@pytest.mark.claim text must be a string, got {type(text).__name__} {text!r}; "
            f"e.g. {example}"
        )
    if not text.strip():
        raise ClaimMarkerError(
            f"@pytest.mark.claim text must state the finding, got {text!r}; e.g. {example}"
        )
    source = kwargs.get("source")
    if source is not None and not isinstance(source, str):
        raise ClaimMarkerError(
            f"@pytest.mark.claim source must be a string or None, got "
            f"{type(source).__name__} {source!r}; e.g. {example}"
        )
    family = kwargs.get("family")
    if family is not None and not (isinstance(family, str) and family.strip()):
        raise ClaimMarkerError(
            f"@pytest.mark.claim family must be a non-empty string or None, got "
            f"{type(family).__name__} {family!r}; e.g. family=\"controls at layer 12\""
        )
    return ClaimMark(text=text, source=source, family=family)


def family_name(nodeid: str, mark: ClaimMark) -> str:
    """The family a claim belongs to: the marker's ``family=``, else its function's node id
    without the parametrization (``claims/x.py::test_a[layer12]`` -> ``claims/x.py::test_a``)."""
    return mark.family if mark.family is not None else nodeid.split("[", 1)[0]
