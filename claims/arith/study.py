"""The arith study's declaration, read by the installed plugin at collection (`harness.plugin.Study`):
its default model and threshold rows live in `claims.arith.settings`."""

from harness.plugin import Study

from claims.arith.settings import DEFAULT_MODEL, THRESHOLDS

STUDY = Study(
    "arith",
    model=DEFAULT_MODEL,
    thresholds=THRESHOLDS,
)
