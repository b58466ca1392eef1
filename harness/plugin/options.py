"""The command-line options of the plugin (group "claims") and the `ClaimsSettings` they make.

`pytest_addoption` declares the options; the option parsers (``_int_option`` and friends) turn
a bad value into a usage error that names the option; `settings_from_options` builds the run's
frozen `ClaimsSettings` and raises `ClaimsOptionError` for options that do not fit together.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from harness.errors import HarnessError
from harness.verdicts.families import CORRECTIONS

from .live import PROGRESS_MODES

DEFAULT_REPORT_DIR = "reports/latest"
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


class ClaimsOptionError(HarnessError, ValueError):
    """Command-line options that parse one by one but do not fit together."""


@dataclass(frozen=True)
class ClaimsSettings:
    """The run's settings, from the command line.

    `models` maps a model name to the spec given with ``--claims-model NAME=SPEC``; `data`
    maps a data set name to the path given with ``--claims-data NAME=PATH``; `saes` maps a study
    name to the SAE given with ``--claims-sae NAME=SPEC`` (all read-only). `model_options` maps
    a model name to its loading options from ``--claims-model-options NAME=KEY=VALUE,...``
    (``{key: text}``; checked when the model loads, `harness.models.placement`).
    """

    seed: int = 0
    resamples: int = 9999
    models: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    data: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    report_dir: Path = Path(DEFAULT_REPORT_DIR)
    thresholds: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    correction: str = "bonferroni"
    saes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    sizes: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    model_options: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: MappingProxyType({}))

    def model_spec(self, name: str, default: str | None = None) -> str | None:
        """The spec given for model `name` with ``--claims-model``, else `default`; with
        ``--claims-model-options`` for `name`, a `ModelSpec` (a str, equal to the spec) whose
        ``load_options`` `load_model` applies.

        Example: ``claims_settings.model_spec("tacgen", "fixture:tacgen")``.
        """
        spec = self.models.get(name, default)
        options = self.model_options.get(name)
        return ModelSpec(spec, options) if spec is not None and options else spec

    def data_path(self, name: str, default: str | None = None) -> str | None:
        """The path given for data set `name` with ``--claims-data`` (as typed), else `default`.

        Example: ``claims_settings.data_path("mbpp", "fixture:mbpp")``.
        """
        return self.data.get(name, default)

    def sae_spec(self, name: str, default: str | None = None) -> str | None:
        """The SAE given for `name` with ``--claims-sae`` (a folder in sae-lens' format, or
        ``RELEASE/SAE_ID`` from the local sae-lens cache), else `default`.

        Example: ``claims_settings.sae_spec("codegen", str(fixture_dir / "sae"))``.
        """
        return self.saes.get(name, default)

    def thresholds_row(self, study: str) -> str | None:
        """The threshold row named for `study` with ``--claims-thresholds STUDY=ROW``, else None."""
        return self.thresholds.get(study)

    def size(self, study: str) -> int | None:
        """The count given for `study` with ``--claims-n STUDY=N`` (it replaces the row field the
        study's declaration names in ``Study(..., n=FIELD)``), else None."""
        return self.sizes.get(study)


class ModelSpec(str):
    """A model spec (the str itself) with the loading options given for its name on the command
    line (``load_options``: ``{key: text}``, read by `harness.models.load.load_model`)."""

    load_options: Mapping[str, str]

    def __new__(cls, spec: str, load_options: Mapping[str, str]) -> "ModelSpec":
        out = super().__new__(cls, spec)
        out.load_options = MappingProxyType(dict(load_options))
        return out

    def __getnewargs__(self) -> tuple[str, dict[str, str]]:
        # copy, deepcopy and pickle rebuild a str subclass through __new__ with these arguments
        # (str's own give only the text): the report's evidence is deep-copied
        return str(self), dict(self.load_options)

    def __getstate__(self) -> None:
        return None   # everything is in __getnewargs__ (a mappingproxy cannot be pickled)


class _LoadOptionsText(dict):
    """The parsed value of one ``--claims-model-options`` (printed as typed): told apart from a
    spec in the list the two options share (``claims_model``), so the loading options need no
    option of their own in the session's settings plumbing."""

    def __str__(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.items())


def _model_options_option(text: str) -> tuple[str, _LoadOptionsText]:
    """``NAME=device_map=auto,dtype=bfloat16`` -> (NAME, {key: text}); a usage error for an
    unknown key (naming the keys), an entry without ``=``, or a key given twice."""
    from harness.models.placement import parse_options_text

    name, sep, rest = text.partition("=")
    example = "tracer=device_map=auto,dtype=bfloat16,max_memory=cpu:8GiB"
    if not sep or not name or not rest or not _NAME_RE.fullmatch(name):
        raise argparse.ArgumentTypeError(
            f"expected NAME=KEY=VALUE[,KEY=VALUE...] such as --claims-model-options {example}, got {text!r}")
    try:
        return name, _LoadOptionsText(parse_options_text(rest, where=f"--claims-model-options {name}"))
    except HarnessError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_model_options_option.__name__ = "NAME=OPTIONS"


def _int_option(option: str, *, minimum: int, example: int) -> Any:
    def convert(text: str) -> int:
        try:
            value = int(text, 10)
        except (TypeError, ValueError):
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(
                f"expected an integer >= {minimum} such as {option}={example}, got {text!r}"
            )
        return value

    convert.__name__ = "integer"
    return convert


def _positive_float_option(option: str, *, example: float) -> Any:
    def convert(text: str) -> float:
        try:
            value = float(text)
        except (TypeError, ValueError):
            value = float("nan")
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"expected a number > 0 such as {option}={example}, got {text!r}")
        return value

    convert.__name__ = "number"
    return convert


def _pair_option(option: str, rhs: str, example: str) -> Any:
    def convert(text: str) -> tuple[str, str]:
        name, sep, value = text.partition("=")
        if not sep or not name or not value:
            raise argparse.ArgumentTypeError(
                f"expected NAME={rhs} such as {option} {example}, got {text!r}"
            )
        if not _NAME_RE.fullmatch(name):
            raise argparse.ArgumentTypeError(
                f"NAME in NAME={rhs} must start with a letter or '_' and hold only letters, "
                f"digits, '_', '-' or '.', got {name!r} in {text!r}; e.g. {option} {example}"
            )
        return name, value

    convert.__name__ = f"NAME={rhs}"
    return convert


def settings_from_options(
    *,
    seed: int,
    resamples: int,
    models: Sequence[tuple[str, str]] | None,
    data: Sequence[tuple[str, str]] | None,
    report: str | None,
    rootdir: Path,
    invocation_dir: Path,
    thresholds: Sequence[tuple[str, str]] | None = None,
    correction: str = "bonferroni",
    saes: Sequence[tuple[str, str]] | None = None,
    sizes: Sequence[tuple[str, str]] | None = None,
) -> ClaimsSettings:
    """`ClaimsSettings` from parsed options (pytest turns a `ClaimsOptionError` into a usage
    error). The default report directory is relative to `rootdir`; a directory given on the
    command line is relative to `invocation_dir`."""

    def table(option: str, pairs: Sequence[tuple[str, Any]] | None) -> Mapping[str, Any]:
        out: dict[str, Any] = {}
        for name, value in pairs or ():
            if name in out and out[name] != value:
                raise ClaimsOptionError(
                    f"{option} gives {name!r} twice ({name}={out[name]} and {name}={value}); "
                    f"give each name once"
                )
            out[name] = value
        return MappingProxyType(out)

    counts: dict[str, int] = {}
    for name, text in table("--claims-n", sizes).items():
        value = int(text) if text.isdigit() else 0
        if value < 1:
            raise ClaimsOptionError(f"--claims-n {name}={text}: N must be a positive integer, e.g. "
                                    f"--claims-n {name}=200")
        counts[name] = value
    report_dir = rootdir / DEFAULT_REPORT_DIR if report is None else invocation_dir / report
    # --claims-model-options shares --claims-model's list: its entries are the parsed options
    specs = [(n, v) for n, v in models or () if not isinstance(v, _LoadOptionsText)]
    options = [(n, v) for n, v in models or () if isinstance(v, _LoadOptionsText)]
    return ClaimsSettings(
        seed=seed,
        resamples=resamples,
        models=table("--claims-model", specs),
        model_options=MappingProxyType({n: MappingProxyType(dict(v))
                                        for n, v in table("--claims-model-options", options).items()}),
        data=table("--claims-data", data),
        report_dir=report_dir,
        thresholds=table("--claims-thresholds", thresholds),
        correction=correction,
        saes=table("--claims-sae", saes),
        sizes=MappingProxyType(counts),
    )


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("claims", "interpretability claims (harness.plugin)")
    group.addoption(
        "--claims-seed", type=_int_option("--claims-seed", minimum=0, example=1234), default=0,
        metavar="SEED", help="base seed; each claim's seed is derived from it and its node id (default 0)",
    )
    group.addoption(
        "--claims-resamples", type=_int_option("--claims-resamples", minimum=1, example=9999),
        default=9999, metavar="N", help="bootstrap resamples for confidence intervals (default 9999)",
    )
    group.addoption(
        "--claims-model", action="append", metavar="NAME=SPEC",
        type=_pair_option("--claims-model", "SPEC", "tacgen=kaiyuy/leandojo-lean4-tacgen-byt5-small"),
        help="run the claims on this model for NAME (hub id, local path, fixture:NAME, a .gguf file or "
             "gguf:NAME of a packaged real model); repeatable",
    )
    group.addoption(
        "--claims-model-options", action="append", metavar="NAME=KEY=VALUE,...", dest="claims_model",
        type=_model_options_option,
        help="load model NAME with these options (keys: device_map, dtype, max_memory, offload_folder), e.g. "
             "tracer=device_map=auto,dtype=bfloat16,max_memory=0:20GiB+cpu:64GiB,offload_folder=/scratch/off; "
             "an explicit map lists MODULE:DEVICE entries joined by '+' (transformer.h.0:0+transformer.h.1:cpu); "
             "repeatable",
    )
    group.addoption(
        "--claims-data", action="append", metavar="NAME=PATH",
        type=_pair_option("--claims-data", "PATH", "mbpp=data/mbpp.jsonl"),
        help="read data set NAME from PATH; repeatable",
    )
    group.addoption(
        "--claims-sae", action="append", metavar="NAME=SPEC",
        type=_pair_option("--claims-sae", "SPEC",
                          "codegen=gemma-scope-2b-pt-res-canonical/layer_12/width_16k/canonical"),
        help="the SAE study NAME reads: a folder in sae-lens' format, or RELEASE/SAE_ID from the local "
             "sae-lens cache; repeatable",
    )
    group.addoption(
        "--claims-thresholds", action="append", metavar="STUDY=ROW",
        type=_pair_option("--claims-thresholds", "ROW", "tacgen=fixture:tacgen"),
        help="judge STUDY's claims by the threshold row ROW of its settings (default: the row of the "
             "model's spec, or of the model its config names); repeatable",
    )
    group.addoption(
        "--claims-n", action="append", metavar="STUDY=N",
        type=_pair_option("--claims-n", "N", "recall=200"),
        help="measure N items in STUDY (prompts, problems: the row field its study.py names with "
             "Study(..., n=FIELD)) instead of its row's count, e.g. more on a GPU; the row's refuted "
             "claims then run as claims; repeatable",
    )
    group.addoption(
        "--claims-correction", choices=CORRECTIONS, default="bonferroni",
        help="multiple-comparison correction of the effect claims in a family (default bonferroni; "
             "see reports/README.md)",
    )
    group.addoption(
        "--claims-threads", type=_int_option("--claims-threads", minimum=1, example=1), default=None,
        metavar="N", help="torch intra-op threads for the run (default: torch's own choice); on a CPU "
                          "shared with other jobs, 1 avoids OpenMP threads waiting on each other",
    )
    group.addoption(
        "--claims-baseline", default=None, metavar="BASE.json",
        help="compare this run with a baseline report at the end; a claim that held and now fails, or "
             "an effect that moved beyond --claims-tolerance, fails the session",
    )
    group.addoption(
        "--claims-tolerance", type=_positive_float_option("--claims-tolerance", example=3), default=None,
        metavar="T", help="how far an effect may move, in half-widths of the baseline's CI (default 3)",
    )
    group.addoption(
        "--claims-update-baseline", action="store_true", default=False,
        help="write this run's report as the baseline (--claims-baseline, default reports/baseline.json)",
    )
    group.addoption(
        "--claims-progress", choices=PROGRESS_MODES, default="auto",
        help="a live status line for long work (sweeps, patching maps, fixture builds): auto (default) "
             "shows it on a terminal, not under -q and not on xdist workers; on forces it; off silences it",
    )
    group.addoption(
        "--claims-report", default=None, metavar="DIR",
        help=f"directory for report.json (default {DEFAULT_REPORT_DIR} under the rootdir)",
    )
