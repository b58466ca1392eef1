"""Provenance of a run for `RunInfo`: package versions and the git state of the study.

Contents:

- `collect_versions()`: Python's version and the installed versions of torch, transformers and
  the harness (from package metadata; nothing is imported).
- `git_state(directory)`: the HEAD commit and whether the working tree has changes (`GitInfo`).
"""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Mapping
from importlib import metadata

from harness.reports.schema import GitInfo

__all__ = [
    "collect_versions",
    "git_state",
]

VERSIONED_PACKAGES: Mapping[str, str] = {
    "torch": "torch",
    "transformers": "transformers",
    "harness": "interp-claims",
}


def collect_versions() -> dict[str, str | None]:
    """Python's version and the installed versions of torch, transformers and the harness
    (read from package metadata; nothing is imported). None for a package not installed."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for key, dist in VERSIONED_PACKAGES.items():
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = None
    return out


def git_state(directory: str | os.PathLike[str]) -> GitInfo | None:
    """The HEAD commit of the git repo holding `directory` and whether `git status` shows any
    change (untracked files included), or None outside a git repo or without git. Read-only:
    runs ``git rev-parse`` and ``git --no-optional-locks status``."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "--no-optional-locks", "-C", str(directory), *args],
                capture_output=True, text=True, timeout=20, check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    status = git("status", "--porcelain")
    return GitInfo(commit=commit.strip(), dirty=bool(status and status.strip()))
