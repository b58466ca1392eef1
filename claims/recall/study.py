"""The recall study's declaration, read by the installed plugin at collection (`harness.plugin.Study`):
its default model and threshold rows live in `claims.recall.settings`."""

from harness.plugin import Study

from claims.recall.settings import DEFAULT_MODEL, THRESHOLDS

STUDY = Study(
    "recall",
    model=DEFAULT_MODEL,
    thresholds=THRESHOLDS,
    n="n_prompts",   # --claims-n recall=N traces N known facts
)
