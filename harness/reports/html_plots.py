"""The studies of a report and their plots, for the HTML page: which study a claim belongs
to, the plots a study wrote, and a plot file as a ``data:`` URI.

Contents:

- `study_of(nodeid, identity="") -> str`: the study a claim belongs to (its identity's first
  folder, ``tacgen/test_x.py::t`` -> ``tacgen``; else from the node id).
- `plots_in(report_dir, *, studies=None) -> dict[str, list[Path]]`: the plots a study wrote,
  ``REPORT_DIR/<study>/*.png``, and those written at the top of ``REPORT_DIR`` (sorted by file
  name).
- `PLOT_SUFFIXES`: the image types the page can inline, by file suffix.

Drawing plots is `harness.reports.plots`; this module only finds and reads the files.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from harness.reports.schema import Report

__all__ = [
    "PLOT_SUFFIXES",
    "plots_in",
    "study_of",
]

PLOT_SUFFIXES: Mapping[str, str] = {
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
TOP_LEVEL = "(top level)"


def study_of(nodeid: str, identity: str = "") -> str:
    """The study of a claim: the study its identity names (``tacgen/test_x.py::test_y[a]`` ->
    ``tacgen``, for a claim in a folder whose study.py declares a study); else the first directory
    under ``claims/`` in its node id (``claims/tacgen/test_x.py::test_y[a]`` -> ``tacgen``). A
    test outside a ``claims/`` directory belongs to the directory holding its file; a file
    directly under ``claims/`` or at the root belongs to ``"(top level)"``."""
    where = identity.split("::", 1)[0]
    if "/" in where:
        return where.split("/", 1)[0]
    path = nodeid.split("::", 1)[0].replace("\\", "/")
    parts = [p for p in path.split("/") if p and p != "."]
    dirs = parts[:-1]
    if "claims" in dirs:
        rest = dirs[dirs.index("claims") + 1:]
        return rest[0] if rest else TOP_LEVEL
    return dirs[-1] if dirs else TOP_LEVEL


def _studies(report: Report) -> list[str]:
    """The report's studies, in the order their first claim ran."""
    seen: dict[str, None] = {}
    for c in report.claims:
        seen.setdefault(study_of(c.nodeid, c.identity), None)
    return list(seen)


def plots_in(
    report_dir: str | os.PathLike[str], *, studies: Iterable[str] | None = None
) -> dict[str, list[Path]]:
    """The plots the studies wrote into the report directory: ``REPORT_DIR/<study>/*.png``,
    sorted by file name, keyed by study, studies in sorted order. Only studies with at least one
    PNG are listed; with `studies`, only those. A missing directory has no plots.

    Example::

        plots_in(Path("reports/latest"))   # {"tacgen": [.../tacgen/in_encoder.png, ...]}
    """
    root = Path(report_dir)
    wanted = None if studies is None else set(studies)
    out: dict[str, list[Path]] = {}
    try:
        entries = sorted(root.iterdir(), key=lambda p: p.name)
    except OSError:
        return out
    top = [p for p in entries if p.is_file() and p.suffix.lower() == ".png" and not p.name.startswith(".")]
    if top and (wanted is None or TOP_LEVEL in wanted):
        out[TOP_LEVEL] = top
    for entry in entries:
        if entry.name.startswith(".") or (wanted is not None and entry.name not in wanted):
            continue
        if not entry.is_dir():
            continue
        pngs = sorted(
            (p for p in entry.iterdir() if p.suffix.lower() == ".png" and p.is_file()),
            key=lambda p: p.name,
        )
        if pngs:
            out[entry.name] = pngs
    return out


def _caption(path: Path) -> str:
    """``steering_layer12.png`` -> ``steering layer12``."""
    words = path.stem.replace("_", " ").replace("-", " ").split()
    return " ".join(words) or path.name


def _data_uri(path: Path) -> tuple[str | None, str]:
    """(data URI, "") for a readable image, or (None, why not)."""
    mime = PLOT_SUFFIXES.get(path.suffix.lower())
    if mime is None:
        return None, f"not an image type the page can show ({path.suffix or 'no suffix'})"
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, f"cannot be read: {exc.strerror or exc}"
    if mime == "image/png" and not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None, "is not a PNG file"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}", ""
