"""Batches that fit: a batch that runs out of memory is halved and the run goes on with the
numbers of a run at the smaller fixed size, said once in the run's notes; "auto" sizes a batch
from the memory available. The logic is tested with an injected out-of-memory error (the real
exception types); one test forces a real allocation failure in a child process under an
address-space limit."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.errors import DataError
from harness.measures import batching
from harness.measures.batching import auto_batch_size, is_out_of_memory, run_batched, with_backoff
from harness.measures.patching import answer_logit_diff, patch_resid_map
from harness.measures.scores import logit_diff, logprob, next_token_logits
from harness.measures.sweeps import scorer, sweep, symmetric
from harness.resources import take_notes
from tests._support.tiny import tiny_model

ROOT = Path(__file__).resolve().parents[3]
CPU_OOM = "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes"


@pytest.fixture(autouse=True)
def no_notes():
    take_notes()
    yield
    take_notes()


def failing_above(limit: int, error=lambda: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")):
    """``step(start, stop)`` that raises `error` for a batch of more than `limit` rows, else
    returns the rows; ``calls`` lists every batch tried."""
    calls: list[tuple[int, int]] = []

    def step(start: int, stop: int) -> list[int]:
        calls.append((start, stop))
        if stop - start > limit:
            raise error()
        return list(range(start, stop))

    step.calls = calls  # type: ignore[attr-defined]
    return step


# --------------------------------------------------------------------------- the helper


def test_a_batch_that_runs_out_of_memory_is_halved_until_it_fits_and_later_batches_keep_the_size():
    step = failing_above(8)
    done, size = run_batched(step, 40, 64, what="rows")
    assert size == 8
    assert [(a, b) for a, b, _ in done] == [(0, 8), (8, 16), (16, 24), (24, 32), (32, 40)]  # a fixed 8's batches
    assert step.calls[:4] == [(0, 40), (0, 32), (0, 16), (0, 8)]   # 40 rows: 64 (all 40), 32, 16, 8
    assert [r for _, _, rows in done for r in rows] == list(range(40))


def test_the_halving_is_said_once_with_the_sizes():
    run_batched(failing_above(8), 64, 64, what="sweep rows")
    run_batched(failing_above(8), 64, 64, what="sweep rows")   # the same again: no second note
    assert take_notes() == ("out of memory: sweep rows ran in batches of 8, not 64 (halved on each allocation "
                            "failure; numbers identical to batch_size=8)",)


def test_a_failure_after_some_batches_ran_says_where():
    calls = []

    def step(start: int, stop: int) -> int:
        calls.append((start, stop))
        if start >= 32 and stop - start > 16:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return stop - start

    done, size = run_batched(step, 100, 32, what="rows")
    assert size == 16 and [(a, b) for a, b, _ in done][:3] == [(0, 32), (32, 48), (48, 64)]
    assert take_notes() == ("out of memory: rows ran in batches of 32 up to row 32, then 16 (halved on each "
                            "allocation failure)",)


def test_no_failure_runs_the_fixed_batches_and_notes_nothing():
    step = failing_above(1000)
    done, size = run_batched(step, 10, 4, what="rows")
    assert size == 4 and step.calls == [(0, 4), (4, 8), (8, 10)] and take_notes() == ()


@pytest.mark.parametrize("error", [
    lambda: torch.OutOfMemoryError("CUDA out of memory"),
    lambda: RuntimeError(CPU_OOM),
    lambda: RuntimeError("[enforce fail at ..] not enough memory: you tried to allocate 4096 bytes"),
    lambda: MemoryError(),
], ids=["cuda", "cpu-allocator", "cpu-not-enough", "python"])
def test_every_kind_of_allocation_failure_is_out_of_memory(error):
    assert is_out_of_memory(error())
    done, size = run_batched(failing_above(3, error), 10, 16, what="rows")
    assert size == 2


@pytest.mark.parametrize("error", [RuntimeError("shape mismatch"), ValueError("can't allocate memory"), KeyError("x")])
def test_any_other_error_is_raised_as_it_is(error):
    assert not is_out_of_memory(error)

    def step(start, stop):
        raise error

    with pytest.raises(type(error)):
        run_batched(step, 10, 4, what="rows")
    assert take_notes() == ()


def test_a_batch_of_one_row_that_runs_out_of_memory_raises_the_error():
    with pytest.raises(torch.OutOfMemoryError):
        run_batched(failing_above(0), 10, 4, what="rows")


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "8", None])
def test_a_bad_batch_size_is_an_error(bad):
    with pytest.raises(DataError, match=r"`batch_size` must be a positive integer, got"):
        run_batched(failing_above(8), 10, bad, what="rows")
    with pytest.raises(DataError, match=r"`batch_size` must be a positive integer, got"):
        with_backoff(lambda b: b, bad, what="rows")


def test_with_backoff_runs_the_whole_call_again_at_half_the_size():
    tried = []

    def run(size: int) -> int:
        tried.append(size)
        if size > 10:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return size * 100

    assert with_backoff(run, 64, what="cells") == (800, 8) and tried == [64, 32, 16, 8]
    assert with_backoff(run, 64, what="cells", after="block 3", earlier=8)[1] == 8   # block 3's batches fit in 8
    assert with_backoff(run, 64, what="cells", after="block 3", earlier=9)[1] == 8
    assert take_notes() == (
        "out of memory: cells ran in batches of 8, not 64 (halved on each allocation failure; numbers identical "
        "to batch_size=8)",
        "out of memory: cells ran in batches of 64 up to block 3, then 8 (halved on each allocation failure)")


def test_auto_sizes_from_the_memory_available_and_one_rows_peak(monkeypatch):
    monkeypatch.setattr(batching, "available_bytes", lambda device="cpu": 1 << 30)   # 1 GiB
    def one_row():   # touches 16 MiB of fresh pages (an anonymous map: malloc may reuse resident memory)
        import mmap
        with mmap.mmap(-1, 16 << 20) as m:
            m.write(b"\1" * (16 << 20))
    size = auto_batch_size(one_row, cap=4096)
    assert size in (16, 32)   # half of 1 GiB over ~16 MiB (+ what numpy's sum adds), a power of two
    assert auto_batch_size(one_row, cap=3) == 2
    monkeypatch.setattr(batching, "available_bytes", lambda device="cpu": 1 << 20)
    assert auto_batch_size(one_row, cap=64) == 1   # less than one row fits: 1, and backoff has the rest


def test_auto_checks_its_arguments():
    with pytest.raises(DataError, match=r"`cap` must be a positive integer, got 0"):
        auto_batch_size(lambda: None, cap=0)
    with pytest.raises(DataError, match=r"`share` must be in \(0, 1\], got 2"):
        auto_batch_size(lambda: None, share=2)


# --------------------------------------------------------------------------- wired into the measures

TEXTS = ["the quick brown fox", "hi", "abcdefg", "jumps over", "the lazy dog", "x", "yz", "a longer input here",
         "and one more", "q"]
SITE = "blocks.6.resid_post"


def _sweep(batch_size, m=None):
    m = m or tiny_model("gpt2")
    d = torch.randn(m.width(m.site(SITE)), generator=torch.Generator().manual_seed(3))
    return sweep(m, TEXTS, at=SITE, direction=d, alphas=symmetric(1.0, steps=5), batch_size=batch_size,
                 score=scorer(logit_diff, "e", "t")).scores


def test_a_sweep_that_runs_out_of_memory_equals_a_fixed_smaller_batch_bit_for_bit(monkeypatch):
    fixed = _sweep(8)
    real = logit_diff

    def limited(model, inputs, *args, **kwargs):
        if len(inputs) > 8:
            raise RuntimeError(CPU_OOM)
        return real(model, inputs, *args, **kwargs)

    m = tiny_model("gpt2")
    d = torch.randn(m.width(m.site(SITE)), generator=torch.Generator().manual_seed(3))
    got = sweep(m, TEXTS, at=SITE, direction=d, alphas=symmetric(1.0, steps=5), batch_size=64,
                score=scorer(limited, "e", "t")).scores
    assert np.array_equal(got, fixed)
    assert take_notes() == ("out of memory: sweep rows ran in batches of 8, not 64 (halved on each allocation "
                            "failure; numbers identical to batch_size=8)",)


def test_a_patching_map_that_runs_out_of_memory_equals_a_fixed_smaller_batch_bit_for_bit():
    m = tiny_model("gpt2")
    clean, corrupt = ["the cat sat", "a dog ran"], ["the hat sat", "a log ran"]
    metric = answer_logit_diff([104, 105], [50, 60])
    fixed = patch_resid_map(m, clean, corrupt, metric, batch_size=4).values

    def limited(logits, pairs):
        if logits.shape[0] > 4:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return metric(logits, pairs)

    got = patch_resid_map(m, clean, corrupt, limited, batch_size=256).values
    assert torch.equal(got.nan_to_num(7.0), fixed.nan_to_num(7.0))
    assert take_notes() == ("out of memory: patching map cells ran in batches of 4, not 256 (halved on each "
                            "allocation failure; numbers identical to batch_size=4)",)


def test_scores_that_run_out_of_memory_equal_a_fixed_smaller_batch_bit_for_bit(monkeypatch):
    from harness.measures import scores

    m = tiny_model("gpt2")
    fixed = logprob(m, TEXTS, "ok", batch_size=2)
    real = scores._causal_logprob

    def limited(model, texts, *args):
        if len(texts) > 2:
            raise RuntimeError(CPU_OOM)
        return real(model, texts, *args)

    monkeypatch.setattr(scores, "_causal_logprob", limited)
    assert torch.equal(logprob(m, TEXTS, "ok", batch_size=16), fixed)
    assert len(take_notes()) == 1


def test_auto_batches_give_the_numbers_of_some_fixed_batch():
    m = tiny_model("gpt2")
    logits = next_token_logits(m, TEXTS, batch_size="auto")
    assert torch.allclose(logits, next_token_logits(m, TEXTS), atol=1e-4)
    assert np.allclose(_sweep("auto"), _sweep(64), atol=1e-4)
    clean, corrupt = ["the cat sat", "a dog ran"], ["the hat sat", "a log ran"]
    metric = answer_logit_diff([104, 105], [50, 60])
    a = patch_resid_map(m, clean, corrupt, metric, batch_size="auto").values
    assert torch.allclose(a.nan_to_num(0.0), patch_resid_map(m, clean, corrupt, metric).values.nan_to_num(0.0),
                          atol=1e-4)


@pytest.mark.parametrize("bad", ["big", 0, 1.5])
def test_a_bad_batch_size_names_auto_as_the_other_choice(bad):
    with pytest.raises(DataError, match=r"`batch_size` must be a positive integer, got .*'auto'"):
        _sweep(bad)


# --------------------------------------------------------------------------- a real allocation failure

CHILD = r'''
import json, os, resource, sys
import torch
torch.set_num_threads(1)
import transformers as tf
from harness.models.load import from_module
from harness.measures.sweeps import scorer, sweep, symmetric
from harness.measures.scores import logit_diff
from harness.resources import take_notes

torch.manual_seed(0)
config = tf.GPT2Config(vocab_size=384, n_positions=256, n_embd=128, n_layer=2, n_head=32, resid_pdrop=0.0,
                       embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=1, eos_token_id=1, pad_token_id=0)
config._attn_implementation = "eager"   # attention weights [rows, 32, 256, 256]: 8 MiB a row a block
model = from_module(tf.GPT2LMHeadModel(config).eval(), tf.ByT5Tokenizer(), name="tiny:oom")
site = "blocks.1.resid_post"
direction = torch.randn(128, generator=torch.Generator().manual_seed(3))
texts = [("abcdefghij" * 30)[: 240 + i] for i in range(16)]   # 16 examples x 5 alphas = 80 rows
run = lambda b: sweep(model, texts, at=site, direction=direction, alphas=symmetric(1.0, steps=5),
                      score=scorer(logit_diff, "e", "t"), batch_size=b).scores

def vm(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

fixed = run(8)
out = {"vm_peak_after_8": vm("VmPeak"), "limit": resource.getrlimit(resource.RLIMIT_AS)[0]}
if sys.argv[1] == "measure":
    run(16)
    out["vm_peak_after_16"] = vm("VmPeak")
else:
    backed_off = run(64)
    out["equal"] = bool((backed_off == fixed).all())
    out["notes"] = take_notes()
    try:   # the same 64 rows as one plain forward: a real allocation failure, not an injected one
        ids = torch.ones(64, 256, dtype=torch.long)
        model.module(input_ids=ids)
        out["plain_64"] = "fits"
    except Exception as exc:
        out["plain_64"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
'''


def _child(mode: str, limit: int | None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2",
           "PYTHONPATH": str(ROOT)}

    def cap() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    done = subprocess.run([sys.executable, "-c", CHILD, mode], cwd=ROOT, env=env, preexec_fn=cap,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS caps allocations this way on Linux only")
def test_a_real_out_of_memory_under_an_address_space_limit_halves_to_a_fixed_batch_of_8_bit_for_bit():
    """A child process whose address space is capped just above what a batch of 8 needs: the
    sweep asked for batches of 64 runs out of memory for real, halves to 8 and gives the fixed
    batch of 8's numbers bit for bit, and says so in its notes."""
    free = _child("measure", None)   # the address space batches of 8 and of 16 took, uncapped
    room = (free["vm_peak_after_16"] - free["vm_peak_after_8"]) // 2
    assert room > 16 << 20, free     # a batch of 16 needs 64 MiB or more than one of 8
    limit = free["vm_peak_after_8"] + room   # room for 8, not for 16 (nor 32, nor 64)
    got = _child("run", limit)
    assert got["limit"] == limit
    assert "can't allocate memory" in got["plain_64"] or "not enough memory" in got["plain_64"], got["plain_64"]
    assert got["equal"] is True
    assert got["notes"] == ["out of memory: sweep rows ran in batches of 8, not 64 (halved on each allocation "
                            "failure; numbers identical to batch_size=8)"]
