"""The built-in architecture table beyond t5, gpt2, llama, qwen2 and gemma2: ``LAYOUTS``, model_type -> Layout.

    LAYOUTS     a plain dict the registry (`harness.models.architectures.architectures`) reads once

Each entry was read off the transformers 5 modeling file of its type
(``transformers/models/<type>/modeling_<type>.py``): the block list and final norm, the module
whose output is what attention adds to the residual (``attn_out``), the module whose input is the
concatenated heads (``head_in``), the MLP's output (``mlp_out``), and the optional paths of
`StackLayout` (attention, q/k/v or a fused qkv with its layout, the MLP's pre-activation, gate and
down projection, the residual between attention and MLP). Where a block adds a module's output to
the residual together with something else inside that module (BLOOM's and MPT's MLPs add the
residual themselves), the path is the projection before that addition.

A fused gate-and-up projection (Phi-3, GLM, GLM-4: ``gate_up_proj``, the gate in its first d_mlp
columns) is both ``mlp_pre`` and ``mlp_gate``, which says the two are one module. Modules an
architecture does not have are None:
    - sparse mixture-of-experts blocks (Mixtral, Qwen2-MoE, Qwen3-MoE, Llama-4) have no single MLP
      width: no ``mlp_pre``/``mlp_gate``/``mlp_post`` and no ``d_mlp_attr``;
    - CodeGen's fused qkv projection interleaves q, v, k over 4 model-parallel groups, none of the
      three qkv layouts: no ``qkv``;
    - parallel blocks (GPT-J, CodeGen, GPT-NeoX with parallel residual, Falcon, Phi, Cohere) have
      no ``resid_mid``.

Notes read off the modeling files:
    - OPT's MLP runs on ``[batch * pos, d]`` (``fc1``/``fc2`` and ``final_layer_norm`` see the
      flattened rows); Llama-4's mixture-of-experts block returns ``[batch * pos, d]`` too.
    - Granite multiplies each attention and MLP output by ``residual_multiplier`` before adding it,
      so ``attn_out``/``mlp_out`` are the outputs before that factor.
    - BLOOM and MPT take ALiBi biases (``alibi`` ``[batch * heads, 1, pos]``; ``position_bias``
      ``[heads, 1, pos]``): no suffix replay.
    - The rotated fraction of GPT-J's and CodeGen's heads is ``rotary_dim`` (a number of
      dimensions, not a fraction); in transformers 5 ``partial_rotary_factor`` lives in
      ``config.rope_parameters``.
    - Where a config changes the block, the entry follows the config (``per_config``): GPT-NeoX
      with ``use_parallel_residual=False`` and Falcon-RW (``parallel_attn=False``) are sequential,
      with ``resid_mid`` at ``post_attention_layernorm``. StableLM's entry is sequential; a
      parallel StableLM computes right and finds no module for ``resid_mid`` (it has none).
      Falcon-RW's ALiBi is listed as rotary; its maps fall back to the full replay.
      OPT-350m (``do_layer_norm_before=False``: no final norm, ``project_out``) cannot be described.
"""

from __future__ import annotations

from dataclasses import replace

from harness.models.architectures import Layout, LogitRule, StackLayout

__all__ = ["LAYOUTS"]

# ---------------------------------------------------------------------------- the Llama family

# q/k/v/o projections under self_attn, a gated MLP, pre-norms
_LLAMA_BLOCK = StackLayout(
    "blocks", "model.layers", "model.norm",
    attn_out="self_attn.o_proj", head_in="self_attn.o_proj", mlp_out="mlp",
    attn="self_attn", q="self_attn.q_proj", k="self_attn.k_proj", v="self_attn.v_proj",
    mlp_pre="mlp.up_proj", mlp_gate="mlp.gate_proj", mlp_post="mlp.down_proj",
    resid_mid="post_attention_layernorm",
)
_ROTARY = dict(n_heads_attr="num_attention_heads", head_dim_attr="head_dim",
               n_kv_heads_attr="num_key_value_heads", d_mlp_attr="intermediate_size",
               positions="rotary", suffix_replay="keywords")


def _rotary(architecture: str, stack: StackLayout = _LLAMA_BLOCK, **fields) -> Layout:
    """A rotary decoder with Llama's config attribute names, `stack`'s paths, and `fields` changed."""
    return Layout(architecture=architecture, stacks=(stack,), **{**_ROTARY, **fields})


_NO_GATE = replace(_LLAMA_BLOCK, mlp_gate=None)                        # up -> act -> down
# one gate_up_proj holding [gate | up] (mlp_gate == mlp_pre says so), then down
_FUSED_GATE_UP = replace(_LLAMA_BLOCK, mlp_pre="mlp.gate_up_proj", mlp_gate="mlp.gate_up_proj")
_EXPERTS = replace(_LLAMA_BLOCK, mlp_pre=None, mlp_gate=None, mlp_post=None)
# post-norms only (OLMo-2, OLMo-3, EXAONE-4): attention and MLP outputs normed before the residual
_POST_NORMS = replace(_LLAMA_BLOCK, attn_out="post_attention_layernorm", mlp_out="post_feedforward_layernorm",
                      resid_mid="mlp")
# pre- and post-norms (Gemma-2, Gemma-3)
_SANDWICH = replace(_LLAMA_BLOCK, attn_out="post_attention_layernorm", mlp_out="post_feedforward_layernorm",
                    resid_mid="pre_feedforward_layernorm")

_MISTRAL = _rotary("mistral", window_attr="sliding_window")
_QWEN3 = _rotary("qwen3", window_attr="sliding_window")
_MOE = dict(d_mlp_attr=None, window_attr="sliding_window")

_LLAMA_FAMILY: dict[str, Layout] = {
    "mistral": _MISTRAL,
    "mixtral": _rotary("mixtral", _EXPERTS, **_MOE),
    "qwen2_moe": _rotary("qwen2_moe", _EXPERTS, **_MOE),
    "qwen3": _QWEN3,
    "qwen3_moe": _rotary("qwen3_moe", _EXPERTS, **_MOE),
    "gemma": _rotary("gemma"),
    "gemma3_text": _rotary("gemma3_text", _SANDWICH, window_attr="sliding_window",
                           logits=LogitRule(softcap="final_logit_softcapping")),
    "olmo": _rotary("olmo"),
    "olmo2": _rotary("olmo2", _POST_NORMS),
    "olmo3": _rotary("olmo3", _POST_NORMS, window_attr="sliding_window"),
    "exaone4": _rotary("exaone4", _POST_NORMS, window_attr="sliding_window"),
    "cohere": _rotary("cohere", replace(_LLAMA_BLOCK, resid_mid=None), parallel=True,
                      logits=LogitRule(scale="logit_scale")),
    "granite": _rotary("granite", logits=LogitRule(divide="logits_scaling")),
    "smollm3": _rotary("smollm3", window_attr="sliding_window"),
    "glm": _rotary("glm", _FUSED_GATE_UP, rotary_fraction_attr="partial_rotary_factor"),
    "glm4": _rotary("glm4", replace(_FUSED_GATE_UP, attn_out="post_self_attn_layernorm",
                                    mlp_out="post_mlp_layernorm"),
                    rotary_fraction_attr="partial_rotary_factor"),
    "nemotron": _rotary("nemotron", _NO_GATE, rotary_fraction_attr="partial_rotary_factor"),
    "helium": _rotary("helium"),
    "apertus": _rotary("apertus", replace(_NO_GATE, resid_mid="feedforward_layernorm")),
    "arcee": _rotary("arcee", _NO_GATE),
    "seed_oss": _rotary("seed_oss"),
    "ernie4_5": _rotary("ernie4_5"),
    "hunyuan_v1_dense": _rotary("hunyuan_v1_dense"),
    "llama4_text": _rotary("llama4_text", replace(_EXPERTS, mlp_out="feed_forward"), d_mlp_attr=None,
                           window_attr="attention_chunk_size"),
    "phi3": _rotary("phi3", replace(_FUSED_GATE_UP, q=None, k=None, v=None, qkv="self_attn.qkv_proj",
                                    qkv_layout="thirds"), window_attr="sliding_window"),
    "stablelm": _rotary("stablelm", rotary_fraction_attr="partial_rotary_factor"),
    "starcoder2": _rotary("starcoder2", replace(_NO_GATE, mlp_pre="mlp.c_fc", mlp_post="mlp.c_proj"),
                          window_attr="sliding_window"),
}

# ---------------------------------------------------------------------------- the others

_OTHERS: dict[str, Layout] = {
    "gpt_neo": Layout(
        architecture="gpt_neo",
        stacks=(StackLayout("blocks", "transformer.h", "transformer.ln_f",
                            attn_out="attn.attention.out_proj", head_in="attn.attention.out_proj", mlp_out="mlp",
                            attn="attn.attention", q="attn.attention.q_proj", k="attn.attention.k_proj",
                            v="attn.attention.v_proj", mlp_pre="mlp.c_fc", mlp_post="mlp.c_proj",
                            resid_mid="ln_2"),),
        n_heads_attr="num_heads", head_dim_attr=None, d_mlp_attr="intermediate_size",
        positions="absolute", window_attr="window_size", suffix_replay="keywords",
    ),
    "gptj": Layout(
        architecture="gptj",
        stacks=(StackLayout("blocks", "transformer.h", "transformer.ln_f",
                            attn_out="attn.out_proj", head_in="attn.out_proj", mlp_out="mlp",
                            attn="attn", q="attn.q_proj", k="attn.k_proj", v="attn.v_proj",
                            mlp_pre="mlp.fc_in", mlp_post="mlp.fc_out"),),
        n_heads_attr="n_head", head_dim_attr=None, d_mlp_attr="n_inner",
        positions="rotary", parallel=True, suffix_replay="keywords",
    ),
    "codegen": Layout(
        architecture="codegen",
        stacks=(StackLayout("blocks", "transformer.h", "transformer.ln_f",
                            attn_out="attn.out_proj", head_in="attn.out_proj", mlp_out="mlp",
                            attn="attn", mlp_pre="mlp.fc_in", mlp_post="mlp.fc_out"),),
        n_heads_attr="n_head", head_dim_attr=None, d_mlp_attr="n_inner",
        positions="rotary", parallel=True, suffix_replay="keywords",
    ),
    "gpt_neox": Layout(
        architecture="gpt_neox",
        stacks=(StackLayout("blocks", "gpt_neox.layers", "gpt_neox.final_layer_norm",
                            attn_out="attention.dense", head_in="attention.dense", mlp_out="mlp",
                            attn="attention", qkv="attention.query_key_value", qkv_layout="per_head",
                            mlp_pre="mlp.dense_h_to_4h", mlp_post="mlp.dense_4h_to_h"),),
        n_heads_attr="num_attention_heads", head_dim_attr=None, d_mlp_attr="intermediate_size",
        positions="rotary", rotary_fraction_attr="partial_rotary_factor", parallel=True,
        suffix_replay="keywords", per_config=lambda config: _sequential_if(
            not getattr(config, "use_parallel_residual", True), "gpt_neox"),
    ),
    "gpt_bigcode": Layout(
        architecture="gpt_bigcode",
        stacks=(StackLayout("blocks", "transformer.h", "transformer.ln_f",
                            attn_out="attn.c_proj", head_in="attn.c_proj", mlp_out="mlp",
                            attn="attn", qkv="attn.c_attn", qkv_layout="thirds",
                            mlp_pre="mlp.c_fc", mlp_post="mlp.c_proj", resid_mid="ln_2"),),
        n_heads_attr="n_head", head_dim_attr=None, n_kv_heads_attr="num_key_value_heads", d_mlp_attr="n_inner",
        positions="absolute", suffix_replay="keywords",
    ),
    "opt": Layout(
        architecture="opt",
        stacks=(StackLayout("blocks", "model.decoder.layers", "model.decoder.final_layer_norm",
                            attn_out="self_attn.out_proj", head_in="self_attn.out_proj", mlp_out="fc2",
                            attn="self_attn", q="self_attn.q_proj", k="self_attn.k_proj", v="self_attn.v_proj",
                            mlp_pre="fc1", mlp_post="fc2", resid_mid="final_layer_norm"),),
        n_heads_attr="num_attention_heads", head_dim_attr=None, d_mlp_attr="ffn_dim",
        positions="absolute", suffix_replay="keywords",
    ),
    "xglm": Layout(
        architecture="xglm",
        stacks=(StackLayout("blocks", "model.layers", "model.layer_norm",
                            attn_out="self_attn.out_proj", head_in="self_attn.out_proj", mlp_out="fc2",
                            attn="self_attn", q="self_attn.q_proj", k="self_attn.k_proj", v="self_attn.v_proj",
                            mlp_pre="fc1", mlp_post="fc2", resid_mid="final_layer_norm"),),
        n_heads_attr="attention_heads", head_dim_attr=None, d_mlp_attr="ffn_dim",
        positions="absolute", suffix_replay="keywords",
    ),
    "bloom": Layout(
        architecture="bloom",
        stacks=(StackLayout("blocks", "transformer.h", "transformer.ln_f",
                            attn_out="self_attention.dense", head_in="self_attention.dense",
                            mlp_out="mlp.dense_4h_to_h", attn="self_attention",
                            qkv="self_attention.query_key_value", qkv_layout="per_head",
                            mlp_pre="mlp.dense_h_to_4h", mlp_post="mlp.dense_4h_to_h",
                            resid_mid="post_attention_layernorm"),),
        n_heads_attr="n_head", head_dim_attr=None, d_mlp_attr=None,
        positions="alibi", suffix_replay=None, batch_heads_args=("alibi",),
    ),
    "falcon": Layout(
        architecture="falcon",
        stacks=(StackLayout("blocks", "transformer.h", "transformer.ln_f",
                            attn_out="self_attention.dense", head_in="self_attention.dense", mlp_out="mlp",
                            attn="self_attention", qkv="self_attention.query_key_value", qkv_layout="grouped",
                            mlp_pre="mlp.dense_h_to_4h", mlp_post="mlp.dense_4h_to_h"),),
        n_heads_attr="num_attention_heads", head_dim_attr="head_dim", n_kv_heads_attr="num_key_value_heads",
        d_mlp_attr="ffn_hidden_size", positions="rotary", parallel=True,
        suffix_replay="keywords", per_config=lambda config: _sequential_if(
            not getattr(config, "new_decoder_architecture", False) and not getattr(config, "parallel_attn", True),
            "falcon"),
    ),
    "mpt": Layout(
        architecture="mpt",
        stacks=(StackLayout("blocks", "transformer.blocks", "transformer.norm_f",
                            attn_out="attn.out_proj", head_in="attn.out_proj", mlp_out="ffn.down_proj",
                            attn="attn", qkv="attn.Wqkv", qkv_layout="thirds",
                            mlp_pre="ffn.up_proj", mlp_post="ffn.down_proj", resid_mid="norm_2"),),
        n_heads_attr="n_heads", head_dim_attr=None, d_mlp_attr=None,
        positions="alibi", suffix_replay=None, unbatched_args=("position_bias",),
    ),
    "phi": Layout(
        architecture="phi",
        stacks=(StackLayout("blocks", "model.layers", "model.final_layernorm",
                            attn_out="self_attn.dense", head_in="self_attn.dense", mlp_out="mlp",
                            attn="self_attn", q="self_attn.q_proj", k="self_attn.k_proj", v="self_attn.v_proj",
                            mlp_pre="mlp.fc1", mlp_post="mlp.fc2"),),
        n_heads_attr="num_attention_heads", head_dim_attr=None, n_kv_heads_attr="num_key_value_heads",
        d_mlp_attr="intermediate_size", positions="rotary", rotary_fraction_attr="partial_rotary_factor",
        parallel=True, suffix_replay="keywords",
    ),
    "persimmon": Layout(
        architecture="persimmon",
        stacks=(StackLayout("blocks", "model.layers", "model.final_layernorm",
                            attn_out="self_attn.dense", head_in="self_attn.dense", mlp_out="mlp",
                            attn="self_attn", qkv="self_attn.query_key_value", qkv_layout="per_head",
                            mlp_pre="mlp.dense_h_to_4h", mlp_post="mlp.dense_4h_to_h",
                            resid_mid="post_attention_layernorm"),),
        n_heads_attr="num_attention_heads", head_dim_attr=None, d_mlp_attr="intermediate_size",
        positions="rotary", rotary_fraction_attr="partial_rotary_factor", suffix_replay="keywords",
    ),
}

LAYOUTS: dict[str, Layout] = {**_OTHERS, **_LLAMA_FAMILY}


def _sequential_if(sequential: bool, model_type: str) -> Layout:
    """The entry of `model_type` for one config: as listed (parallel attention and MLP), or, for a
    config whose blocks run them in sequence (GPT-NeoX with ``use_parallel_residual=False``,
    Falcon-RW's ``parallel_attn=False``), with ``resid_mid`` at the input of the MLP's norm
    ``post_attention_layernorm``."""
    listed = replace(LAYOUTS[model_type], per_config=None)
    if not sequential:
        return listed
    stack = replace(listed.stacks[0], resid_mid="post_attention_layernorm")
    return replace(listed, stacks=(stack,), parallel=False)
