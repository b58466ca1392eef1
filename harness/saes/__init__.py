"""Sparse autoencoders (sae-lens 6.x) at the harness's sites: load, map, read, steer, train.

    load        load_sae: a folder in sae-lens' format, or a released SAE from the local HF cache (offline)
    hooks       site_for_hook, hook_for_site, hook_ref_for_site (HookRef: a name with its head or units),
                sae_site: a TransformerLens / SAE hook name <-> `Site`, an SAE's d_in checked
    features    feature_direction, FeatureDirection, encode_at, FeatureActivations, site_activations
    train       train_sae, TrainedSae, measure_sae, SaeQuality: seeded training, held-out quality

The one rule to remember: sae-lens' ``blocks.12.hook_resid_post`` (Gemma Scope's ``layer_12``)
is the output of 0-based block 12, ``hidden_states[13]``, the harness's ``blocks.13.resid_post``
(`harness.saes.hooks` has the whole table). sae-lens is imported only when an SAE is loaded or
trained, so importing this package stays as cheap as the rest of the harness.
"""

from __future__ import annotations

from harness.saes.load import load_sae  # noqa: F401
from harness.saes.hooks import HookRef, site_for_hook, hook_for_site, hook_ref_for_site, sae_site  # noqa: F401
from harness.saes.features import (  # noqa: F401
    FeatureActivations, FeatureDirection, encode_at, feature_direction, site_activations,
)
from harness.saes.train import SaeQuality, TrainedSae, measure_sae, train_sae  # noqa: F401

__all__ = [
    "load_sae",
    "site_for_hook", "hook_for_site", "hook_ref_for_site", "HookRef", "sae_site",
    "feature_direction", "FeatureDirection", "encode_at", "FeatureActivations", "site_activations",
    "train_sae", "TrainedSae", "measure_sae", "SaeQuality",
]
