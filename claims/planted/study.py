"""The planted study's declaration, read by the installed plugin at collection (`harness.plugin.Study`):
its default model and threshold rows live in `claims.planted.settings`."""

from harness.plugin import Study

from claims.planted.settings import DEFAULT_MODEL, THRESHOLDS

STUDY = Study(
    "planted",
    model=DEFAULT_MODEL,
    thresholds=THRESHOLDS,
)
