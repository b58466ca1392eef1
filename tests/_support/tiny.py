"""Tiny random-weight models with the topology of the real models the studies target.

Layer and head counts, norms, activations and head layout follow the real configs
(byt5-small, gpt2, Qwen2.5-0.5B, gemma-2-2b); only the width is shrunk. All use the ByT5
byte tokenizer, which needs no files, so nothing is downloaded.
"""

from __future__ import annotations

import functools

import torch

from harness.models.load import from_module
from harness.models.loaded import LoadedModel

ARCHITECTURES = ("byt5-small", "gpt2", "qwen2.5-0.5b", "gemma-2-2b")


def _config(arch: str):
    import transformers as tf

    if arch == "byt5-small":
        return tf.T5Config(vocab_size=384, d_model=32, d_kv=8, d_ff=48, num_layers=12,
                           num_decoder_layers=4, num_heads=6, feed_forward_proj="gated-gelu",
                           dropout_rate=0.0, tie_word_embeddings=False, layer_norm_epsilon=1e-6,
                           decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    if arch == "gpt2":
        return tf.GPT2Config(vocab_size=384, n_positions=256, n_embd=48, n_layer=12, n_head=12,
                             resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                             bos_token_id=1, eos_token_id=1, pad_token_id=0)
    if arch == "qwen2.5-0.5b":
        return tf.Qwen2Config(vocab_size=384, hidden_size=56, intermediate_size=64, num_hidden_layers=24,
                              num_attention_heads=14, num_key_value_heads=2, head_dim=4,
                              max_position_embeddings=256, rope_theta=1e6, rms_norm_eps=1e-6,
                              tie_word_embeddings=True, pad_token_id=0, bos_token_id=1, eos_token_id=1)
    if arch == "gemma-2-2b":
        return tf.Gemma2Config(vocab_size=384, hidden_size=32, intermediate_size=64, num_hidden_layers=26,
                               num_attention_heads=8, num_key_value_heads=4, head_dim=8,
                               max_position_embeddings=256, sliding_window=16,
                               attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
                               query_pre_attn_scalar=8, hidden_activation="gelu_pytorch_tanh",
                               pad_token_id=0, bos_token_id=2, eos_token_id=1)
    raise ValueError(f"unknown tiny architecture {arch!r}; choose from {ARCHITECTURES}")


@functools.lru_cache(maxsize=None)
def tiny_model(arch: str, seed: int = 0) -> LoadedModel:
    import transformers as tf

    torch.manual_seed(seed)
    config = _config(arch)
    if arch == "byt5-small":
        module = tf.T5ForConditionalGeneration(config)
        # ByT5 carries its own output head; transformers ties it to the embedding by default
        module.lm_head.weight = torch.nn.Parameter(torch.randn_like(module.lm_head.weight) * 0.05)
    elif arch == "gpt2":
        module = tf.GPT2LMHeadModel(config)
    elif arch == "qwen2.5-0.5b":
        module = tf.Qwen2ForCausalLM(config)
    else:
        module = tf.Gemma2ForCausalLM(config)
    with torch.no_grad():  # larger random weights so differences between runs are not hidden by tiny scales
        for name, p in module.named_parameters():
            if p.dim() == 2 and "norm" not in name:
                p.normal_(0.0, 0.2)
    tokenizer = tf.ByT5Tokenizer()
    return from_module(module.eval(), tokenizer, name=f"tiny:{arch}")


@functools.lru_cache(maxsize=None)
def gpt2_24() -> LoadedModel:
    """A 4-block GPT-2 of width 24 (4 heads of width 6), seeded, with the byte tokenizer: the
    model of the batch-independence bug report, quick enough to repeat a patching map 70 times."""
    import transformers as tf

    config = tf.GPT2Config(vocab_size=384, n_positions=128, n_embd=24, n_layer=4, n_head=4,
                           resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                           bos_token_id=1, eos_token_id=1, pad_token_id=0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        module = tf.GPT2LMHeadModel(config)
    return from_module(module.eval(), tf.ByT5Tokenizer(), name="tiny:gpt2-24")
