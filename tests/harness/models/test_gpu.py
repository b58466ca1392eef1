"""The GPU path: patching maps, replays, cached sweeps and Noise on CUDA equal the CPU's, under
eager and sdpa attention, and bf16 agrees with fp32 within bf16's precision.

Skipped where torch sees no CUDA device (CI has none); run on a GPU machine with
``pytest tests/harness/models/test_gpu.py``.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from harness.interventions import Noise, Record, intervene
from harness.models.load import from_module, pad_rows
from harness.measures.patching import patch_head_map, patch_resid_map
from harness.measures.scores import logprob_diff
from harness.measures.sweeps import scorer, sweep, symmetric
from tests.harness.measures.test_replay_implementations import PADDED, TEXTS, model
from tests._support.tiny import gpt2_24

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch sees none)")


def on(m, *, dtype=torch.float32):
    """A copy of the CPU model `m` on the GPU, in `dtype`."""
    module = copy.deepcopy(m.module).to("cuda", dtype)
    return from_module(module.eval(), m.tokenizer, name=f"{m.name}-cuda-{dtype}")


@pytest.mark.parametrize("kind", ["resid", "head"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("arch", ["gpt2-issue", "llama"])
def test_patching_maps_on_the_gpu_equal_the_cpu_maps(arch, attn, kind):
    cpu = model(arch, attn)
    fn = patch_head_map if kind == "head" else patch_resid_map
    want = fn(cpu, *PADDED, batch_size=5)
    got = fn(on(cpu), *PADDED, batch_size=5)
    assert got.values.device.type == "cpu"  # results come back to the CPU
    worst = float((got.values - want.values).nan_to_num(0.0).abs().max())
    assert torch.equal(got.values.isnan(), want.values.isnan()) and worst < 1e-4, worst
    assert torch.allclose(got.clean, want.clean, atol=1e-4) and torch.allclose(got.corrupt, want.corrupt, atol=1e-4)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_bf16_patching_maps_agree_with_fp32_within_bf16_precision(attn):
    cpu = model("llama", attn)
    full = patch_resid_map(on(cpu), *PADDED, batch_size=5).values
    half = patch_resid_map(on(cpu, dtype=torch.bfloat16), *PADDED, batch_size=5).values
    real = ~full.isnan()
    spread = float(full[real].max() - full[real].min())
    worst = float((half[real] - full[real]).abs().max())
    assert worst < 0.05 * spread, f"bf16 off by {worst} on a map spanning {spread}"


@pytest.mark.parametrize("site", ["encoder.2.resid_post", "encoder.3.resid_post"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_the_cached_t5_sweep_on_the_gpu_equals_the_cpu_sweep(attn, site):
    cpu = model("t5", attn)
    direction = torch.randn(cpu.width(cpu.site(site)), generator=torch.Generator().manual_seed(0))
    score, alphas = scorer(logprob_diff, "intro", "apply"), symmetric(0.5, steps=3)
    want = sweep(cpu, TEXTS, at=site, direction=direction, alphas=alphas, score=score, batch_size=5)
    got = sweep(on(cpu), TEXTS, at=site, direction=direction, alphas=alphas, score=score, batch_size=5)
    np.testing.assert_allclose(got.scores, want.scores, atol=1e-4, rtol=1e-5)


def _noise(m, texts):
    """The noise Noise(std=1, seed=7) adds at blocks.1.resid_pre, ``[batch, pos, d]`` on the CPU."""
    rows = m.tokenize(texts)
    ids, mask = pad_rows(rows, pad_id=m.pad_id, device=m.device)
    site = m.site("blocks.1.resid_pre")
    seen = []
    for plan in ([Record()], [Noise(std=1.0, seed=7), Record()]):
        with torch.no_grad(), intervene(m, {site: plan}, masks={"blocks": mask}) as run:
            m.module(input_ids=ids, attention_mask=mask)
        seen.append(run.recorded[site].float().cpu())
    return seen[1] - seen[0]


def test_noise_on_the_gpu_is_the_cpus_noise():
    cpu = gpt2_24()
    texts = ["ab", "a much longer neighbour"]
    assert torch.allclose(_noise(on(cpu), texts), _noise(cpu, texts), atol=1e-5)
