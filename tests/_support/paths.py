"""Where things are, for tests at any depth of tests/."""

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]   # tests/
ROOT = TESTS.parent                           # the repository
SHARED = ROOT.parent / "shared"               # ../shared beside the clone (CI has it)
