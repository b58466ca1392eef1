"""Causal tracing (ROME): equal to a per-cell loop of full forwards under eager and sdpa, the same
noise and values for a prompt in any batch, independent samples, exact shortcuts, clear errors,
and no hooks left."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from harness.errors import DataError, InterventionError
from harness.interventions import Noise, Patch, Positions, Record, intervene
from harness.interventions.prefix import attention_implementation
from harness.models.load import from_module
from harness.models.loaded import pad_rows
from harness.measures.patching import answer_logprob, answer_prob
from harness.measures.tracing import TraceMap, noise_seed, trace_resid_map
from tests.harness.interventions.test_hook_hygiene import hooks
from tests._support.tiny import tiny_model

PROMPTS = ["hello world", "hi there you", "abc"]
SPANS = [(1, 4), (0, 2), (1, 2)]           # prompt 2's span is one token
METRIC = answer_logprob([104, 105, 106])
STD, SAMPLES = 0.5, 3


@functools.lru_cache(maxsize=None)
def small(arch: str, attn: str):
    """A 3-block GPT-2 or Qwen2 (grouped-query attention, rotary) of width 32 under `attn`."""
    import transformers as tf

    common = dict(pad_token_id=0, bos_token_id=1, eos_token_id=1, attn_implementation=attn)
    torch.manual_seed(0)
    if arch == "gpt2":
        module = tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=384, n_positions=64, n_embd=32, n_layer=3, n_head=4,
                                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **common))
    else:
        module = tf.Qwen2ForCausalLM(tf.Qwen2Config(vocab_size=384, hidden_size=32, intermediate_size=48,
                                                    num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                                                    max_position_embeddings=64, **common))
    with torch.no_grad():  # larger random weights so differences between runs are not hidden by tiny scales
        for name, p in module.named_parameters():
            if p.dim() == 2 and "norm" not in name:
                p.normal_(0.0, 0.2)
    m = from_module(module.eval(), tf.ByT5Tokenizer(), name=f"test:{arch}-{attn}")
    assert attention_implementation(m, m.main_stack) == attn
    return m


def last_metric(m, row, i, plan, metric=METRIC) -> float:
    ids, mask = pad_rows([row], pad_id=m.pad_id)
    with torch.no_grad(), intervene(m, plan, masks={"blocks": mask}):
        logits = m.module(input_ids=ids, attention_mask=mask).logits
    return float(metric(logits[:, -1], torch.tensor([i]))[0])


def loop_trace(m, prompts, spans, metric, *, std, samples, seed=0) -> tuple[dict, dict]:
    """One full forward per (prompt, sample, layer, position): the same `Noise` at blocks.1.resid_pre
    and a `Patch` of the clean state; and the corrupted runs."""
    n_layers = m.sites.stack("blocks").n_layers
    cells, corrupted = {}, {}
    for i, row in enumerate(m.tokenize(prompts)):
        a, b = spans[i]
        where = torch.zeros(1, len(row), dtype=torch.bool)
        where[0, a:b] = True
        for s in range(samples):
            noise = Noise(std, noise_seed(seed, s), Positions.of_mask(where))
            corrupted[i, s] = last_metric(m, row, i, {"blocks.1.resid_pre": noise}, metric)
            for L in range(1, n_layers + 1):
                site = m.site(f"blocks.{L}.resid_pre")
                ids = torch.tensor([row])
                with torch.no_grad(), intervene(m, {site: Record()}, masks={"blocks": torch.ones_like(ids)}) as rec:
                    m.module(input_ids=ids)
                for p in range(len(row)):
                    at = torch.zeros(1, len(row), dtype=torch.bool)
                    at[0, p] = True
                    patch = Patch(rec.recorded[site], Positions.of_mask(at))
                    plan = {site: [noise, patch]} if L == 1 else {"blocks.1.resid_pre": noise, site: patch}
                    cells[i, s, L, p] = last_metric(m, row, i, plan, metric)
    return cells, corrupted


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("arch", ["gpt2", "qwen2"])
def test_trace_equals_a_per_cell_loop_of_full_forwards(arch, attn):
    m = small(arch, attn)
    tm = trace_resid_map(m, PROMPTS, SPANS, METRIC, std=STD, samples=SAMPLES, batch_size=7, seed=0)
    assert tm.values.shape == (3, SAMPLES, 3, 13) and tm.corrupted.shape == (3, SAMPLES)
    cells, corrupted = loop_trace(m, PROMPTS, SPANS, METRIC, std=STD, samples=SAMPLES)
    for (i, s), want in corrupted.items():
        assert abs(float(tm.corrupted[i, s]) - want) < 1e-4, (i, s)
    for (i, s, L, p), want in cells.items():
        assert abs(float(tm.values[i, s, L - 1, p]) - want) < 1e-4, (i, s, L, p)
    for i, n in enumerate(tm.lengths.tolist()):
        assert torch.isnan(tm.values[i, :, :, n:]).all() and not torch.isnan(tm.values[i, :, :, :n]).any()
    clean = [last_metric(m, row, i, {}) for i, row in enumerate(m.tokenize(PROMPTS))]
    assert (tm.clean - torch.tensor(clean)).abs().max() < 1e-4


def test_a_prompt_gets_the_same_noise_and_values_in_any_batch():
    m = small("gpt2", "sdpa")
    alone = trace_resid_map(m, PROMPTS[:1], SPANS[:1], answer_logprob(104), std=STD, samples=SAMPLES, seed=0)
    others = ["zz", "a much longer prompt than the first one"]
    mixed = trace_resid_map(m, others[:1] + PROMPTS[:1] + others[1:], [(0, 1), SPANS[0], (2, 9)],
                            answer_logprob([1, 104, 2]), std=STD, samples=SAMPLES, batch_size=5, seed=0)
    n = int(alone.lengths[0])
    # the same noise (keyed by the prompt's tokens, not its row), so the same runs up to float rounding
    assert (mixed.corrupted[1] - alone.corrupted[0]).abs().max() < 1e-5
    assert (mixed.values[1, :, :, :n] - alone.values[0, :, :, :n]).abs().max() < 1e-5
    assert torch.isnan(mixed.values[1, :, :, n:]).all()
    small_batches = trace_resid_map(m, PROMPTS[:1], SPANS[:1], answer_logprob(104), std=STD, samples=SAMPLES,
                                    batch_size=3, seed=0)
    assert (small_batches.values - alone.values).nan_to_num().abs().max() < 1e-5
    # fewer samples: the first ones are the same draws
    two = trace_resid_map(m, PROMPTS[:1], SPANS[:1], answer_logprob(104), std=STD, samples=2, seed=0)
    assert (two.corrupted[0] - alone.corrupted[0, :2]).abs().max() < 1e-5


def test_samples_are_different_draws_and_seeds_change_them():
    m = small("gpt2", "sdpa")
    tm = trace_resid_map(m, PROMPTS, SPANS, METRIC, std=STD, samples=4, seed=0)
    for i in range(3):
        assert len(set(tm.corrupted[i].tolist())) == 4, tm.corrupted[i]
    other = trace_resid_map(m, PROMPTS, SPANS, METRIC, std=STD, samples=4, seed=1)
    assert not torch.equal(other.corrupted, tm.corrupted)
    assert len({noise_seed(a, b) for a in range(5) for b in range(5)}) == 25


def test_shortcuts_are_exact_and_restoring_the_only_noised_token_is_the_clean_run():
    m = small("qwen2", "sdpa")
    tm = trace_resid_map(m, PROMPTS, SPANS, METRIC, std=2.0, samples=SAMPLES, seed=0)
    for i, ((a, b), n) in enumerate(zip(SPANS, tm.lengths.tolist())):
        corrupted = tm.corrupted[i][:, None, None]
        # before the span the states are the clean ones: restoring them is the corrupted run
        assert torch.equal(tm.values[i, :, :, :a], corrupted.expand(-1, 3, a))
        # block 1's input outside the span is an embedding, untouched by the noise
        assert torch.equal(tm.values[i, :, 0, b:n], corrupted[:, 0].expand(-1, n - b))
    # prompt 2's span is one token: restoring it at block 1 undoes all the noise
    assert (tm.values[2, :, 0, 1] - tm.clean[2]).abs().max() < 1e-4
    assert (tm.corrupted[2] - tm.clean[2]).abs().min() > 1e-3        # so that equality is not trivial


def test_effects_and_answer_prob():
    m = small("gpt2", "sdpa")
    targets = [104, 105, 106]
    tm = trace_resid_map(m, m.tokenize(PROMPTS), torch.tensor(SPANS), answer_prob(targets), std=torch.tensor(STD),
                         samples=SAMPLES, seed=0)
    assert isinstance(tm, TraceMap) and tm.samples == SAMPLES and tm.layers == [1, 2, 3] and tm.n == 3
    assert ((tm.values >= 0) & (tm.values <= 1)).sum() == (~torch.isnan(tm.values)).sum()
    ie = tm.indirect_effect()
    assert ie.shape == (3, 3, 13)
    assert torch.allclose(ie, tm.values.mean(1) - tm.corrupted.mean(1)[:, None, None], atol=1e-6, equal_nan=True)
    assert torch.allclose(tm.total_effect(), tm.clean - tm.corrupted.mean(1))
    assert tm.mean().shape == (3, 13) and tm.mean_indirect_effect().shape == (3, 13)
    assert not torch.isnan(tm.mean()).any()              # every column has a prompt that long
    lp = trace_resid_map(m, PROMPTS, SPANS, answer_logprob(targets), std=STD, samples=SAMPLES, seed=0)
    assert torch.allclose(tm.values.log(), lp.values, atol=1e-5, equal_nan=True)
    ids, mask = pad_rows(m.tokenize(PROMPTS), pad_id=m.pad_id)
    with torch.no_grad():
        logits = m.module(input_ids=ids, attention_mask=mask).logits[torch.arange(3), mask.sum(1) - 1]
    want = torch.softmax(logits, -1)[torch.arange(3), torch.tensor(targets)]
    assert torch.allclose(tm.clean, want, atol=1e-6)


def test_the_tiny_model_of_the_suite_traces_too():
    m = tiny_model("gpt2")
    tm = trace_resid_map(m, PROMPTS, SPANS, METRIC, std=STD, samples=2, batch_size=64, seed=0)
    assert tm.values.shape == (3, 2, 12, 13)


# --------------------------------------------------------------------------- errors and hooks


@pytest.mark.parametrize("std", [0, -1.0, math.nan, math.inf, True, "3"])
def test_a_bad_std_is_an_error_naming_it(std):
    m = small("gpt2", "sdpa")
    before = hooks(m)
    with pytest.raises(InterventionError, match=r"`std` must be a finite number > 0.*3 x the standard deviation"):
        trace_resid_map(m, PROMPTS, SPANS, METRIC, std=std, seed=0)
    assert hooks(m) == before


@pytest.mark.parametrize(("spans", "message"), [
    ([(1, 4), (0, 2)], r"`spans` has 2 spans but `prompts` has 3 prompts"),
    ([(1, 4), (0, 2), (2, 2)], r"`spans\[2\]` is \(2, 2\) but prompt 2 has 4 tokens.*0 <= start < end <= 4"),
    ([(1, 4), (0, 14), (1, 2)], r"`spans\[1\]` is \(0, 14\) but prompt 1 has 13 tokens"),
    ([(-1, 4), (0, 2), (1, 2)], r"`spans\[0\]` is \(-1, 4\)"),
    ([(1, 4), (0, 2), 3], r"`spans\[2\]` must be a pair of token positions"),
    ((1, 4), r"`spans` has 2 spans but `prompts` has 3"),
])
def test_bad_spans_are_errors_naming_the_argument(spans, message):
    m = small("gpt2", "sdpa")
    before = hooks(m)
    with pytest.raises(DataError, match=message):
        trace_resid_map(m, PROMPTS, spans, METRIC, std=STD, seed=0)
    assert hooks(m) == before


def test_other_bad_arguments_are_clear_errors():
    m = small("gpt2", "sdpa")
    with pytest.raises(DataError, match="`samples` must be a positive integer"):
        trace_resid_map(m, PROMPTS, SPANS, METRIC, std=STD, samples=0, seed=0)
    with pytest.raises(DataError, match="`batch_size` must be a positive integer"):
        trace_resid_map(m, PROMPTS, SPANS, METRIC, std=STD, batch_size=0, seed=0)
    with pytest.raises(DataError, match="`seed` of trace_resid_map must be an integer"):
        trace_resid_map(m, PROMPTS, SPANS, METRIC, std=STD, seed=0.5)
    with pytest.raises(DataError, match="`prompts` is empty"):
        trace_resid_map(m, [], [], METRIC, std=STD, seed=0)
    with pytest.raises(DataError, match="single str"):
        trace_resid_map(m, "hello", [(0, 1)], METRIC, std=STD, seed=0)
    with pytest.raises(InterventionError, match="did not change the embeddings.*larger `std`"):
        trace_resid_map(m, PROMPTS, SPANS, METRIC, std=1e-30, seed=0)


def test_no_hooks_stay_attached_also_after_an_error():
    m = small("gpt2", "sdpa")
    before = hooks(m)
    trace_resid_map(m, PROMPTS, SPANS, METRIC, std=STD, samples=2, seed=0)
    assert hooks(m) == before
    calls = {"n": 0}

    def exploding_after(k):
        def metric(logits, pairs):
            calls["n"] += 1
            if calls["n"] > k:
                raise RuntimeError("boom")
            return logits[:, 0]
        return metric

    for k in (1, 2):   # inside the noised forward (noise hooks installed), inside the replays
        calls["n"] = 0
        with pytest.raises(RuntimeError, match="boom"):
            trace_resid_map(m, PROMPTS, SPANS, exploding_after(k), std=STD, samples=2, seed=0)
        assert hooks(m) == before

    def explode_in_forward(module, args, output):   # raises inside a replay, while patches are installed
        calls["n"] += 1
        if calls["n"] > 2:
            raise RuntimeError("boom in forward")

    handle = m.module.transformer.ln_f.register_forward_hook(explode_in_forward)
    try:
        with_handle = hooks(m)
        calls["n"] = 0
        with pytest.raises(RuntimeError, match="boom in forward"):
            trace_resid_map(m, PROMPTS, SPANS, METRIC, std=STD, samples=2, seed=0)
        assert hooks(m) == with_handle
    finally:
        handle.remove()
    assert hooks(m) == before


def test_embedding_std_is_that_of_the_embeddings_the_first_block_sees():
    """ROME's noise unit: a Gemma model scales its token embeddings by sqrt(d_model) inside its
    embedding module, so the std the first block sees is sqrt(d) times that of the weight rows;
    a Llama's is the weight rows' own."""
    import transformers as tf

    from harness.measures.tracing import embedding_std

    ids = [3, 7, 7, 11, 40]
    common = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=8, max_position_embeddings=32, pad_token_id=0)
    for config, scale in ((tf.Gemma3TextConfig(**common), 32 ** 0.5), (tf.LlamaConfig(**common), 1.0)):
        torch.manual_seed(0)
        module = tf.AutoModelForCausalLM.from_config(config).eval()
        m = from_module(module, tf.ByT5Tokenizer(), name=f"tiny:{config.model_type}")
        rows = module.get_input_embeddings().weight.detach()[torch.tensor(sorted(set(ids)))]
        want = float((rows * torch.tensor(scale, dtype=rows.dtype)).float().std())
        assert embedding_std(m, ids) == pytest.approx(want, rel=1e-3)
        with torch.no_grad():
            first = module(input_ids=torch.tensor([sorted(set(ids))]), output_hidden_states=True).hidden_states[0]
        assert embedding_std(m, ids) == pytest.approx(float(first.float().std()), rel=1e-5)
    with pytest.raises(DataError, match=r"`token_ids` must be a non-empty set of ids in 0..63"):
        embedding_std(m, [64])
