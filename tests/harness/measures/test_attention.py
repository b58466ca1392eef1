"""Attention weights: rows are distributions over real tokens, batching and padding change
nothing, the model's attention implementation comes back, and a planted head is found."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.measures.attention import attention_weights, eager_attention, ratio_to_uniform
from harness.errors import DataError
from harness.models.load import fingerprint, from_module
from tests._support.tiny import ARCHITECTURES, tiny_model

TEXTS = ["(1+2)*3=", "7-4=", "((5*6)-8)+9="]


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_each_query_attends_to_its_row_only_and_its_weights_sum_to_1(arch):
    model = tiny_model(arch)
    rows = model.tokenize(TEXTS)
    weights = attention_weights(model, rows, batch_size=len(rows))   # one padded batch
    stack = model.sites.stack(model.main_stack)
    for row, w in zip(rows, weights):
        assert w.shape == (stack.n_layers, stack.n_heads, len(row), len(row))
        np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
        if not model.is_encoder_decoder:   # causal: nothing on later positions
            assert np.abs(np.triu(w, k=1)).max() == 0.0


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_batched_weights_equal_the_unbatched_ones(arch):
    model = tiny_model(arch)
    rows = model.tokenize(TEXTS)
    batched = attention_weights(model, rows, batch_size=len(rows))
    for row, w in zip(rows, batched):
        np.testing.assert_allclose(w, attention_weights(model, [row])[0], atol=1e-4, rtol=0)


def test_reading_weights_restores_the_implementation_and_leaves_the_logits_unchanged():
    model = tiny_model("gpt2")
    original, print_before = model.module.config._attn_implementation, model.fingerprint
    ids = torch.as_tensor(model.tokenize(TEXTS[:1]))
    with torch.no_grad():
        before = model.module(input_ids=ids).logits
        with eager_attention(model):
            assert model.module.config._attn_implementation == "eager"
            eager = model.module(input_ids=ids).logits
        attention_weights(model, ids.tolist())
        after = model.module(input_ids=ids).logits
    assert original != "eager" and model.module.config._attn_implementation == original
    torch.testing.assert_close(eager, before, atol=1e-4, rtol=0)
    torch.testing.assert_close(after, before, atol=0, rtol=0)
    assert fingerprint(model.module) == print_before


def test_the_implementation_is_restored_when_the_block_raises():
    model = tiny_model("gpt2")
    original = model.module.config._attn_implementation
    with pytest.raises(RuntimeError, match="inside"):
        with eager_attention(model):
            raise RuntimeError("inside")
    assert model.module.config._attn_implementation == original


def planted_model(layer: int, head: int, token: str):
    """A 2-block GPT-2 whose block `layer` (from 1) head `head` attends to `token`: its query is
    a constant and its key reads one embedding coordinate that only `token` sets."""
    import transformers as tf

    torch.manual_seed(0)
    config = tf.GPT2Config(vocab_size=384, n_positions=64, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0,
                           embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=1, eos_token_id=1, pad_token_id=0)
    module = tf.GPT2LMHeadModel(config).eval()
    tokenizer = tf.ByT5Tokenizer()
    marked = tokenizer(token, add_special_tokens=False)["input_ids"][0]
    d, d_head = config.n_embd, config.n_embd // config.n_head
    query, key = slice(head * d_head, (head + 1) * d_head), slice(d + head * d_head, d + (head + 1) * d_head)
    with torch.no_grad():
        module.transformer.wpe.weight.zero_()
        module.transformer.wte.weight[:, 0] = 0.0
        module.transformer.wte.weight[marked] = 0.0
        module.transformer.wte.weight[marked, 0] = 10.0
        attn = module.transformer.h[layer - 1].attn.c_attn
        attn.weight[:, query] = 0.0
        attn.bias[query] = 0.0
        attn.bias[query.start] = 1.0
        attn.weight[:, key] = 0.0
        attn.bias[key] = 0.0
        attn.weight[0, key.start] = 5.0
    return from_module(module, tokenizer, name="planted-attention")


def test_a_planted_head_is_the_one_whose_ratio_to_its_token_stands_out():
    model = planted_model(layer=1, head=2, token="+")
    ratios = []
    for text in ["12+3+45-6=", "7+8*9=", "1-2+3+4="]:
        row = model.tokenize([text], add_special_tokens=False)[0]
        keys = [i for i, c in enumerate(text) if c == "+"]
        ratios.append(ratio_to_uniform(attention_weights(model, [row])[0], len(row) - 1, keys))
    mean = np.mean(ratios, 0)
    assert np.unravel_index(int(np.argmax(mean)), mean.shape) == (0, 2)
    assert mean[0, 2] > 2.0 and np.delete(mean[0], 2).max() < 1.5


def test_the_ratio_is_1_for_uniform_attention_and_the_ceiling_for_all_on_one_key():
    n = 5
    uniform = np.tril(np.ones((n, n))) / np.arange(1, n + 1)[:, None]
    weights = np.broadcast_to(uniform, (2, 3, n, n)).copy()
    np.testing.assert_allclose(ratio_to_uniform(weights, 3, [0, 2]), 1.0)
    weights[1, 2, 3] = [0, 1, 0, 0, 0]
    assert ratio_to_uniform(weights, 3, [1])[1, 2] == pytest.approx(4.0)
    bidirectional = np.full((1, 1, n, n), 1 / n)
    assert ratio_to_uniform(bidirectional, 0, [4], causal=False)[0, 0] == pytest.approx(1.0)


@pytest.mark.parametrize("query, keys, message", [
    (2, [3], r"keys` \[3\] are outside the attended positions; give keys at or before the query \(2\)"),
    (2, [], "`keys` is empty"),
    (2, [1, 1], "repeated positions"),
    (5, [0], r"`query` must be a position in \[0, 5\), got 5"),
])
def test_bad_positions_are_named(query, keys, message):
    with pytest.raises(DataError, match=message):
        ratio_to_uniform(np.zeros((1, 1, 5, 5)), query, keys)


def test_weights_of_the_wrong_shape_are_named():
    with pytest.raises(DataError, match=r"\[layers, heads, n, n\].*got shape \(4, 4\)"):
        ratio_to_uniform(np.zeros((4, 4)), 0, [0])


@pytest.mark.parametrize("rows, kw, message", [
    ([], {}, "`rows` is empty"),
    ("1+2=", {}, "tokenize first"),
    ([[5, 6], []], {}, r"rows\[1\] is empty"),
    ([["1", "+"]], {}, r"rows\[0\] must be a list of token ids"),
    ([[5, 6]], {"batch_size": 0}, "`batch_size` must be a positive int, got 0"),
])
def test_bad_rows_are_named(rows, kw, message):
    with pytest.raises(DataError, match=message):
        attention_weights(tiny_model("gpt2"), rows, **kw)
