"""The README's run excerpt is a real run of the study, kept current: its counts are those of
the committed baseline (``reports/baseline.json``, rewritten with each change of the study)."""

from __future__ import annotations

import re
from collections import Counter

from harness.reports import read_report
from tests._support.paths import ROOT



def excerpt() -> str:
    text = (ROOT / "README.md").read_text()
    body = text.split("## What a run prints\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```\n(.*?)```", body, flags=re.S).group(1)


def test_the_readme_excerpt_counts_are_the_baselines():
    baseline = read_report(ROOT / "reports" / "baseline.json")
    header = re.search(r"claims: seed (\d+), resamples (\d+); (\d+) claims \(([^)]*)\)", excerpt())
    assert header, "the excerpt has no claims header line"
    seed, resamples, total, counts = header.groups()
    assert (int(seed), int(resamples)) == (baseline.run.seed, baseline.run.resamples)
    assert int(total) == len(baseline.claims)
    said = {outcome: int(n) for n, outcome in re.findall(r"(\d+) (\w+)", counts)}
    assert said == dict(Counter(c.outcome for c in baseline.claims))


def test_the_readme_excerpt_lists_each_studys_model_as_the_baseline_does():
    baseline = read_report(ROOT / "reports" / "baseline.json")
    for model in baseline.models:
        assert f"model {model.name}: {model.spec}  fingerprint {model.fingerprint[:12]}" in excerpt()
    for study in baseline.studies:
        assert f"study {study.study}: thresholds row {study.row!r} ({study.why})" in excerpt()
