"""Tiny random-weight models of architectures beyond the fixtures' (width 32, 2 blocks), each with
the `Layout` the tests register for it, for the logit rule and the replay fallbacks.

`registered(name)` builds one as a `LoadedModel`, its layout registered (replacing any built-in
entry) only while the build's registry fixture is active: use the `families` fixture.
"""

from __future__ import annotations

import torch

from harness.models.architectures import Layout, LogitRule, StackLayout

_LLAMA_STACK = StackLayout("blocks", "model.layers", "model.norm", attn_out="self_attn.o_proj",
                           head_in="self_attn.o_proj", mlp_out="mlp", attn="self_attn",
                           q="self_attn.q_proj", k="self_attn.k_proj", v="self_attn.v_proj",
                           mlp_pre="mlp.up_proj", mlp_gate="mlp.gate_proj", mlp_post="mlp.down_proj",
                           resid_mid="post_attention_layernorm")
_ROTARY = dict(n_heads_attr="num_attention_heads", head_dim_attr="head_dim", n_kv_heads_attr="num_key_value_heads",
               d_mlp_attr="intermediate_size", positions="rotary", suffix_replay="keywords")

LAYOUTS: dict[str, Layout] = {
    "cohere": Layout(architecture="cohere", parallel=True, logits=LogitRule(scale="logit_scale"),
                     stacks=(StackLayout("blocks", "model.layers", "model.norm", attn_out="self_attn.o_proj",
                                         head_in="self_attn.o_proj", mlp_out="mlp"),), **_ROTARY),
    "granite": Layout(architecture="granite", logits=LogitRule(divide="logits_scaling"), stacks=(_LLAMA_STACK,),
                      **_ROTARY),
    "mistral": Layout(architecture="mistral", window_attr="sliding_window", stacks=(_LLAMA_STACK,), **_ROTARY),
    "bloom": Layout(architecture="bloom", positions="alibi", n_heads_attr="n_head", head_dim_attr=None,
                    batch_heads_args=("alibi",),
                    stacks=(StackLayout("blocks", "transformer.h", "transformer.ln_f",
                                        attn_out="self_attention.dense", head_in="self_attention.dense",
                                        mlp_out="mlp"),)),
    "mpt": Layout(architecture="mpt", positions="alibi", n_heads_attr="n_heads", head_dim_attr=None,
                  unbatched_args=("position_bias",),
                  stacks=(StackLayout("blocks", "transformer.blocks", "transformer.norm_f",
                                      attn_out="attn.out_proj", head_in="attn.out_proj", mlp_out="ffn"),)),
}


def config(name: str, **overrides):
    import transformers as tf

    common = dict(vocab_size=384, pad_token_id=0, bos_token_id=1, eos_token_id=1)
    rotary = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=8, max_position_embeddings=128, **common)
    if name == "cohere":
        made = tf.CohereConfig(logit_scale=0.0625, **rotary)
    elif name == "granite":
        made = tf.GraniteConfig(logits_scaling=8.0, **rotary)
    elif name == "mistral":
        made = tf.MistralConfig(sliding_window=4, **rotary)
    elif name == "bloom":
        made = tf.BloomConfig(hidden_size=32, n_layer=2, n_head=4, **common)
    elif name == "mpt":
        made = tf.MptConfig(d_model=32, n_layers=2, n_heads=4, expansion_ratio=2, max_seq_len=128, **common)
    else:
        raise ValueError(f"unknown family {name!r}; choose from {sorted(LAYOUTS)}")
    for key, value in overrides.items():
        setattr(made, key, value)
    return made


def module(name: str, seed: int = 0, **overrides) -> torch.nn.Module:
    """The Hugging Face causal LM of family `name`, seeded, with weights large enough that
    patching changes the logits visibly, in eval mode."""
    import transformers as tf

    torch.manual_seed(seed)
    built = tf.AutoModelForCausalLM.from_config(config(name, **overrides))
    with torch.no_grad():
        for key, p in built.named_parameters():
            if p.dim() == 2 and "norm" not in key and "ln" not in key:
                p.normal_(0.0, 0.2)
    return built.eval()
