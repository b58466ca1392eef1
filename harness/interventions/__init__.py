"""Interventions: hooks that read or edit a site while the model runs, removed when it ends.

    core          intervene(...), Positions, Record, Add, RmsAdd, Patch, Ablate, Noise, check_acted
    prefix        StackPrefix: run a stack once up to a site, replay only the blocks after it
"""

from __future__ import annotations

from harness.interventions.core import (  # noqa: F401
    Positions, Record, Add, RmsAdd, Patch, Ablate, Noise, noise_draw, Intervention, Run,
    intervene, check_acted, ActedReport
)

__all__ = [
    'Positions', 'Record', 'Add', 'RmsAdd', 'Patch', 'Ablate', 'Noise', 'noise_draw',
    'Intervention', 'Run', 'intervene', 'check_acted', 'ActedReport',
]
