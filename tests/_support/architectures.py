"""Tiny random-weight decoders of every model type the harness supports, saved and loaded as a user would.

    MODEL_TYPES                  the decoder model types with a config here
    VARIANTS, model_type_of      other configurations of some types (Falcon's multi-query and ALiBi
                                 layouts, GPT-NeoX sequential, StableLM parallel) and their type
    config_for(model_type, ...)  a transformers config: width 32, 2 blocks, grouped-query attention
                                 where the type has it, a 384-token byte vocabulary
    build(model_type, ...)       the Hugging Face causal LM of that config, seeded, with weights large
                                 enough (normal, std 0.2, on every non-norm matrix, stacked experts
                                 included) that differences between runs are not hidden by tiny scales
    byte_tokenizer()             a fast byte tokenizer with the ids of ``transformers.ByT5Tokenizer()``
    saved(model_type)            the directory it is saved in (``save_pretrained``, next to that
                                 tokenizer), one per type in a temporary directory of the process
    loaded(model_type, impl)     ``harness.models.load.load_model`` of that directory under the
                                 attention implementation `impl` (cached)
    sdpa_refusal(model_type)     why the type has no ``sdpa`` attention, or None

Each config keeps the features that make its type differ from Llama (parallel blocks, partial
rotary, ALiBi, logit scales, soft-capping, post-norms, multi-query attention, experts, windows),
so a wrong table entry shows. The sliding windows (GPT-Neo, Mistral, Gemma-2, Gemma-3, OLMo-3,
EXAONE-4) and Llama-4's attention chunks are 4 tokens, shorter than the test prompts, so the
windowed paths are exercised.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

VOCAB = 384            # the ByT5 tokenizer's 256 bytes, 3 specials and 125 extra ids
D = 32                 # width
LAYERS = 2
HEADS, KV_HEADS = 4, 2
D_MLP = 48
POSITIONS = 64
WINDOW = 4             # sliding windows: shorter than the prompts
SPECIAL = dict(pad_token_id=0, eos_token_id=1, bos_token_id=1)

# keyword arguments of each type's config class (on top of SPECIAL and the attention implementation)
_LLAMA_LIKE = dict(vocab_size=VOCAB, hidden_size=D, intermediate_size=D_MLP, num_hidden_layers=LAYERS,
                   num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=POSITIONS)
_CONFIGS: dict[str, dict[str, Any]] = {
    "gpt2": dict(vocab_size=VOCAB, n_embd=D, n_layer=LAYERS, n_head=HEADS, n_positions=POSITIONS,
                 resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0),
    "gpt_neo": dict(vocab_size=VOCAB, hidden_size=D, num_layers=LAYERS, num_heads=HEADS,
                    attention_types=[[["global", "local"], 1]], window_size=WINDOW, intermediate_size=D_MLP,
                    max_position_embeddings=POSITIONS, resid_dropout=0.0, embed_dropout=0.0,
                    attention_dropout=0.0),
    "gptj": dict(vocab_size=VOCAB, n_embd=D, n_layer=LAYERS, n_head=HEADS, rotary_dim=4, n_inner=D_MLP,
                 n_positions=POSITIONS, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0),
    "gpt_neox": dict(vocab_size=VOCAB, hidden_size=D, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                     intermediate_size=D_MLP, max_position_embeddings=POSITIONS, use_parallel_residual=True,
                     rotary_pct=0.5),
    "gpt_bigcode": dict(vocab_size=VOCAB, n_embd=D, n_layer=LAYERS, n_head=HEADS, n_inner=D_MLP,
                        n_positions=POSITIONS, multi_query=True, resid_pdrop=0.0, embd_pdrop=0.0,
                        attn_pdrop=0.0),
    "codegen": dict(vocab_size=VOCAB, n_embd=D, n_layer=LAYERS, n_head=HEADS, rotary_dim=4, n_inner=D_MLP,
                    n_positions=POSITIONS, n_ctx=POSITIONS, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0),
    "opt": dict(vocab_size=VOCAB, hidden_size=D, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                ffn_dim=D_MLP, word_embed_proj_dim=D, max_position_embeddings=POSITIONS, dropout=0.0,
                attention_dropout=0.0, activation_dropout=0.0),
    "bloom": dict(vocab_size=VOCAB, hidden_size=D, n_layer=LAYERS, n_head=HEADS, hidden_dropout=0.0,
                  attention_dropout=0.0),
    "falcon": dict(vocab_size=VOCAB, hidden_size=D, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                   new_decoder_architecture=True, num_kv_heads=KV_HEADS, parallel_attn=True, bias=False,
                   ffn_hidden_size=D_MLP, max_position_embeddings=POSITIONS, alibi=False),
    "mpt": dict(vocab_size=VOCAB, d_model=D, n_layers=LAYERS, n_heads=HEADS, expansion_ratio=2,
                max_seq_len=POSITIONS, attn_config={"alibi": True, "alibi_bias_max": 8}),
    "xglm": dict(vocab_size=VOCAB, d_model=D, num_layers=LAYERS, attention_heads=HEADS, ffn_dim=D_MLP,
                 max_position_embeddings=POSITIONS, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0),
    "phi": dict(_LLAMA_LIKE, partial_rotary_factor=0.5, qk_layernorm=True,
                resid_pdrop=0.0, embd_pdrop=0.0),
    "phi3": dict(_LLAMA_LIKE, sliding_window=None),
    "persimmon": dict(_LLAMA_LIKE, num_key_value_heads=HEADS, partial_rotary_factor=0.5, qk_layernorm=True),
    "stablelm": dict(_LLAMA_LIKE, partial_rotary_factor=0.25, use_qkv_bias=True),
    "starcoder2": dict(_LLAMA_LIKE, sliding_window=None, residual_dropout=0.0, embedding_dropout=0.0),
    "llama": dict(_LLAMA_LIKE),
    "mistral": dict(_LLAMA_LIKE, head_dim=8, sliding_window=WINDOW),
    "mixtral": dict(_LLAMA_LIKE, num_local_experts=4, num_experts_per_tok=2),
    "qwen2": dict(_LLAMA_LIKE, head_dim=8),
    "qwen2_moe": dict(_LLAMA_LIKE, moe_intermediate_size=D_MLP // 2, shared_expert_intermediate_size=D_MLP,
                      num_experts=4, num_experts_per_tok=2, decoder_sparse_step=1),
    "qwen3": dict(_LLAMA_LIKE, head_dim=8),
    "qwen3_moe": dict(_LLAMA_LIKE, head_dim=8, moe_intermediate_size=D_MLP // 2, num_experts=4,
                      num_experts_per_tok=2, decoder_sparse_step=1),
    "gemma": dict(_LLAMA_LIKE, head_dim=8),
    "gemma2": dict(_LLAMA_LIKE, head_dim=8, sliding_window=WINDOW, query_pre_attn_scalar=8,
                   attn_logit_softcapping=50.0, final_logit_softcapping=30.0),
    "gemma3_text": dict(_LLAMA_LIKE, head_dim=8, sliding_window=WINDOW, query_pre_attn_scalar=8,
                        layer_types=["sliding_attention", "full_attention"], final_logit_softcapping=30.0),
    "olmo": dict(_LLAMA_LIKE, clip_qkv=8.0),
    "olmo2": dict(_LLAMA_LIKE),
    "olmo3": dict(_LLAMA_LIKE, sliding_window=WINDOW, layer_types=["sliding_attention", "full_attention"]),
    "cohere": dict(_LLAMA_LIKE, logit_scale=0.0625, use_qk_norm=False),
    "granite": dict(_LLAMA_LIKE, embedding_multiplier=2.0, logits_scaling=8.0, residual_multiplier=0.5,
                    attention_multiplier=0.25),
    "smollm3": dict(_LLAMA_LIKE, no_rope_layers=[1, 0], no_rope_layer_interval=2),
    "glm": dict(_LLAMA_LIKE, head_dim=8, partial_rotary_factor=0.5),
    "glm4": dict(_LLAMA_LIKE, head_dim=8, partial_rotary_factor=0.5),
    "nemotron": dict(_LLAMA_LIKE, head_dim=8, partial_rotary_factor=0.5),
    "helium": dict(_LLAMA_LIKE, head_dim=8),
    "exaone4": dict(_LLAMA_LIKE, sliding_window=WINDOW, layer_types=["sliding_attention", "full_attention"]),
    "apertus": dict(_LLAMA_LIKE, rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
    "arcee": dict(_LLAMA_LIKE, head_dim=8),
    "seed_oss": dict(_LLAMA_LIKE, head_dim=8, attention_dropout=0.0, residual_dropout=0.0),
    "ernie4_5": dict(_LLAMA_LIKE, head_dim=8, use_bias=True),
    "hunyuan_v1_dense": dict(_LLAMA_LIKE, head_dim=8),
    "llama4_text": dict(_LLAMA_LIKE, head_dim=8, intermediate_size_mlp=D_MLP, num_local_experts=4,
                        num_experts_per_tok=1, moe_layers=[0, 1], attention_chunk_size=WINDOW,
                        layer_types=["chunked_attention", "full_attention"], no_rope_layers=[1, 0]),
}

MODEL_TYPES: tuple[str, ...] = tuple(_CONFIGS)

# other configurations of some types, whose blocks are laid out differently: name -> (model type, config)
_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    # Falcon-7B/40B's first layout: multi-query attention, one layernorm, parallel attention and MLP
    "falcon-multi_query": ("falcon", dict(_CONFIGS["falcon"], new_decoder_architecture=False, multi_query=True,
                                          num_kv_heads=None)),
    # Falcon-RW: ALiBi, one key/value head per query head, sequential blocks
    "falcon-alibi": ("falcon", dict(_CONFIGS["falcon"], new_decoder_architecture=False, multi_query=False,
                                    parallel_attn=False, alibi=True, num_kv_heads=None)),
    # GPT-NeoX without the parallel residual
    "gpt_neox-sequential": ("gpt_neox", dict(_CONFIGS["gpt_neox"], use_parallel_residual=False)),
    # OPT-350m: post-norm blocks, a narrower embedding projected in and out
    "opt-post_norm": ("opt", dict(_CONFIGS["opt"], do_layer_norm_before=False, word_embed_proj_dim=16)),
    # StableLM with the parallel residual
    "stablelm-parallel": ("stablelm", dict(_CONFIGS["stablelm"], use_parallel_residual=True)),
}
VARIANTS: tuple[str, ...] = tuple(_VARIANTS)


def model_type_of(name: str) -> str:
    """The Hugging Face model type of a name in `MODEL_TYPES` or `VARIANTS`."""
    return _VARIANTS[name][0] if name in _VARIANTS else name


def config_for(model_type: str, *, attn_implementation: str = "eager"):
    """The transformers config of the tiny `model_type` (or variant) under `attn_implementation`."""
    from transformers import AutoConfig

    if model_type in _VARIANTS:
        config = AutoConfig.for_model(_VARIANTS[model_type][0], **SPECIAL, **_VARIANTS[model_type][1])
    elif model_type in _CONFIGS:
        config = AutoConfig.for_model(model_type, **SPECIAL, **_CONFIGS[model_type])
    else:
        raise ValueError(f"`model_type` must be one of {list(MODEL_TYPES + VARIANTS)}, got {model_type!r}")
    config._attn_implementation = attn_implementation
    return config


def build(model_type: str, *, attn_implementation: str = "eager", seed: int = 0) -> torch.nn.Module:
    """The seeded causal LM of `config_for(model_type)`, in eval mode, float32."""
    from transformers import AutoModelForCausalLM

    config = config_for(model_type, attn_implementation=attn_implementation)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        module = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        with torch.no_grad():  # larger weights than the init, so differences are not hidden
            for name, p in module.named_parameters():
                if p.dim() >= 2 and "norm" not in name:
                    p.normal_(0.0, 0.2)
    return module.eval()


_ROOT: Path | None = None


def _root() -> Path:
    global _ROOT
    if _ROOT is None:
        _ROOT = Path(tempfile.mkdtemp(prefix="interp-claims-architectures-"))
        atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)
    return _ROOT


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in character for each byte (the ByteLevel pre-tokenizer's alphabet)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\u00a1"), ord("\u00ac") + 1),
                 *range(ord("\u00ae"), ord("\u00ff") + 1)]
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def byte_tokenizer():
    """A fast byte tokenizer that gives the ids of ``transformers.ByT5Tokenizer()`` (byte b -> b + 3,
    ``<pad>`` 0, ``</s>`` 1 appended, ``<unk>`` 2, 125 extra ids: 384 in all), saved as a generic
    ``TokenizersBackend`` with its ``tokenizer.json``.

    The ByT5 tokenizer itself is not saved next to the models: transformers 5 builds its own
    tokenizer class for many model types (mistral, granite, olmo2, ...) whatever the checkpoint's
    ``tokenizer_config.json`` declares, and that fails without the class's vocabulary files."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    chars = _bytes_to_unicode()
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{chars[b]: b + 3 for b in range(256)},
             **{f"<extra_id_{i}>": 259 + i for i in range(125)}}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


@functools.lru_cache(maxsize=None)
def saved(model_type: str) -> Path:
    """The directory holding the tiny `model_type` (``save_pretrained``) and `byte_tokenizer()`."""
    path = _root() / model_type
    build(model_type).save_pretrained(path)
    byte_tokenizer().save_pretrained(path)
    return path


def sdpa_refusal(model_type: str) -> str | None:
    """Why `model_type` cannot run under ``sdpa`` in this transformers, or None."""
    from transformers import AutoModelForCausalLM

    cls = AutoModelForCausalLM._model_mapping[type(config_for(model_type))]
    if not getattr(cls, "_supports_sdpa", False):
        return f"{cls.__name__} has no sdpa attention in this transformers (it runs eager)"
    return None


@functools.lru_cache(maxsize=None)
def loaded(model_type: str, attn_implementation: str = "eager"):
    """``load_model`` of `saved(model_type)`, float32 on the CPU, switched to `attn_implementation`
    (``model.module.set_attn_implementation``; a ValueError where the type cannot run it)."""
    from harness.models.load import load_model

    model = load_model(str(saved(model_type)), name=f"tiny:{model_type}:{attn_implementation}")
    model.module.set_attn_implementation(attn_implementation)
    if model.module.config._attn_implementation != attn_implementation:
        raise ValueError(f"{model_type} runs {model.module.config._attn_implementation!r}, "
                         f"not {attn_implementation!r}")
    return model
