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

from harness.interventions import Add, Noise, Record, intervene
from harness.models.load import from_module
from harness.models.loaded import pad_rows
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


# --------------------------------------------------------------------------- several GPUs

def _two_gpus() -> str | None:
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return None if count >= 2 else f"needs two or more CUDA devices (torch sees {count})"


def split_across_gpus(arch: str, *, offload: bool):
    """The tiny `arch` of test_placement with block 0 on cuda:0 and block 1 on cuda:1 (the rest on
    cuda:0); with `offload`, block 1 on "cpu" instead: accelerate's CPU offload to cuda:0."""
    import tempfile

    from harness.models.load import load_model
    from tests._support.architectures import saved
    from tests.harness.models.test_placement import plain, split_map

    base = plain(arch)
    device_map = {k: (0 if v == "cpu" else v) for k, v in split_map(base, first=0, second="cpu" if offload else 1).items()}
    return load_model(str(saved(arch)), name=f"gpus:{arch}:{offload}", device_map=device_map,
                      offload_folder=tempfile.mkdtemp() if offload else None)


@pytest.mark.skipif(_two_gpus() is not None, reason=_two_gpus() or "")
@pytest.mark.parametrize("offload", [False, True], ids=["two-gpus", "gpu+cpu-offload"])
@pytest.mark.parametrize("arch", ["gpt2", "llama", "qwen2"])
def test_a_model_split_across_gpus_gives_the_cpu_numbers(arch, offload):
    from harness.measures.generate import generate
    from harness.measures.patching import answer_prob
    from harness.measures.tracing import trace_resid_map
    from tests.harness.models.test_placement import PADDED as PAIRS, TEXTS as LINES, plain, worst

    cpu, gpus = plain(arch), split_across_gpus(arch, offload=offload)
    blocks = gpus.module.get_submodule(gpus.layout.stack(gpus.main_stack).blocks)
    assert gpus.device == torch.device("cuda:0")
    if not offload:
        assert next(blocks[1].parameters()).device == torch.device("cuda:1")
    d = torch.randn(cpu.width("blocks.1.resid_pre"), generator=torch.Generator().manual_seed(0))
    kw = dict(at="blocks.1.resid_pre", direction=d, alphas=symmetric(2.0, steps=5),
              score=scorer(logprob_diff, "x", "y"), batch_size=3)
    assert worst(sweep(gpus, LINES, **kw).scores, sweep(cpu, LINES, **kw).scores) < 1e-4
    for fn in (patch_resid_map, patch_head_map):
        assert worst(fn(gpus, *PAIRS, batch_size=5).values, fn(cpu, *PAIRS, batch_size=5).values) < 1e-4
    trace = dict(std=0.5, samples=3, seed=4, batch_size=4)
    prompts, spans = ["0123+456", "hi there"], [(0, 3), (1, 4)]
    assert worst(trace_resid_map(gpus, prompts, spans, answer_prob([60, 61]), **trace).values,
                 trace_resid_map(cpu, prompts, spans, answer_prob([60, 61]), **trace).values) < 1e-4
    edit = {"blocks.1.resid_post": Add(torch.randn(cpu.width("blocks.1.resid_post")), alpha=torch.tensor([0.0, 4.0, -4.0, 2.0]))}
    gen = dict(max_new_tokens=6, interventions=edit, cache=True, batch_size=4, return_logits=True)
    for a, b in zip(generate(gpus, LINES, **gen), generate(cpu, LINES, **gen)):
        assert a.ids == b.ids and worst(a.logits.cpu(), b.logits) < 1e-4
