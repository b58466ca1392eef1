"""The ``claims`` command.

    claims report reports/latest/report.json     # the terminal table again, from the JSON alone
    claims report reports/latest/report.json --html   # and report.html again
    claims diff BASE.json NEW.json               # what changed between two runs (exit 1: a regression)
    claims fixtures build tacgen --seed 0        # train / generate a fixture model or data set
    claims init animal --model /models/my-gpt2   # a new study in ./animal/ that runs green at once

`main(argv=None) -> int` is the console script (``claims = "harness.cli:main"``). Exit codes:
0 done, 1 a `HarnessError` (printed as ``claims: error: ...``) or, for ``diff``, a regression,
2 a usage error (and, for ``diff``, a report that cannot be read).
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
from collections.abc import Sequence

from harness import progress
from harness.errors import HarnessError

__all__ = ["main", "build_parser"]

TERMINAL_WIDTH = 160


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``claims`` (subcommands ``report`` and ``fixtures build``)."""
    parser = argparse.ArgumentParser(
        prog="claims", description="Mechanistic-interpretability claims: reports and fixtures."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    report = sub.add_parser("report", help="print the table of a report.json again")
    report.add_argument("path", metavar="PATH", help="a report.json written by `pytest claims/`")
    report.add_argument("--html", action="store_true",
                        help="also write report.html beside it again (from the JSON and the plots beside it)")
    report.set_defaults(run=_report)

    diff = sub.add_parser("diff", help="compare two reports: verdict changes, effect movement, provenance")
    diff.add_argument("base", metavar="BASE", help="the baseline report.json")
    diff.add_argument("new", metavar="NEW", help="the new report.json")
    diff.add_argument("--tolerance", type=_tolerance, default=None, metavar="T",
                      help="how far an effect may move, in half-widths of the baseline's CI (default 3)")
    diff.set_defaults(run=_diff)

    fixtures = sub.add_parser("fixtures", help="fixture models and data sets")
    fixtures_sub = fixtures.add_subparsers(dest="fixtures_command", metavar="ACTION", required=True)
    build = fixtures_sub.add_parser("build", help="build one fixture by its seeded recipe")
    build.add_argument("name", metavar="NAME", help="the fixture to build, e.g. tacgen")
    build.add_argument(
        "--seed", type=_seed, default=None, metavar="S",
        help="recipe seed (default: the recipe's own SEED)",
    )
    build.set_defaults(run=_fixtures_build)

    init = sub.add_parser("init", help="write a new study in ./NAME/ (never overwrites)")
    init.add_argument("name", metavar="NAME", help="the study's name and folder (a Python identifier), e.g. animal")
    init.add_argument("--model", required=True, metavar="SPEC",
                      help="its default model: a checkpoint directory, a hub id, or fixture:NAME")
    init.add_argument("--dir", default=".", metavar="DIR", help="where to create NAME/ (default: here)")
    init.set_defaults(run=_init)
    return parser


def _seed(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"expected an integer >= 0 such as --seed 1234, got {text!r}"
        )
    return value


def _tolerance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0 such as --tolerance 3, got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``claims`` with `argv` (default: the process's arguments) and return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage and the error
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return args.run(args)
    except HarnessError as exc:
        print(f"claims: error: {exc}", file=sys.stderr)
        return 1


def _report(args: argparse.Namespace) -> int:
    from rich.console import Console

    from harness.reports import read_report, render_terminal

    report = read_report(args.path)
    render_terminal(report, Console(width=TERMINAL_WIDTH, highlight=False), path=args.path)
    if args.html:
        from pathlib import Path

        from harness.reports import write_html

        print(f"html report: {write_html(report, Path(args.path).parent)}")
    return 0


def _diff(args: argparse.Namespace) -> int:
    from harness.reports import DEFAULT_TOLERANCE, diff_files, render_diff

    try:
        result = diff_files(args.base, args.new, tolerance=args.tolerance or DEFAULT_TOLERANCE)
    except HarnessError as exc:  # exit 2, so a script can tell a bad input from a regression
        print(f"claims: error: {exc}", file=sys.stderr)
        return 2
    print(render_diff(result, width=TERMINAL_WIDTH), end="")
    return result.exit_status


def _init(args: argparse.Namespace) -> int:
    from harness.scaffold import write_study

    folder = write_study(args.name, model=args.model, parent=args.dir)
    print(f"wrote {folder}/ (study.py, conftest.py, prompts.txt, test_{args.name}.py); run it with: pytest {folder}")
    return 0


def _stderr_status(line: str | None) -> None:
    """The progress of a build as one line on the terminal's stderr, erased when it ends."""
    width = max(20, shutil.get_terminal_size().columns - 1)
    text = "" if line is None else line[:width]
    sys.stderr.write("\r" + text.ljust(width) + ("\r" if line is None else ""))
    sys.stderr.flush()


def _fixtures_build(args: argparse.Namespace) -> int:
    try:
        fixtures = importlib.import_module("harness.models.fixtures")
    except ImportError as exc:
        print(
            f"claims: error: cannot build fixture {args.name!r}: harness.models.fixtures could not be "
            f"imported ({exc}); install the project with its dependencies (pip install -e .)",
            file=sys.stderr,
        )
        return 1
    previous = progress.set_sink(_stderr_status) if sys.stderr.isatty() else None
    try:
        result = fixtures.build(args.name, seed=args.seed)
    finally:
        if sys.stderr.isatty():
            progress.set_sink(previous)
    seed = "the recipe's seed" if args.seed is None else f"seed {args.seed}"
    where = f": {result}" if result is not None else ""
    print(f"built fixture {args.name!r} with {seed}{where}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
