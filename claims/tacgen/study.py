"""The tacgen study's declaration, read by the installed plugin at collection (`harness.plugin.Study`):
its default model and threshold rows live in `claims.tacgen.settings`."""

from harness.plugin import Study

from claims.tacgen.settings import DEFAULT_MODEL, THRESHOLDS

STUDY = Study(
    "tacgen",
    model=DEFAULT_MODEL,
    thresholds=THRESHOLDS,
)
