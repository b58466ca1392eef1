"""Replays of part of a forward equal a plain full forward under every attention implementation.

Patching's suffix replay, `StackPrefix.replay` (used by patching and by prefix-cached sweeps)
call blocks directly with captured or rebuilt arguments, among them the attention mask, whose
format depends on ``config._attn_implementation`` (``eager`` adds a float mask to the scores,
``sdpa`` takes a boolean one). Each replay is checked here, cell by cell, against full forwards
for GPT-2, the Llama layout (grouped-query attention, rotary) and T5, under each
implementation the model class offers; those that cannot run on this machine are skipped with
the reason. A replay under another implementation than the capture's raises. Patching takes the
suffix path (replaying positions from the first changed one) for GPT-2 and the Llama layout
(Llama, Qwen2), and the full path for a Qwen2 with sliding-window layers; both are exact.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from harness.measures.attention import eager_attention
from harness.errors import InterventionError
from harness.interventions import Add
from harness.models.load import from_module
from harness.models.loaded import pad_rows
from harness.measures.patching import answer_logit_diff, patch_head_map, patch_resid_map
from harness.interventions.prefix import attention_implementation, capture
from harness.measures.scores import logprob_diff
from harness.measures.sweeps import scorer, sweep, symmetric
from tests.harness.measures.test_patching import last_logits
from tests.harness.interventions.test_prefix import stack_forward

IMPLEMENTATIONS = ["eager", "sdpa", "flex_attention", "flash_attention_2"]


def _module(arch: str, attn: str):
    import transformers as tf

    common = dict(pad_token_id=0, bos_token_id=1, eos_token_id=1, attn_implementation=attn)
    if arch == "gpt2-issue":  # the bug report's model: 3 blocks, width 32, 4 heads (tests/harness/measures/test_patching.py)
        torch.manual_seed(3)
        cfg = tf.GPT2Config(vocab_size=200, n_positions=64, n_embd=32, n_layer=3, n_head=4, resid_pdrop=0.0,
                            embd_pdrop=0.0, attn_pdrop=0.0, **common)
        return tf.GPT2LMHeadModel(cfg)
    torch.manual_seed(0)
    if arch == "gpt2":
        cfg = tf.GPT2Config(vocab_size=384, n_positions=64, n_embd=32, n_layer=3, n_head=4, resid_pdrop=0.0,
                            embd_pdrop=0.0, attn_pdrop=0.0, **common)
        return tf.GPT2LMHeadModel(cfg)
    if arch == "llama":  # grouped-query attention (4 query heads on 2 key/value heads), rotary
        cfg = tf.LlamaConfig(vocab_size=384, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, **common)
        return tf.LlamaForCausalLM(cfg)
    if arch in ("qwen2", "qwen2-sliding"):  # GQA (4 query heads on 2 key/value heads), rotary, qkv biases
        window = dict(use_sliding_window=True, sliding_window=4, max_window_layers=1) if arch == "qwen2-sliding" else {}
        cfg = tf.Qwen2Config(vocab_size=384, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                             num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=64,
                             **window, **common)
        return tf.Qwen2ForCausalLM(cfg)
    if arch == "gemma2":  # sliding-window layers (window 4 < the prompts), softcapping
        cfg = tf.Gemma2Config(vocab_size=384, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                              num_attention_heads=4, num_key_value_heads=2, head_dim=8, sliding_window=4,
                              max_position_embeddings=64, query_pre_attn_scalar=8, **common)
        return tf.Gemma2ForCausalLM(cfg)
    if arch == "t5":
        cfg = tf.T5Config(vocab_size=384, d_model=32, d_kv=8, d_ff=48, num_layers=3, num_decoder_layers=2,
                          num_heads=4, feed_forward_proj="gated-gelu", dropout_rate=0.0, tie_word_embeddings=False,
                          decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, attn_implementation=attn)
        return tf.T5ForConditionalGeneration(cfg)
    raise ValueError(arch)


_CLASSES = {"gpt2-issue": "GPT2LMHeadModel", "gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM",
            "qwen2": "Qwen2ForCausalLM", "qwen2-sliding": "Qwen2ForCausalLM", "gemma2": "Gemma2ForCausalLM",
            "t5": "T5ForConditionalGeneration"}


def skip_reason(arch: str, attn: str) -> str | None:
    """Why `attn` cannot run for `arch` here, or None."""
    import transformers as tf

    cls = getattr(tf, _CLASSES[arch])
    flag = {"sdpa": "_supports_sdpa", "flex_attention": "_supports_flex_attn",
            "flash_attention_2": "_supports_flash_attn"}.get(attn)
    if flag and not getattr(cls, flag, False):
        return f"{cls.__name__} does not support attn_implementation={attn!r} (transformers: {flag} = False)"
    if attn.startswith("flash_attention"):
        return ("flash attention needs a CUDA GPU and the flash-attn package; this suite runs on the CPU build "
                "of torch, which has neither")
    if attn == "flex_attention":
        return ("flex_attention compiles its kernels with torch inductor (~15-25 s per shape on this CPU), too slow "
                "for this suite; its block masks cannot be indexed by rows, so replays of selected rows raise "
                "(test_a_flex_block_mask_is_refused_unless_all_rows_replay_in_order)")
    return None


@functools.lru_cache(maxsize=None)
def model(arch: str, attn: str):
    import transformers as tf

    reason = skip_reason(arch, attn)
    if reason:
        pytest.skip(reason)
    module = _module(arch, attn)
    with torch.no_grad():  # larger random weights so differences between runs are not hidden by tiny scales
        for name, p in module.named_parameters():
            if p.dim() == 2 and "norm" not in name:
                p.normal_(0.0, 0.2)
    if arch == "t5":  # its own output head, as ByT5 (tests/_support/tiny.py)
        module.lm_head.weight = torch.nn.Parameter(torch.randn_like(module.lm_head.weight) * 0.05)
    m = from_module(module.eval(), tf.ByT5Tokenizer(), name=f"test:{arch}-{attn}")
    assert attention_implementation(m, m.main_stack) == attn
    return m


# --------------------------------------------------------------------------- patching

# the bug report's input: one pair differing in one token (position 4), no padding
ISSUE = (["0123+456"], ["0123-456"], answer_logit_diff(60, 70))
# same byte lengths pair by pair, different lengths across pairs (padding), first differences at
# positions 4, 3, 7 (where the suffix replay starts)
PADDED = (["0123+456", "hi there", "abcdefghijkl"], ["0123-456", "hi where", "abcdefgxijkl"],
          answer_logit_diff([60, 61, 62], [70, 71, 72]))


def loop_map(m, clean, corrupt, metric, kind: str) -> dict:
    """One full forward per cell (pair, layer, position or head) with a `Patch` hook, no replay."""
    from harness.interventions import Patch, Positions, Record

    shape = m.sites.stack("blocks")
    out = {}
    for i, (c, x) in enumerate(zip(clean, corrupt)):
        for L in range(1, shape.n_layers + 1):
            site = m.site(f"blocks.{L}.resid_pre")
            cols = range(shape.n_heads) if kind == "head" else range(len(m.tokenize([c])[0]))
            for col in cols:
                if kind == "head":
                    site = m.site(f"blocks.{L}.attn.head{col}")
                src = last_logits(m, [c], {site: Record()})[0].recorded[site]
                if kind == "head":
                    patch = Patch(src)
                else:
                    where = torch.zeros(1, src.shape[1], dtype=torch.bool)
                    where[0, col] = True
                    patch = Patch(src, Positions.of_mask(where))
                _, lg = last_logits(m, [x], {site: patch})
                out[i, L, col] = float(metric(lg, torch.tensor([i]))[0])
    return out


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_the_issue_input_patched_at_its_only_difference_is_the_clean_run(attn):
    m = model("gpt2-issue", attn)
    pm = patch_resid_map(m, *ISSUE)
    # layer 1 (column 0, blocks.1.resid_pre) at position 4 carries the only token that differs
    assert abs(float(pm.values[0, 0, 4]) - float(pm.clean[0])) < 1e-4
    assert abs(float(pm.clean[0]) - float(pm.corrupt[0])) > 0.1  # so the equality is not trivial


@pytest.mark.parametrize("kind", ["resid", "head"])
@pytest.mark.parametrize("attn", IMPLEMENTATIONS)
@pytest.mark.parametrize("arch,pairs", [("gpt2-issue", "issue"), ("gpt2-issue", "padded"), ("llama", "padded"),
                                        ("qwen2", "issue"), ("qwen2", "padded"), ("qwen2-sliding", "padded")])
def test_patch_maps_equal_a_per_cell_loop_of_full_forwards(arch, pairs, attn, kind):
    m = model(arch, attn)
    clean, corrupt, metric = ISSUE if pairs == "issue" else PADDED
    fn = patch_head_map if kind == "head" else patch_resid_map
    pm = fn(m, clean, corrupt, metric, batch_size=5)
    want = loop_map(m, clean, corrupt, metric, kind)
    got = {key: float(pm.values[key[0], key[1] - 1, key[2]]) for key in want}
    worst = max(abs(got[key] - want[key]) for key in want)
    assert worst < 1e-4, f"{arch} {attn} {kind}: off by {worst}"
    assert np.ptp(list(want.values())) > 0.1  # the cells differ, so equality is not trivial


def replayed_widths(m, fn, clean, corrupt, metric) -> tuple[list[int], int]:
    """The positions each replay of the last block ran (the plain forwards included), and the
    padded width of the batch."""
    widths: list[int] = []
    blocks = m.module.get_submodule(m.layout.stack("blocks").blocks)

    def hook(module, args, kwargs):
        widths.append((args[0] if args else kwargs["hidden_states"]).shape[1])

    handle = blocks[-1].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        fn(m, clean, corrupt, metric, batch_size=5)
    finally:
        handle.remove()
    return widths, max(len(t) for t in m.tokenize(list(clean)))


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("arch,suffix", [("gpt2-issue", True), ("llama", True), ("qwen2", True),
                                         ("qwen2-sliding", False), ("gemma2", False)])
def test_the_suffix_path_replays_only_positions_from_the_first_changed_one(arch, suffix, attn):
    from harness.measures.replay import _suffix_ok

    m = model(arch, attn)
    for fn in (patch_resid_map, patch_head_map):
        widths, width = replayed_widths(m, fn, *PADDED)
        assert _suffix_ok(m, width=width) is suffix
        assert max(widths) == width
        if suffix:  # the chunks of cells at positions 3.. replay 3 positions fewer, or more
            assert min(widths) <= width - 3, (fn.__name__, widths)
        else:
            assert set(widths) == {width}, (fn.__name__, widths)


def test_maps_inside_eager_attention_equal_the_sdpa_maps():
    m = model("gpt2-issue", "sdpa")
    for fn in (patch_resid_map, patch_head_map):
        plain = fn(m, *PADDED, batch_size=5)
        with eager_attention(m):
            eager = fn(m, *PADDED, batch_size=5)
        assert attention_implementation(m, "blocks") == "sdpa"
        assert torch.allclose(plain.values, eager.values, atol=1e-4, equal_nan=True)


# --------------------------------------------------------------------------- StackPrefix.replay

TEXTS = ["h : p → q\n⊢ q", "x : ℕ\n⊢ ∀ y", "a longer state ⊢ goal", "hi"]
ROWS = torch.tensor([2, 0, 0, 3, 1])  # reordered, repeated


def full_and_run(m, stack: str, texts):
    """The stack's output of a full forward ``[n, pos, d]``, and a forward of it for `capture`."""
    ids, mask = pad_rows(m.tokenize(texts), pad_id=m.pad_id)
    if stack != "decoder":
        run = stack_forward(m, ids, mask)
        with torch.no_grad():
            if m.is_encoder_decoder:
                full = run().last_hidden_state
            else:
                full = m.module(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
        return full, run, ids, mask
    with torch.no_grad():
        enc = m.module.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
    dec_rows = [r[: 3 + i % 3] for i, r in enumerate(m.tokenize(["intro h", "apply foo", "exact", "simp"]))]
    dec_ids, dec_mask = pad_rows(dec_rows, pad_id=m.pad_id)

    def run():
        return m.module.get_decoder()(input_ids=dec_ids, attention_mask=dec_mask, encoder_hidden_states=enc,
                                      encoder_attention_mask=mask, use_cache=False)

    with torch.no_grad():
        full = run().last_hidden_state
    return full, run, dec_ids, dec_mask


@pytest.mark.parametrize("attn", IMPLEMENTATIONS)
@pytest.mark.parametrize("arch,stack", [("gpt2", "blocks"), ("llama", "blocks"), ("gemma2", "blocks"),
                                        ("t5", "encoder"), ("t5", "decoder")])
def test_replaying_from_any_block_equals_the_full_forward(arch, stack, attn):
    m = model(arch, attn)
    n = m.sites.stack(stack).n_layers
    for texts in (TEXTS, TEXTS[:1]):  # padded, and one row (sdpa then passes no mask at all)
        full, run, ids, mask = full_and_run(m, stack, texts)
        rows = ROWS if len(texts) > 1 else torch.tensor([0, 0])
        real = mask[rows].bool()
        for start in range(n + 1):
            prefix = capture(m, stack, start=start, ids=ids, mask=mask, run=run)
            assert prefix.implementation == attn
            diff = (prefix.replay(rows) - full[rows]).abs()[real].max()
            assert diff < 1e-4, f"{arch} {stack} {attn} start={start} rows={len(texts)}: {diff}"


@pytest.mark.parametrize("captured,replayed", [("sdpa", "eager"), ("eager", "sdpa")])
@pytest.mark.parametrize("arch,stack", [("gpt2", "blocks"), ("llama", "blocks"), ("t5", "encoder")])
def test_replaying_under_another_implementation_than_the_capture_raises(arch, stack, captured, replayed):
    m = model(arch, captured)
    for texts in (TEXTS, TEXTS[:1]):
        _, run, ids, mask = full_and_run(m, stack, texts)
        prefix = capture(m, stack, start=1, ids=ids, mask=mask, run=run)
        m.module.set_attn_implementation(replayed)
        try:
            with pytest.raises(InterventionError, match=f"captured with attention implementation '{captured}' "
                                                        f"but now runs with '{replayed}'"):
                prefix.replay(torch.tensor([0]))
        finally:
            m.module.set_attn_implementation(captured)
        prefix.replay(torch.tensor([0]))  # back under the capture's implementation it runs


def test_capture_under_sdpa_then_replay_inside_eager_attention_raises():
    m = model("gpt2", "sdpa")
    _, run, ids, mask = full_and_run(m, "blocks", TEXTS)
    prefix = capture(m, "blocks", start=0, ids=ids, mask=mask, run=run)
    with eager_attention(m), pytest.raises(InterventionError, match="eager_attention"):
        prefix.replay(ROWS)


def test_a_flex_block_mask_is_refused_unless_all_rows_replay_in_order():
    from torch.nn.attention.flex_attention import create_block_mask

    m = model("llama", "eager")
    _, run, ids, mask = full_and_run(m, "blocks", TEXTS)
    prefix = capture(m, "blocks", start=1, ids=ids, mask=mask, run=run)
    block_mask = create_block_mask(lambda b, h, q, k: q >= k, B=len(TEXTS), H=None, Q_LEN=ids.shape[1],
                                   KV_LEN=ids.shape[1], device="cpu", _compile=False)
    prefix.calls = [(args, {**kwargs, "attention_mask": block_mask}) for args, kwargs in prefix.calls]
    with pytest.raises(InterventionError, match="flex_attention block mask, which cannot be indexed by rows"):
        prefix.replay(ROWS)


# --------------------------------------------------------------------------- prefix-cached sweeps


@pytest.mark.parametrize("attn", IMPLEMENTATIONS)
@pytest.mark.parametrize("site", ["encoder.2.resid_post", "encoder.1.attn_out", "encoder.3.resid_post"])
def test_the_cached_sweep_equals_a_per_example_loop(site, attn):
    m = model("t5", attn)
    direction = torch.randn(m.width(m.site(site)), generator=torch.Generator().manual_seed(0))
    alphas = symmetric(0.5, steps=3)
    score = scorer(logprob_diff, "intro", "apply")
    cached = sweep(m, TEXTS, at=site, direction=direction, alphas=alphas, score=score, batch_size=5)
    assert cached.scores.shape == (len(TEXTS), alphas.size)
    want = np.array([[float(logprob_diff(m, [text], "intro", "apply",
                                         interventions={m.site(site): Add(direction, alpha=float(a))})[0])
                      for a in alphas] for text in TEXTS])
    assert np.ptp(want) > 0.1  # the edit moves the score, so equality is not trivial
    np.testing.assert_allclose(cached.scores, want, atol=1e-4, rtol=1e-5)


def test_a_sweep_under_flex_attention_takes_the_plain_path():
    from harness.measures.sweeps import _cacheable

    m = model("t5", "eager")
    site, score = m.site("encoder.2.resid_post"), scorer(logprob_diff, "intro", "apply")
    assert _cacheable(m, site, score)
    m.module.set_attn_implementation("flex_attention")  # only the config changes: nothing runs under it
    try:
        assert not _cacheable(m, site, score)
    finally:
        m.module.set_attn_implementation("eager")
    assert attention_implementation(m, "encoder") == "eager"
