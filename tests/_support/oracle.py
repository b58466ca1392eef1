"""The conformance oracle: plain loops of full forwards with raw torch hooks on the Hugging Face modules.

    PATHS                         model_type (or variant) -> Paths, transcribed from the transformers 5
                                  modeling files on their own (not read from the harness's table)
    run(model, ids, edits=...)    one forward of one unpadded example under raw hooks: its logits
                                  ``[pos, vocab]`` and what the hooks recorded
    trace(model, paths, ids)      every block's input and output, attention's and the MLP's
                                  additions, the heads' concatenation, ``output_hidden_states``
    steered(...)                  the logits with ``alpha * vector`` added to a block's output
    patched_resid(...)            the corrupt run with one block input position set from the clean run
    patched_head(...)             the corrupt run with one head's output set from the clean run
    patched_output(...)           the corrupt run with attention's or the MLP's addition set from the clean run
    lens(...)                     the model's own logits with the final norm reading another residual
    finer(model, paths, ids)      resid_mid, the MLP neurons (gate, up, post-activation) and q/k/v per block
    edited(...)                   the logits with a vector added to the values or the MLP post-activation
    greedy(...)                   greedy decoding without a cache, the whole sequence every step
    attention_pattern(model, ids) the attention weights the model returns with ``output_attentions``

Nothing here imports the harness: every number is computed from the Hugging Face module itself,
one example at a time (no padding), so a test that compares the harness with these functions
checks the harness's module paths, hooks, batching, padding, caches and replays at once.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Callable, Iterator, Sequence

import torch

Edit = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Paths:
    """Where one model type keeps its blocks and per-block modules (block-relative but `blocks`
    and `final_norm`). `attn_add`/`mlp_add`: the module whose output is what attention / the MLP
    add to the residual (before Granite's residual multiplier); `head_in`: the module whose input
    is the heads side by side.

    The finer activations, None where the type has no such module: `q`/`k`/`v` the separate
    projections, or `qkv` one fused projection split as `qkv_split` says ("thirds": [q | k | v];
    "per_head": a view ``[.., heads, 3, d_head]``; "grouped": a view ``[.., kv heads, group + 2,
    d_head]``, the group's queries then its key and value); `up` the MLP's up projection (output),
    `gate` its gate projection, `gate_up` one projection holding [gate | up], `down` the down
    projection (its input is the MLP's post-activation); `parallel`: attention and MLP read the
    same residual, so there is no residual between them."""

    blocks: str
    final_norm: str
    attn_add: str
    head_in: str
    mlp_add: str
    q: str | None = None
    k: str | None = None
    v: str | None = None
    qkv: str | None = None
    qkv_split: str | None = None
    up: str | None = None
    gate: str | None = None
    gate_up: str | None = None
    down: str | None = None
    parallel: bool = False


_LLAMA = Paths("model.layers", "model.norm", "self_attn.o_proj", "self_attn.o_proj", "mlp",
               q="self_attn.q_proj", k="self_attn.k_proj", v="self_attn.v_proj",
               up="mlp.up_proj", gate="mlp.gate_proj", down="mlp.down_proj")
_UNGATED = replace(_LLAMA, gate=None)
_GATE_UP = replace(_LLAMA, up=None, gate=None, gate_up="mlp.gate_up_proj")
_EXPERTS = replace(_LLAMA, up=None, gate=None, down=None)
_POST_NORMED = replace(_LLAMA, attn_add="post_attention_layernorm", mlp_add="post_feedforward_layernorm")
_GPT = Paths("transformer.h", "transformer.ln_f", "attn.c_proj", "attn.c_proj", "mlp",
             qkv="attn.c_attn", qkv_split="thirds", up="mlp.c_fc", down="mlp.c_proj")
_4H = dict(up="mlp.dense_h_to_4h", down="mlp.dense_4h_to_h")
_SEPARATE = dict(qkv=None, qkv_split=None)

PATHS: dict[str, Paths] = {
    "gpt2": _GPT,
    "gpt_bigcode": _GPT,
    "gpt_neo": replace(_GPT, attn_add="attn.attention.out_proj", head_in="attn.attention.out_proj", **_SEPARATE,
                       q="attn.attention.q_proj", k="attn.attention.k_proj", v="attn.attention.v_proj"),
    "gptj": replace(_GPT, attn_add="attn.out_proj", head_in="attn.out_proj", **_SEPARATE, q="attn.q_proj",
                    k="attn.k_proj", v="attn.v_proj", up="mlp.fc_in", down="mlp.fc_out", parallel=True),
    "codegen": replace(_GPT, attn_add="attn.out_proj", head_in="attn.out_proj", **_SEPARATE, up="mlp.fc_in",
                       down="mlp.fc_out", parallel=True),
    "gpt_neox": Paths("gpt_neox.layers", "gpt_neox.final_layer_norm", "attention.dense", "attention.dense", "mlp",
                      qkv="attention.query_key_value", qkv_split="per_head", parallel=True, **_4H),
    "opt": Paths("model.decoder.layers", "model.decoder.final_layer_norm", "self_attn.out_proj",
                 "self_attn.out_proj", "fc2", q="self_attn.q_proj", k="self_attn.k_proj", v="self_attn.v_proj",
                 up="fc1", down="fc2"),
    "xglm": Paths("model.layers", "model.layer_norm", "self_attn.out_proj", "self_attn.out_proj", "fc2",
                  q="self_attn.q_proj", k="self_attn.k_proj", v="self_attn.v_proj", up="fc1", down="fc2"),
    "bloom": replace(_GPT, attn_add="self_attention.dense", head_in="self_attention.dense",
                     mlp_add="mlp.dense_4h_to_h", qkv="self_attention.query_key_value", qkv_split="per_head", **_4H),
    "falcon": replace(_GPT, attn_add="self_attention.dense", head_in="self_attention.dense",
                      qkv="self_attention.query_key_value", qkv_split="grouped", parallel=True, **_4H),
    "mpt": Paths("transformer.blocks", "transformer.norm_f", "attn.out_proj", "attn.out_proj", "ffn.down_proj",
                 qkv="attn.Wqkv", qkv_split="thirds", up="ffn.up_proj", down="ffn.down_proj"),
    "phi": Paths("model.layers", "model.final_layernorm", "self_attn.dense", "self_attn.dense", "mlp",
                 q="self_attn.q_proj", k="self_attn.k_proj", v="self_attn.v_proj", up="mlp.fc1", down="mlp.fc2",
                 parallel=True),
    "persimmon": Paths("model.layers", "model.final_layernorm", "self_attn.dense", "self_attn.dense", "mlp",
                       qkv="self_attn.query_key_value", qkv_split="per_head", **_4H),
    "gemma2": _POST_NORMED,
    "gemma3_text": _POST_NORMED,
    "olmo2": _POST_NORMED,
    "olmo3": _POST_NORMED,
    "exaone4": _POST_NORMED,
    "glm": _GATE_UP,
    "glm4": replace(_GATE_UP, attn_add="post_self_attn_layernorm", mlp_add="post_mlp_layernorm"),
    "phi3": replace(_GATE_UP, q=None, k=None, v=None, qkv="self_attn.qkv_proj", qkv_split="thirds"),
    "llama4_text": replace(_EXPERTS, mlp_add="feed_forward"),
    "mixtral": _EXPERTS,
    "qwen2_moe": _EXPERTS,
    "qwen3_moe": _EXPERTS,
    "cohere": replace(_LLAMA, parallel=True),
    "nemotron": _UNGATED,
    "apertus": _UNGATED,
    "arcee": _UNGATED,
    "starcoder2": replace(_UNGATED, up="mlp.c_fc", down="mlp.c_proj"),
}
for _type in ("llama", "qwen2", "mistral", "qwen3", "gemma", "olmo", "granite", "smollm3", "helium", "seed_oss",
              "ernie4_5", "hunyuan_v1_dense", "stablelm"):
    PATHS[_type] = _LLAMA
# the variants of tests._support.architectures: other configurations of the same modules
PATHS.update({
    "falcon-multi_query": PATHS["falcon"],
    "falcon-alibi": replace(PATHS["falcon"], parallel=False),   # parallel_attn=False
    "gpt_neox-sequential": replace(PATHS["gpt_neox"], parallel=False),
    "stablelm-parallel": replace(_LLAMA, parallel=True),
    "opt-post_norm": PATHS["opt"],
})


def _first(output):
    return output[0] if isinstance(output, tuple) else output


def _as_rows(x: torch.Tensor, pos: int) -> torch.Tensor:
    """``[1, pos, d]`` of one example's activation (OPT's and Llama-4's MLPs run on ``[pos, d]``)."""
    return x.reshape(1, pos, x.shape[-1]) if x.dim() == 2 else x


@contextlib.contextmanager
def hooks(edits: Sequence[tuple[torch.nn.Module, str, Edit]]) -> Iterator[None]:
    """Install raw hooks: ``(module, "output" | "input", fn)``; `fn` maps the output's (or the first
    input's) tensor to its replacement. Removed when the block ends."""
    handles = []
    try:
        for module, kind, fn in edits:
            if kind == "output":
                def out_hook(mod, args, output, fn=fn):
                    if isinstance(output, tuple):
                        return (fn(output[0]),) + tuple(output[1:])
                    return fn(output)
                handles.append(module.register_forward_hook(out_hook))
            else:
                def in_hook(mod, args, kwargs, fn=fn):
                    if args:
                        return (fn(args[0]),) + tuple(args[1:]), kwargs
                    return args, {**kwargs, "hidden_states": fn(kwargs["hidden_states"])}
                handles.append(module.register_forward_pre_hook(in_hook, with_kwargs=True))
        yield
    finally:
        for handle in reversed(handles):
            handle.remove()


def _blocks(model: torch.nn.Module, paths: Paths) -> torch.nn.ModuleList:
    return model.get_submodule(paths.blocks)


@torch.no_grad()
def run(model: torch.nn.Module, ids: Sequence[int], edits: Sequence[tuple[torch.nn.Module, str, Edit]] = (),
        *, hidden: bool = False):
    """One full forward of one example (no padding, no cache) under `edits`: logits ``[pos, vocab]``
    (float32), and with `hidden` the model's ``output_hidden_states``."""
    x = torch.as_tensor([list(ids)])
    with hooks(edits):
        out = model(input_ids=x, attention_mask=torch.ones_like(x), use_cache=False, output_hidden_states=hidden)
    logits = out.logits[0].float()
    return (logits, [h[0] for h in out.hidden_states]) if hidden else logits


@dataclass
class Trace:
    """One example's activations, each ``[pos, d]`` per block (``heads``: ``[pos, n_heads * d_head]``)."""

    logits: torch.Tensor
    hidden_states: list[torch.Tensor]
    block_in: list[torch.Tensor]
    block_out: list[torch.Tensor]
    attn: list[torch.Tensor]
    mlp: list[torch.Tensor]
    heads: list[torch.Tensor]


def _keeper(got: dict, pos: int) -> Callable[[tuple[str, int]], Edit]:
    """``keep(key)``: a raw-hook edit that stores the one example's ``[pos, d]`` activation under
    `key` in `got` and changes nothing."""
    def keep(key: tuple[str, int]) -> Edit:
        def fn(t: torch.Tensor) -> torch.Tensor:
            got[key] = _as_rows(t.detach().clone(), pos)[0]
            return t
        return fn
    return keep


def trace(model: torch.nn.Module, paths: Paths, ids: Sequence[int]) -> Trace:
    """Every block's input and output, attention's and the MLP's additions and the heads, read by
    raw hooks that change nothing, in one forward of one example."""
    pos = len(ids)
    got: dict[tuple[str, int], torch.Tensor] = {}
    keep = _keeper(got, pos)

    edits = []
    for i, block in enumerate(_blocks(model, paths)):
        edits += [(block, "input", keep(("in", i))), (block, "output", keep(("out", i))),
                  (block.get_submodule(paths.attn_add), "output", keep(("attn", i))),
                  (block.get_submodule(paths.mlp_add), "output", keep(("mlp", i))),
                  (block.get_submodule(paths.head_in), "input", keep(("heads", i)))]
    logits, hidden = run(model, ids, edits, hidden=True)
    n = len(_blocks(model, paths))
    return Trace(logits, hidden, *[[got[(k, i)] for i in range(n)] for k in ("in", "out", "attn", "mlp", "heads")])


def steered(model: torch.nn.Module, paths: Paths, ids: Sequence[int], *, block: int, vector: torch.Tensor,
            alpha: float) -> torch.Tensor:
    """Logits ``[pos, vocab]`` with ``alpha * vector`` added to the output of block `block` (0-based)
    at every position."""
    module = _blocks(model, paths)[block]
    return run(model, ids, [(module, "output", lambda t: t + alpha * vector.to(t.dtype))])


def patched_resid(model: torch.nn.Module, paths: Paths, corrupt: Sequence[int], clean_in: torch.Tensor, *,
                  block: int, pos: int) -> torch.Tensor:
    """Logits of the corrupt run with the input of block `block` at position `pos` set to the clean
    run's (`clean_in` ``[pos, d]``, that block's input in the clean run)."""
    def fn(t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        t[0, pos] = clean_in[pos]
        return t

    return run(model, corrupt, [(_blocks(model, paths)[block], "input", fn)])


def patched_head(model: torch.nn.Module, paths: Paths, corrupt: Sequence[int], clean_heads: torch.Tensor, *,
                 block: int, head: int, d_head: int) -> torch.Tensor:
    """Logits of the corrupt run with head `head` of block `block` (its columns of the output
    projection's input) set to the clean run's at every position."""
    cols = slice(head * d_head, (head + 1) * d_head)

    def fn(t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        t[0, :, cols] = clean_heads[:, cols]
        return t

    return run(model, corrupt, [(_blocks(model, paths)[block].get_submodule(paths.head_in), "input", fn)])


def lens(model: torch.nn.Module, paths: Paths, ids: Sequence[int], residual: torch.Tensor) -> torch.Tensor:
    """The model's own logits ``[pos, vocab]`` when its final norm reads `residual` (``[pos, d]``)
    instead of the last block's output: the logit lens without knowing how logits are made."""
    return run(model, ids, [(model.get_submodule(paths.final_norm), "input", lambda t: residual[None].to(t.dtype))])


def greedy(model: torch.nn.Module, paths: Paths, ids: Sequence[int], *, steps: int, eos: int, block: int,
           vector: torch.Tensor, alpha: float) -> tuple[list[int], torch.Tensor]:
    """Greedy continuation without a cache (the whole sequence recomputed each step), steered by
    ``alpha * vector`` on block `block`'s output: the new ids (the end-of-sequence token included,
    then stopped) and the next-token logits each was the argmax of ``[len(ids), vocab]``."""
    seq, new, rows = list(ids), [], []
    for _ in range(steps):
        logits = steered(model, paths, seq, block=block, vector=vector, alpha=alpha)[-1]
        token = int(logits.argmax())
        new.append(token)
        rows.append(logits)
        seq.append(token)
        if token == eos:
            break
    return new, torch.stack(rows)


def _split_qkv(x: torch.Tensor, split: str, n_heads: int, n_kv: int) -> tuple[torch.Tensor, ...]:
    """q ``[pos, heads * d]``, k and v ``[pos, kv heads * d]`` out of a fused projection's output
    ``[pos, (heads + 2 * kv heads) * d]``, as the modelling code splits it."""
    pos, width = x.shape
    if split == "per_head":  # no grouped-query attention in these layouts
        d = width // (3 * n_heads)
        x = x.view(pos, n_heads, 3, d)
        return tuple(x[:, :, j].reshape(pos, n_heads * d) for j in range(3))
    d = width // (n_heads + 2 * n_kv)
    if split == "thirds":
        return x[:, :n_heads * d], x[:, n_heads * d:(n_heads + n_kv) * d], x[:, (n_heads + n_kv) * d:]
    if split == "grouped":
        group = n_heads // n_kv
        x = x.view(pos, n_kv, group + 2, d)
        return (x[:, :, :group].reshape(pos, n_heads * d), x[:, :, group].reshape(pos, n_kv * d),
                x[:, :, group + 1].reshape(pos, n_kv * d))
    raise ValueError(f"unknown qkv split {split!r}")


def finer(model: torch.nn.Module, paths: Paths, ids: Sequence[int]) -> dict[str, list[torch.Tensor]]:
    """The finer activations of one example, per block (``[pos, width]``), only those the type has:
    ``resid_mid`` (the residual after attention: block input + attention's addition times
    ``config.residual_multiplier`` where the config has one), ``mlp_pre`` (the gate projection's
    output of a gated MLP, else the up projection's), ``mlp_pre_linear`` (a gated MLP's up
    projection), ``mlp_post`` (the down projection's input), ``attn.q``/``attn.k``/``attn.v``
    (before any rotary)."""
    pos, config = len(ids), model.config
    n_heads = int(config.num_attention_heads)
    n_kv = int(getattr(config, "num_key_value_heads", None) or n_heads)
    got: dict[tuple[str, int], torch.Tensor] = {}
    keep = _keeper(got, pos)

    edits = []
    blocks = _blocks(model, paths)
    for i, block in enumerate(blocks):
        edits += [(block, "input", keep(("in", i))), (block.get_submodule(paths.attn_add), "output", keep(("attn", i)))]
        for name in ("q", "k", "v", "qkv", "up", "gate", "gate_up"):
            if getattr(paths, name):
                edits.append((block.get_submodule(getattr(paths, name)), "output", keep((name, i))))
        if paths.down:
            edits.append((block.get_submodule(paths.down), "input", keep(("down", i))))
    run(model, ids, edits)
    multiplier = float(getattr(config, "residual_multiplier", 1.0))
    out: dict[str, list[torch.Tensor]] = {}
    for i in range(len(blocks)):
        acts: dict[str, torch.Tensor] = {}
        if not paths.parallel:
            acts["resid_mid"] = got[("in", i)] + got[("attn", i)] * multiplier
        if paths.qkv:
            acts["attn.q"], acts["attn.k"], acts["attn.v"] = _split_qkv(got[("qkv", i)], paths.qkv_split, n_heads, n_kv)
        elif paths.q:
            acts.update({f"attn.{n}": got[(n, i)] for n in "qkv"})
        if paths.gate_up:
            gate, up = got[("gate_up", i)].chunk(2, dim=-1)
            acts["mlp_pre"], acts["mlp_pre_linear"] = gate, up
        elif paths.gate:
            acts["mlp_pre"], acts["mlp_pre_linear"] = got[("gate", i)], got[("up", i)]
        elif paths.up:
            acts["mlp_pre"] = got[("up", i)]
        if paths.down:
            acts["mlp_post"] = got[("down", i)]
        for name, value in acts.items():
            out.setdefault(name, []).append(value)
    return out


def patched_output(model: torch.nn.Module, paths: Paths, corrupt: Sequence[int], clean_act: torch.Tensor, *,
                   block: int, module: str, positions: Sequence[int]) -> torch.Tensor:
    """Logits of the corrupt run with the output of `module` (``paths.attn_add`` or
    ``paths.mlp_add``) of block `block` set to the clean run's (`clean_act` ``[pos, d]``) at `positions`."""
    pos = len(corrupt)

    def fn(t: torch.Tensor) -> torch.Tensor:
        rows = _as_rows(t, pos).clone()
        rows[0, list(positions)] = clean_act[list(positions)]
        return rows.reshape(t.shape)

    return run(model, corrupt, [(_blocks(model, paths)[block].get_submodule(getattr(paths, module)), "output", fn)])


@torch.no_grad()
def attention_pattern(model: torch.nn.Module, ids: Sequence[int]) -> torch.Tensor:
    """Every block's attention weights of one example, ``[blocks, heads, pos, pos]``, as the model
    returns them (``output_attentions``) under the ``eager`` implementation (switched to for the
    call and back after it)."""
    before = model.config._attn_implementation
    x = torch.as_tensor([list(ids)])
    try:
        model.set_attn_implementation("eager")
        out = model(input_ids=x, attention_mask=torch.ones_like(x), use_cache=False, output_attentions=True)
    finally:
        model.set_attn_implementation(before)
    return torch.stack([a[0] for a in out.attentions]).float()


def _value_delta(width: int, vector: torch.Tensor, split: str, n_heads: int, n_kv: int) -> torch.Tensor:
    """A fused projection's output columns ``[width]``: `vector` (the values, ``[kv heads * d]``) where
    the modelling code reads the values, 0 elsewhere."""
    delta = torch.zeros(width)
    if split == "per_head":
        delta.view(n_heads, 3, -1)[:, 2] = vector.view(n_heads, -1)
    elif split == "thirds":
        delta[width - vector.numel():] = vector
    elif split == "grouped":
        group = n_heads // n_kv
        delta.view(n_kv, group + 2, -1)[:, group + 1] = vector.view(n_kv, -1)
    else:
        raise ValueError(f"unknown qkv split {split!r}")
    return delta


def edited(model: torch.nn.Module, paths: Paths, ids: Sequence[int], *, block: int, point: str,
           vector: torch.Tensor) -> torch.Tensor:
    """Logits ``[pos, vocab]`` with `vector` added at every position to block `block`'s values
    (``point="attn.v"``: the value projection's output, or the value columns of a fused projection)
    or MLP post-activation (``point="mlp_post"``: the down projection's input)."""
    module = _blocks(model, paths)[block]
    if point == "mlp_post":
        return run(model, ids, [(module.get_submodule(paths.down), "input", lambda t: t + vector.to(t.dtype))])
    if point != "attn.v":
        raise ValueError(f"`point` must be 'attn.v' or 'mlp_post', got {point!r}")
    if paths.v:
        return run(model, ids, [(module.get_submodule(paths.v), "output", lambda t: t + vector.to(t.dtype))])
    fused = module.get_submodule(paths.qkv)
    n_heads = int(model.config.num_attention_heads)
    n_kv = int(getattr(model.config, "num_key_value_heads", None) or n_heads)

    def add(t: torch.Tensor) -> torch.Tensor:
        return t + _value_delta(t.shape[-1], vector, paths.qkv_split, n_heads, n_kv).to(t.dtype)

    return run(model, ids, [(fused, "output", add)])
