"""The ``claim`` marker: what ``@pytest.mark.claim(text, *, source=None, family=None, check=False)`` says.

`parse_claim_mark` checks a marker's arguments into a `ClaimMark` (or raises
`ClaimMarkerError`, with "did you mean" for a misspelt keyword); `family_name` names the family
a claim is judged in; `MARKER_HELP` is the marker's line in ``pytest --markers``.

A claim states its finding with ``expect(...)``, which records the evidence; one that records
none ends as an error. ``check=True`` marks a plain check (a study's own consistency test, say
that the controls are what they say), which may pass without evidence and shows as ``check
passed``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.errors import HarnessError


MARKER_HELP = (
    "claim(text, *, source=None, family=None, check=False): this test states a finding about a "
    "model; `text` is the finding in one sentence, `source` where it was first reported, `family` "
    "a name shared by claims judged as one family (default: the parametrizations of this "
    "function), `check=True` a plain check that may record no evidence (any other claim must "
    "state its finding with expect(...)). Example: "
    '@pytest.mark.claim("Layer-12 class-mean steering moves logP(intro) - logP(apply)", '
    'source="notebook 000, cell 12")'
)

KEYWORDS: tuple[str, ...] = ("text", "source", "family", "check")


class ClaimMarkerError(HarnessError, ValueError):
    """A `claim` marker written wrongly (no text, text not a string, unknown keyword)."""


@dataclass(frozen=True)
class ClaimMark:
    """What ``@pytest.mark.claim(text, source=..., family=..., check=...)`` says."""

    text: str
    source: str | None = None
    family: str | None = None
    check: bool = False


def parse_claim_mark(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> ClaimMark:
    """Check a claim marker's arguments and return them, or raise `ClaimMarkerError`."""
    example = '@pytest.mark.claim("Layer-12 steering moves the score", source="notebook 000")'
    unknown = sorted(set(kwargs) - set(KEYWORDS))
    if unknown:
        close = [m for k in unknown for m in difflib.get_close_matches(str(k), KEYWORDS, n=1, cutoff=0.6)]
        hint = f"did you mean {', '.join(f'{m}=' for m in close)}? " if close else ""
        raise ClaimMarkerError(
            f"@pytest.mark.claim got unexpected keyword argument(s) "
            f"{', '.join(map(repr, unknown))}; {hint}it takes the text and source=, family=, "
            f"check=, e.g. {example}"
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
    check = kwargs.get("check", False)
    if not isinstance(check, bool):
        raise ClaimMarkerError(
            f"@pytest.mark.claim check must be True or False, got {type(check).__name__} "
            f"{check!r}; e.g. check=True for a plain check that states no finding with expect(...)"
        )
    return ClaimMark(text=text, source=source, family=family, check=check)


def family_name(nodeid: str, mark: ClaimMark) -> str:
    """The family a claim belongs to: the marker's ``family=``, else its function's node id
    without the parametrization (``claims/x.py::test_a[layer12]`` -> ``claims/x.py::test_a``)."""
    return mark.family if mark.family is not None else nodeid.split("[", 1)[0]
