"""The tracer study's declaration, read by the installed plugin at collection (`harness.plugin.Study`):
its default model and threshold rows live in `claims.tracer.settings`."""

from harness.plugin import Study

from claims.tracer.settings import DEFAULT_MODEL, THRESHOLDS

STUDY = Study(
    "tracer",
    model=DEFAULT_MODEL,
    thresholds=THRESHOLDS,
)
