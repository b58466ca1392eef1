"""The architecture table: one declarative entry per Hugging Face ``model_type``.

    StackLayout     where one stack's blocks, final norm and per-block points live
    LogitRule       how the final norm's output becomes the model's logits
    Layout          everything that differs between architectures: the stacks, config attribute
                    names, the position scheme, parallel blocks, windows, the logit rule, and
                    how (and whether) a patching map may replay only a suffix of the positions
    register_architecture(model_type, layout, *, replace=False)
                    add an entry (a user's own architecture) without editing the library
    architectures() model_type -> Layout: the built-in entries, the ``interp_claims.architectures``
                    entry points of installed packages, and the registered ones
    layout_for      the Layout of a loaded Hugging Face model, or a clear error
    markdown_table  a Markdown table of architectures; `readme_with_table` puts the built-in
                    entries' table into the README (``python -m harness.models.architectures README.md``)
    resolve_hook    Site -> (module, "input"|"output", head slice) on a concrete model

Paths inside a block are relative to the block module. "attn_out" names the module whose
output is what attention adds to the residual (for Gemma-2 that is the post-attention norm,
not o_proj); "head_in" the module whose *input* is the concatenation of the heads.

Nothing outside this table asks which architecture a model is: code that needs to know reads a
field of the model's `Layout`. The built-in entries are t5, gpt2, llama, qwen2 and gemma2 here
and the others in `harness.models.layouts`; packages add theirs through the entry-point group
``interp_claims.architectures`` (each entry point loads to a `Layout`, registered under the
entry point's name, or to a callable returning ``{model_type: Layout}``), loaded once, on the
table's first use.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping

import torch

from harness.errors import SiteError
# where each site lives on a concrete model, and the model's site table; re-exported here, their historical home
from harness.models.site_hooks import Hook, resolve_hook  # noqa: F401
from harness.models.site_table import site_table  # noqa: F401

__all__ = ["StackLayout", "LogitRule", "Layout", "register_architecture", "architectures", "layout_for",
           "markdown_table", "readme_with_table", "resolve_hook", "site_table", "Hook", "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "interp_claims.architectures"

_QKV_LAYOUTS = ("thirds", "per_head", "grouped")
_POSITIONS = ("absolute", "rotary", "alibi", "relative")
_SUFFIX_CALLS = ("keywords", "positional")


@dataclass(frozen=True)
class StackLayout:
    """The module paths of one stack: ``blocks`` (the block list) and ``final_norm`` from the
    model's root, every other path relative to one block. Optional paths are None where the
    architecture has no such module.

    attn            the self-attention module (``self_attn``, ``attn``, ``attention``, ...)
    q, k, v         modules whose output is the queries ``[batch, pos, n_heads * d_head]`` /
                    keys and values ``[batch, pos, n_kv_heads * d_head]``, before any rotary
    qkv, qkv_layout a fused projection whose output holds q, k and v, laid out "thirds"
                    ([q | k | v]), "per_head" ([h0 q,k,v | h1 q,k,v | ...]) or "grouped"
    mlp_pre         the module whose output is the MLP pre-activation ``[batch, pos, d_mlp]``
                    (the up projection of a gated MLP); ``mlp_gate`` its gate projection
    mlp_post        the module whose input is the MLP post-activation ``[batch, pos, d_mlp]``
    resid_mid       the module whose input is the residual between attention and MLP (None
                    for parallel blocks)
    """

    name: str
    blocks: str
    final_norm: str
    attn_out: str
    head_in: str
    mlp_out: str
    cross_attn_out: str | None = None
    attn: str | None = None
    q: str | None = None
    k: str | None = None
    v: str | None = None
    qkv: str | None = None
    qkv_layout: str | None = None
    mlp_pre: str | None = None
    mlp_gate: str | None = None
    mlp_post: str | None = None
    resid_mid: str | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and (not isinstance(value, str) or not value):
                raise SiteError(f"StackLayout `{f.name}` must be a non-empty module path (str) or None, got {value!r}")
        if (self.qkv is None) != (self.qkv_layout is None):
            raise SiteError(f"StackLayout `qkv` and `qkv_layout` go together; got qkv={self.qkv!r}, "
                            f"qkv_layout={self.qkv_layout!r} (qkv_layout: one of {list(_QKV_LAYOUTS)})")
        if self.qkv_layout is not None and self.qkv_layout not in _QKV_LAYOUTS:
            raise SiteError(f"StackLayout `qkv_layout` must be one of {list(_QKV_LAYOUTS)}, got {self.qkv_layout!r}")


@dataclass(frozen=True)
class LogitRule:
    """How the final norm's output ``[..., d_model]`` becomes the logits ``[..., vocab]``, as the
    model's own forward computes them, each step named by a config attribute (None: no such step;
    a step whose attribute is None or absent on a model's config is skipped, as the forward skips it):

        x * d_model ** -0.5          if config.<input_scale_flag> is true (T5's ``scale_decoder_outputs``)
        x = model.<project>(x)       ``project``: a module path from the root, skipped where that
                                     attribute is None (OPT's ``model.decoder.project_out``)
        logits = output_embedding(x)
        logits * config.<scale>      ``scale``   (Cohere's ``logit_scale``)
        logits / config.<divide>     ``divide``  (Granite's ``logits_scaling``)
        tanh(logits / c) * c         ``softcap`` (Gemma's ``final_logit_softcapping``)
    """

    scale: str | None = None
    divide: str | None = None
    softcap: str | None = None
    input_scale_flag: str | None = None
    project: str | None = None

    def describe(self) -> str:
        """The rule in one line, e.g. ``"output embedding, * logit_scale"``."""
        steps = [f"* d_model**-0.5 if {self.input_scale_flag}"] if self.input_scale_flag else []
        steps += [self.project] if self.project else []
        steps += ["output embedding"]
        steps += [f"* {self.scale}"] if self.scale else []
        steps += [f"/ {self.divide}"] if self.divide else []
        steps += [f"softcap {self.softcap}"] if self.softcap else []
        return ", ".join(steps)


@dataclass(frozen=True)
class Layout:
    """Everything the harness knows about one architecture.

    Example (a model type whose blocks are Llama's)::

        Layout(architecture="mymodel", positions="rotary", suffix_replay="keywords",
               n_heads_attr="num_attention_heads", head_dim_attr="head_dim",
               n_kv_heads_attr="num_key_value_heads", d_mlp_attr="intermediate_size",
               stacks=(StackLayout("blocks", "model.layers", "model.norm", attn_out="self_attn.o_proj",
                                   head_in="self_attn.o_proj", mlp_out="mlp"),))

    architecture        a label (model types that share an entry may share it)
    stacks              the stacks, the one the input tokens index first
    n_heads_attr, head_dim_attr, n_kv_heads_attr, d_mlp_attr, n_layers_attr
                        config attribute names (head_dim None: d_model // n_heads; n_kv_heads
                        None: as many as heads)
    positions           "absolute", "rotary", "alibi" or "relative"; ``rotary_fraction_attr``
                        the config attribute of the rotated fraction of each head (None: all)
    parallel            attention and MLP read the same residual (no ``resid_mid``)
    window_attr         config attribute of the sliding-window length (None: no windows; a
                        config whose ``layer_types`` are all ``full_attention`` has none either)
    logits              the `LogitRule`
    suffix_replay       how a patching map may replay only the positions from the first changed
                        one: "keywords" (blocks take hidden states and keyword arguments, their
                        keys/values from a cache argument), "positional" (GPT-2's
                        ``block(hidden, cache, attention_mask, ...)``), or None (replay all
                        positions: ALiBi, encoder-decoder, ...)
    batch_heads_args    block-call arguments laid out ``[batch * n_heads, ...]`` (BLOOM's
                        ``alibi``): a replay selects each replayed row's heads
    unbatched_args      block-call arguments without a batch dimension (MPT's ``position_bias``
                        ``[n_heads, 1, pos]``): a replay passes them on as captured
    per_config          where one model type has variants with other modules (T5's gated and
                        plain MLPs): a function of the model's config returning the Layout of
                        that variant (`Layout.for_config`); None: this Layout fits every config
    """

    architecture: str
    stacks: tuple[StackLayout, ...]
    n_heads_attr: str
    head_dim_attr: str | None  # None: d_model // n_heads
    n_kv_heads_attr: str | None = None
    d_mlp_attr: str | None = None
    positions: str = "absolute"
    rotary_fraction_attr: str | None = None
    parallel: bool = False
    window_attr: str | None = None
    logits: LogitRule = field(default_factory=LogitRule)
    suffix_replay: str | None = None
    batch_heads_args: tuple[str, ...] = ()
    unbatched_args: tuple[str, ...] = ()
    per_config: Callable[[Any], Layout] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.architecture, str) or not self.architecture:
            raise SiteError(f"Layout `architecture` must be a non-empty str, got {self.architecture!r}")
        if not isinstance(self.stacks, tuple) or not self.stacks or \
                not all(isinstance(s, StackLayout) for s in self.stacks):
            raise SiteError(f"Layout `stacks` must be a non-empty tuple of StackLayout, got {self.stacks!r}")
        if self.positions not in _POSITIONS:
            raise SiteError(f"Layout `positions` must be one of {list(_POSITIONS)}, got {self.positions!r}")
        if self.suffix_replay is not None and self.suffix_replay not in _SUFFIX_CALLS:
            raise SiteError(f"Layout `suffix_replay` must be one of {list(_SUFFIX_CALLS)} or None, "
                            f"got {self.suffix_replay!r}")
        if not isinstance(self.logits, LogitRule):
            raise SiteError(f"Layout `logits` must be a LogitRule, got {self.logits!r}")
        for name in ("batch_heads_args", "unbatched_args"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
                raise SiteError(f"Layout `{name}` must be a tuple of argument names (str), got {value!r}")
        if self.parallel and any(s.resid_mid is not None for s in self.stacks):
            raise SiteError("a Layout with `parallel=True` has no `resid_mid` (attention and MLP read the same "
                            "residual); set resid_mid=None")

    def stack(self, name: str) -> StackLayout:
        for s in self.stacks:
            if s.name == name:
                return s
        raise SiteError(f"`stack` must be one of {[s.name for s in self.stacks]}, got {name!r}")

    def for_config(self, config: Any) -> Layout:
        """The Layout of a model with `config`: ``per_config(config)`` where set, else this one.

        Raises `SiteError` if ``per_config`` does not return a Layout."""
        if self.per_config is None:
            return self
        chosen = self.per_config(config)
        if not isinstance(chosen, Layout):
            raise SiteError(f"`per_config` of Layout {self.architecture!r} must return a Layout, got {chosen!r:.80}")
        return chosen

    def window(self, config: Any) -> int | None:
        """The sliding-window length (tokens) some layer of a model with `config` attends within,
        or None where every layer attends to all earlier positions."""
        if self.window_attr is None:
            return None
        window = getattr(config, self.window_attr, None)
        types = getattr(config, "layer_types", None)
        if window is None or (types and all(t == "full_attention" for t in types)):
            return None
        return int(window)


def _t5_stack(name: str, blocks: str, final_norm: str, mlp: str, *, gated: bool, cross: str | None) -> StackLayout:
    ff = f"{mlp}.DenseReluDense"
    return StackLayout(name, blocks, final_norm, attn_out="layer.0.SelfAttention.o",
                       head_in="layer.0.SelfAttention.o", mlp_out=ff, cross_attn_out=cross,
                       attn="layer.0.SelfAttention", q="layer.0.SelfAttention.q", k="layer.0.SelfAttention.k",
                       v="layer.0.SelfAttention.v", mlp_pre=f"{ff}.wi_1" if gated else f"{ff}.wi",
                       mlp_gate=f"{ff}.wi_0" if gated else None, mlp_post=f"{ff}.wo", resid_mid=mlp)


def _t5(gated: bool) -> Layout:
    """T5's entry: the MLP is gated (``wi_0`` gate, ``wi_1`` up) or plain (``wi``) by config."""
    return Layout(
        architecture="t5",
        stacks=(_t5_stack("encoder", "encoder.block", "encoder.final_layer_norm", "layer.1", gated=gated,
                          cross=None),
                _t5_stack("decoder", "decoder.block", "decoder.final_layer_norm", "layer.2", gated=gated,
                          cross="layer.1.EncDecAttention.o")),
        n_heads_attr="num_heads",
        head_dim_attr="d_kv",
        d_mlp_attr="d_ff",
        positions="relative",
        logits=LogitRule(input_scale_flag="scale_decoder_outputs"),
        per_config=_t5_variant,
    )


def _t5_variant(config: Any) -> Layout:
    return _T5_GATED if getattr(config, "is_gated_act", False) else _T5_PLAIN


_T5_GATED, _T5_PLAIN = _t5(True), _t5(False)
_T5 = _T5_GATED
_GPT2 = Layout(
    architecture="gpt2",
    stacks=(StackLayout("blocks", "transformer.h", "transformer.ln_f",
                        attn_out="attn.c_proj", head_in="attn.c_proj", mlp_out="mlp",
                        attn="attn", qkv="attn.c_attn", qkv_layout="thirds",
                        mlp_pre="mlp.c_fc", mlp_post="mlp.c_proj", resid_mid="ln_2"),),
    n_heads_attr="n_head",
    head_dim_attr=None,
    d_mlp_attr="n_inner",
    positions="absolute",
    suffix_replay="positional",
)
_LLAMA = Layout(
    architecture="llama",
    stacks=(StackLayout("blocks", "model.layers", "model.norm",
                        attn_out="self_attn.o_proj", head_in="self_attn.o_proj", mlp_out="mlp",
                        attn="self_attn", q="self_attn.q_proj", k="self_attn.k_proj", v="self_attn.v_proj",
                        mlp_pre="mlp.up_proj", mlp_gate="mlp.gate_proj", mlp_post="mlp.down_proj",
                        resid_mid="post_attention_layernorm"),),
    n_heads_attr="num_attention_heads",
    head_dim_attr="head_dim",
    n_kv_heads_attr="num_key_value_heads",
    d_mlp_attr="intermediate_size",
    positions="rotary",
    window_attr="sliding_window",
    suffix_replay="keywords",
)
_GEMMA2 = Layout(
    architecture="gemma2",
    stacks=(StackLayout("blocks", "model.layers", "model.norm",
                        attn_out="post_attention_layernorm", head_in="self_attn.o_proj",
                        mlp_out="post_feedforward_layernorm",
                        attn="self_attn", q="self_attn.q_proj", k="self_attn.k_proj", v="self_attn.v_proj",
                        mlp_pre="mlp.up_proj", mlp_gate="mlp.gate_proj", mlp_post="mlp.down_proj",
                        resid_mid="pre_feedforward_layernorm"),),
    n_heads_attr="num_attention_heads",
    head_dim_attr="head_dim",
    n_kv_heads_attr="num_key_value_heads",
    d_mlp_attr="intermediate_size",
    positions="rotary",
    window_attr="sliding_window",
    logits=LogitRule(softcap="final_logit_softcapping"),
)

# The entries this module defines itself; the registry (`architectures()`) holds these, the
# entries of `harness.models.layouts`, those of installed packages and the registered ones.
LAYOUTS: dict[str, Layout] = {
    "t5": _T5,
    "gpt2": _GPT2,
    "llama": _LLAMA,
    "qwen2": _LLAMA,
    "gemma2": _GEMMA2,
}

_REGISTRY: dict[str, Layout] = {}
_SOURCES: dict[str, str] = {}  # model_type -> where its entry came from
_LOADED = False
_MODEL_TYPE = re.compile(r"[a-z0-9][a-z0-9_\-]*")


def _check_entry(model_type: Any, layout: Any) -> None:
    if not isinstance(model_type, str) or not _MODEL_TYPE.fullmatch(model_type):
        raise SiteError(f"`model_type` must be a Hugging Face model type (lowercase letters, digits, '_' or '-', "
                        f"as in config.model_type, e.g. 'mistral'), got {model_type!r}")
    if not isinstance(layout, Layout):
        raise SiteError(f"`layout` for model type {model_type!r} must be a harness.models.architectures.Layout, "
                        f"got {type(layout).__name__} ({layout!r:.80})")


def _add(model_type: str, layout: Layout, source: str, *, replace: bool) -> None:
    _check_entry(model_type, layout)
    if model_type in _REGISTRY and not replace:
        raise SiteError(f"model type {model_type!r} is already registered (from {_SOURCES[model_type]}); "
                        "pass replace=True to register_architecture to replace its entry")
    _REGISTRY[model_type] = layout
    _SOURCES[model_type] = source


def _load() -> None:
    """Fill the registry once: this module's entries, `harness.models.layouts`' (if present),
    then the ``interp_claims.architectures`` entry points of installed packages."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for model_type, (layout, source) in _builtin_entries().items():
        _add(model_type, layout, source, replace=False)
    from importlib.metadata import entry_points

    for point in entry_points(group=ENTRY_POINT_GROUP):
        where = f"entry point {point.name!r} ({point.value}) of group {ENTRY_POINT_GROUP!r}"
        try:
            loaded = point.load()
        except Exception as err:  # a broken plugin: say which, never a bare traceback deep inside
            raise SiteError(f"could not load {where}: {type(err).__name__}: {err}") from err
        entries = loaded() if callable(loaded) and not isinstance(loaded, Layout) else loaded
        if isinstance(entries, Layout):
            entries = {point.name: entries}
        if not isinstance(entries, Mapping):
            raise SiteError(f"{where} must load to a Layout or a callable returning {{model_type: Layout}}, "
                            f"got {type(entries).__name__}")
        for model_type, layout in entries.items():
            _add(model_type, layout, where, replace=False)


def _builtin_entries() -> dict[str, tuple[Layout, str]]:
    """model_type -> (Layout, the module that defines it), for the entries shipped with the harness."""
    out = {model_type: (layout, __name__) for model_type, layout in LAYOUTS.items()}
    if importlib.util.find_spec("harness.models.layouts") is not None:
        from harness.models import layouts

        for model_type, layout in layouts.LAYOUTS.items():
            if model_type in out:
                raise SiteError(f"model type {model_type!r} has two built-in entries ({__name__} and "
                                "harness.models.layouts); keep one")
            out[model_type] = (layout, "harness.models.layouts")
    return out


def register_architecture(model_type: str, layout: Layout, *, replace: bool = False) -> None:
    """Add the table entry of Hugging Face ``config.model_type`` `model_type`, so that
    `load_model` and every measure can run models of that type.

    Example::

        register_architecture("mymodel", Layout(architecture="mymodel", ...))

    Raises `SiteError` for a `model_type` that is not a model-type string, a `layout` that is
    not a `Layout`, or a model type that already has an entry (built-in, from a package's entry
    point, or registered before) unless ``replace=True``. A model loaded before keeps the entry
    it was loaded with.
    """
    _load()
    _add(model_type, layout, "register_architecture", replace=replace)


def architectures() -> dict[str, Layout]:
    """Every registered entry, ``model_type -> Layout`` (a copy, sorted by model type)."""
    _load()
    return {k: _REGISTRY[k] for k in sorted(_REGISTRY)}


def layout_for(model: torch.nn.Module) -> Layout:
    """The `Layout` of a Hugging Face model, by its ``config.model_type``.

    Raises `SiteError` for a model type without an entry, naming `register_architecture`."""
    _load()
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in _REGISTRY:
        raise SiteError(
            f"architecture `model_type` {model_type!r} has no entry in the architecture table; supported are "
            f"{sorted(_REGISTRY)}. Describe its modules in a Layout and register it: "
            f"harness.models.architectures.register_architecture({model_type!r}, Layout(...)), or from a "
            f"package through the entry-point group {ENTRY_POINT_GROUP!r} (see the README)"
        )
    return _REGISTRY[model_type].for_config(config)


def markdown_table(entries: Mapping[str, Layout] | None = None) -> str:
    """A Markdown table of architectures, one row per model type, sorted: the architecture label,
    the position scheme, parallel blocks, the sliding-window attribute, the logit rule, and whether
    the patching maps may replay a suffix. `entries` defaults to every registered one; the
    README's table is that of the built-in entries (``python -m harness.models.architectures
    README.md`` rewrites it)."""
    if entries is None:
        entries = architectures()
    rows = ["| model type | layout | positions | parallel blocks | sliding window | logits | suffix replay |",
            "|---|---|---|---|---|---|---|"]
    for model_type in sorted(entries):
        layout = entries[model_type]
        rotary = f" ({layout.rotary_fraction_attr})" if layout.rotary_fraction_attr else ""
        window = f"`{layout.window_attr}`" if layout.window_attr else "-"
        rows.append(f"| `{model_type}` | {layout.architecture} | {layout.positions}{rotary} | "
                    f"{'yes' if layout.parallel else 'no'} | {window} | {layout.logits.describe()} | "
                    f"{layout.suffix_replay or 'no: full replay'} |")
    return "\n".join(rows) + "\n"


README_BEGIN = "<!-- architectures table: generated by harness.models.architectures.markdown_table -->"
README_END = "<!-- end of the architectures table -->"


def readme_with_table(text: str) -> str:
    """`text` (the README) with the block between `README_BEGIN` and `README_END` replaced by the
    built-in entries' `markdown_table`. Raises `SiteError` if the markers are missing."""
    if README_BEGIN not in text or README_END not in text:
        raise SiteError(f"the README must hold the lines {README_BEGIN!r} and {README_END!r} around the table")
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    table = markdown_table({k: layout for k, (layout, _) in _builtin_entries().items()})
    return f"{head}{README_BEGIN}\n{table}{README_END}{tail}"


if __name__ == "__main__":  # python -m harness.models.architectures README.md: rewrite the README's table
    import sys
    from pathlib import Path

    for name in sys.argv[1:]:
        path = Path(name)
        path.write_text(readme_with_table(path.read_text()))
