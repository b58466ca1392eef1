"""Training a small SAE on a model's activations at a site, and measuring an SAE's quality.

    train_sae     seeded training with sae-lens' ``SAETrainer`` fed by our own activation batches;
                  saved in sae-lens' format (``SAE.load_from_disk`` loads it)
    TrainedSae    the inference SAE, its site and hook name, its held-out quality, its folder
    measure_sae   fraction of variance explained, mean L0 and dead features on activations
    SaeQuality    those numbers

Architectures: ``"standard"`` (ReLU with an L1 penalty weighted by the decoder norms, Bricken
et al. 2023) and ``"jumprelu"`` (a learned threshold per feature and an L0 penalty through
straight-through estimators, Rajamanoharan et al. 2024, as used for Gemma Scope, Lieberum et
al. 2024). Activations are scaled to mean norm sqrt(d_in) while training (sae-lens'
``expected_average_only_in``) and the scale is folded into the weights afterwards, so the saved
SAE reads raw activations.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from harness import progress
from harness.errors import DataError, ShapeError
from harness.models.loaded import LoadedModel
from harness.models.sites import Site
from harness.saes.features import site_activations
from harness.saes.hooks import hook_for_site

__all__ = ["train_sae", "TrainedSae", "measure_sae", "SaeQuality"]

ARCHITECTURES = ("standard", "jumprelu")
_DEFAULT_SPARSITY = {"standard": 1.0, "jumprelu": 1.0}  # sae-lens' defaults


@dataclass(frozen=True)
class SaeQuality:
    """An SAE on activations ``x`` ``[tokens, d_in]`` (with ``f = encode(x)``, ``x^ = decode(f)``).

    ``explained_variance``: ``1 - sum ||x - x^||^2 / sum ||x - mean(x)||^2`` (1 is perfect,
    0 no better than the mean); ``mean_l0``: mean count of nonzero features per token;
    ``dead_fraction``: fraction of the d_sae features that are zero on every token;
    ``mse``: mean over tokens of ``||x - x^||^2``, in the activation's squared units.
    """

    explained_variance: float
    mean_l0: float
    dead_fraction: float
    mse: float
    n_tokens: int


@dataclass(frozen=True)
class TrainedSae:
    """What `train_sae` returns: the inference SAE (as ``SAE.load_from_disk`` loads it when saved),
    the site and hook name it reads, its quality on held-out texts, its folder (or None), and the
    training loss at each step."""

    sae: Any
    site: str
    hook_name: str
    quality: SaeQuality
    path: Path | None
    losses: tuple[float, ...]


@torch.no_grad()
def measure_sae(sae: Any, activations: torch.Tensor, *, chunk: int = 1024) -> SaeQuality:
    """`SaeQuality` of `sae` on `activations` ``[tokens, d_in]`` (e.g. `site_activations` of held-out texts).

    Raises `ShapeError` for activations that are not ``[tokens, d_in]``, `DataError` for an
    empty or constant set (the variance explained is undefined).
    """
    x = torch.as_tensor(activations)
    d_in = int(sae.cfg.d_in)
    if x.dim() != 2 or x.shape[1] != d_in:
        raise ShapeError(f"`activations` must be [tokens, {d_in}] (the SAE's d_in), got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise DataError("`activations` is empty; measure the SAE on at least one token")
    device, dtype = sae.W_dec.device, sae.W_dec.dtype
    mean = x.double().mean(0)
    total = float((x.double() - mean).pow(2).sum())
    if total == 0.0:
        raise DataError("`activations` are all equal; the fraction of variance explained is undefined")
    sse, l0 = 0.0, 0.0
    fired = torch.zeros(int(sae.cfg.d_sae), dtype=torch.bool)
    for start in range(0, x.shape[0], chunk):
        part = x[start:start + chunk].to(device, dtype)
        f = sae.encode(part)
        sse += float((sae.decode(f).double() - part.double()).pow(2).sum())
        active = (f != 0).cpu()
        l0 += float(active.sum())
        fired |= active.any(0)
    n = x.shape[0]
    return SaeQuality(explained_variance=1.0 - sse / total, mean_l0=l0 / n,
                      dead_fraction=float((~fired).float().mean()), mse=sse / n, n_tokens=n)


def train_sae(model: LoadedModel, inputs: Sequence[str], *, site: Site | str, d_sae: int, steps: int = 300,
              batch_size: int = 64, lr: float = 3e-3, architecture: str = "standard",
              sparsity: float | None = None, held_out: float = 0.2, seed: int = 0,
              path: str | os.PathLike | None = None, max_length: int | None = None) -> TrainedSae:
    """Train an SAE with `d_sae` features on `model`'s activations at `site` over `inputs`.

    Example::

        trained = train_sae(gemma, texts, site="blocks.13.resid_post", d_sae=128, steps=300, path=tmp)
        trained.quality.explained_variance, trained.quality.mean_l0
        SAE.load_from_disk(tmp)                         # the same encoder and decoder

    The texts are split (seeded, by text) into a training set and a held-out fraction
    `held_out`; the SAE trains on the real tokens of the first (`site_activations`) for `steps`
    Adam steps of `batch_size` tokens at learning rate `lr`, with the sparsity coefficient
    `sparsity` (sae-lens' ``l1_coefficient`` for "standard", default 1.0; ``l0_coefficient``
    for "jumprelu", default 1.0; sae-lens' defaults both), and its quality is measured on the second. Same arguments
    and seed on the same machine -> identical weights (initialisation under a forked torch RNG
    seeded with `seed`, batches from a generator seeded with it). With `path`, the inference SAE
    is saved there (``cfg.json`` with ``metadata.hook_name = hook_for_site(model, site)``, and
    ``sae_weights.safetensors``) and the returned SAE is the one ``SAE.load_from_disk`` reads back.

    Raises `DataError` (fewer than 2 texts, a held-out fraction outside (0, 1), a bad
    architecture, size or step count), `SiteError` for a site the model does not have or a
    per-head site.
    """
    from sae_lens import SAE, SAETrainer
    from sae_lens.config import SAETrainerConfig
    from sae_lens.saes.sae import SAEMetadata

    where = model.site(site)
    hook_name = hook_for_site(model, where)
    rows = _check(inputs, d_sae=d_sae, steps=steps, batch_size=batch_size, architecture=architecture,
                  held_out=held_out)
    split = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed)).tolist()
    n_held = min(len(rows) - 1, max(1, round(held_out * len(rows))))
    held = [rows[i] for i in sorted(split[:n_held])]
    train = [rows[i] for i in sorted(split[n_held:])]
    train_acts = site_activations(model, train, where, max_length=max_length)
    held_acts = site_activations(model, held, where, max_length=max_length)
    d_in = int(train_acts.shape[1])
    metadata = SAEMetadata(model_name=model.name, hook_name=hook_name, hook_head_index=None,
                           prepend_bos=True, dataset_path=f"{len(train)} texts (seed {seed})")
    device = str(model.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sae = _training_sae(architecture, d_in, d_sae, sparsity, device, metadata)
    config = SAETrainerConfig(total_training_samples=steps * batch_size, train_batch_size_samples=batch_size,
                              lr=lr, lr_end=lr, device=device, dead_feature_window=steps + 1,
                              feature_sampling_window=steps + 1)
    batches = _batches(train_acts, batch_size, seed)
    trainer = SAETrainer(config, sae, data_provider=batches)
    scale = math.sqrt(d_in) / float(train_acts.norm(dim=-1).mean())
    trainer.activation_scaler.scaling_factor = scale  # expected_average_only_in, folded in below
    losses = []
    # the steps of SAETrainer.fit() without its progress bar, wandb hooks and checkpoints
    with progress.task(f"train SAE at {where}", total=steps, unit="steps") as bar:
        for _ in range(steps):
            out = trainer.step(next(batches))
            trainer.n_training_steps += 1
            losses.append(out.loss.detach().item())
            bar.advance(1, note=f"loss {losses[-1]:.4g}")
    trainer.set_final_sae_metadata()
    sae.fold_activation_norm_scaling_factor(scale)
    sae.eval()
    inference = _inference_sae(SAE, sae, path)
    return TrainedSae(inference, str(where), hook_name, measure_sae(inference, held_acts),
                      None if path is None else Path(path), tuple(losses))


def _training_sae(architecture: str, d_in: int, d_sae: int, sparsity: float | None, device: str,
                  metadata: Any) -> Any:
    from sae_lens import (JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig, StandardTrainingSAE,
                          StandardTrainingSAEConfig)

    coefficient = _DEFAULT_SPARSITY[architecture] if sparsity is None else float(sparsity)
    if architecture == "standard":
        return StandardTrainingSAE(StandardTrainingSAEConfig(d_in=d_in, d_sae=d_sae, device=device,
                                                             l1_coefficient=coefficient, metadata=metadata))
    return JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(d_in=d_in, d_sae=d_sae, device=device,
                                                         l0_coefficient=coefficient, metadata=metadata))


def _inference_sae(sae_cls: Any, training: Any, path: str | os.PathLike | None) -> Any:
    """The inference SAE of a trained one: saved and read back by ``SAE.load_from_disk`` with a
    `path`, else built from the same inference config and state dict in memory."""
    if path is not None:
        training.save_inference_model(str(path))
        return sae_cls.load_from_disk(str(path), device=str(training.W_dec.device))
    cfg = training.cfg.get_inference_sae_cfg_dict()
    state = {k: v.detach().clone() for k, v in training.state_dict().items()}
    training.process_state_dict_for_saving_inference(state)
    inference = sae_cls.from_dict(cfg)
    inference.load_state_dict(state)
    return inference.eval()


def _batches(acts: torch.Tensor, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless batches of `batch_size` rows: the rows in seeded random order, epoch after epoch."""
    generator = torch.Generator().manual_seed(seed + 1)
    queue = torch.empty(0, dtype=torch.long)
    while True:
        while queue.numel() < batch_size:
            queue = torch.cat([queue, torch.randperm(acts.shape[0], generator=generator)])
        take, queue = queue[:batch_size], queue[batch_size:]
        yield acts[take]


def _check(inputs: Sequence[str], *, d_sae: int, steps: int, batch_size: int, architecture: str,
           held_out: float) -> list[str]:
    if isinstance(inputs, str):
        raise DataError("`inputs` must be a list of strings, got a single str; wrap it in a list")
    rows = list(inputs)
    if len(rows) < 2:
        raise DataError(f"`inputs` must hold at least 2 texts (some are held out), got {len(rows)}")
    if architecture not in ARCHITECTURES:
        raise DataError(f"`architecture` must be one of {list(ARCHITECTURES)}, got {architecture!r}")
    for name, value in (("d_sae", d_sae), ("steps", steps), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DataError(f"`{name}` must be a positive int, got {value!r}")
    if not 0.0 < float(held_out) < 1.0:
        raise DataError(f"`held_out` must be a fraction in (0, 1), got {held_out!r}")
    return rows
