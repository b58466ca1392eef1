"""Interventions: hooks that read or edit a site while the model runs, removed when it ends.

    positions     Positions (all, spans, last real token, mask) and ALL: where an intervention acts
    intervention  Intervention, Context: the protocol every kind implements (subclass it for a new kind)
    edits         Record, Add, RmsAdd, Patch, Interchange, Ablate, ProjectOut: the deterministic edits at a site
    noise         Noise, noise_draw: Gaussian noise keyed by (seed, the row's real tokens, position)
    hooks         intervene(...), Run: install hooks for a block, remove them in finally
    acted         check_acted, ActedReport: prove an intervention changed its site where intended
    prefix        StackPrefix: run a stack once up to a site, replay only the blocks after it
"""

from __future__ import annotations

from harness.interventions.positions import Positions  # noqa: F401
from harness.interventions.intervention import Context, Intervention  # noqa: F401
from harness.interventions.edits import Record, Add, RmsAdd, Patch, Interchange, Ablate, ProjectOut  # noqa: F401
from harness.interventions.noise import Noise, noise_draw  # noqa: F401
from harness.interventions.hooks import Run, intervene  # noqa: F401
from harness.interventions.acted import check_acted, ActedReport  # noqa: F401

__all__ = [
    'Positions', 'Record', 'Add', 'RmsAdd', 'Patch', 'Interchange', 'Ablate', 'ProjectOut', 'Noise', 'noise_draw',
    'Intervention', 'Context', 'Run', 'intervene', 'check_acted', 'ActedReport',
]
