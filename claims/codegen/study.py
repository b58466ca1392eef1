"""The codegen study's declaration, read by the installed plugin at collection (`harness.plugin.Study`):
its default model and threshold rows live in `claims.codegen.settings`."""

from harness.plugin import Study

from claims.codegen.settings import DEFAULT_MODEL, THRESHOLDS

STUDY = Study(
    "codegen",
    model=DEFAULT_MODEL,
    thresholds=THRESHOLDS,
    saes=("codegen",),
    n="n_problems",   # --claims-n codegen=N measures the first N problems of each split
)
