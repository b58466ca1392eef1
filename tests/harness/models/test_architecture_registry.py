"""The architecture table's registry: register_architecture, architectures(), entry points."""

from __future__ import annotations

import importlib.metadata
from dataclasses import replace

import pytest

from harness.errors import SiteError
from harness.models import architectures as arch
from harness.models.architectures import Layout, LogitRule, StackLayout, architectures, register_architecture

_LLAMA_STACK = StackLayout("blocks", "model.layers", "model.norm", attn_out="self_attn.o_proj",
                           head_in="self_attn.o_proj", mlp_out="mlp")
PLUGIN_LAYOUT = Layout(architecture="plugged", stacks=(_LLAMA_STACK,), n_heads_attr="num_attention_heads",
                       head_dim_attr="head_dim", positions="rotary", suffix_replay="keywords")


def plugin_entries() -> dict[str, Layout]:
    return {"plugged_a": PLUGIN_LAYOUT, "plugged_b": PLUGIN_LAYOUT}


def gpt2_again() -> dict[str, Layout]:
    return {"gpt2": PLUGIN_LAYOUT}


@pytest.fixture
def registry(monkeypatch):
    """The registry as loaded, restored after the test."""
    architectures()
    monkeypatch.setattr(arch, "_REGISTRY", dict(arch._REGISTRY))
    monkeypatch.setattr(arch, "_SOURCES", dict(arch._SOURCES))
    return arch


def test_the_built_in_entries_are_registered():
    table = architectures()
    assert {"t5", "gpt2", "llama", "qwen2", "gemma2"} <= set(table)
    assert table["qwen2"] is table["llama"]
    assert list(table) == sorted(table)


def test_a_registered_architecture_is_the_layout_of_its_models(registry):
    import transformers as tf

    register_architecture("mistral", replace(PLUGIN_LAYOUT, architecture="mistral"), replace=True)
    config = tf.MistralConfig(vocab_size=64, hidden_size=32, intermediate_size=32, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2)
    assert arch.layout_for(tf.MistralForCausalLM(config)).architecture == "mistral"
    assert architectures()["mistral"].architecture == "mistral"


def test_an_unregistered_model_type_names_the_registration_function():
    import transformers as tf

    config = tf.OPTConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                          ffn_dim=16, word_embed_proj_dim=16)
    config.model_type = "opt_unregistered"
    with pytest.raises(SiteError, match=r"'opt_unregistered' has no entry in the architecture table; supported "
                                        r"are \[.*'gpt2'.*\]\. .*register_architecture\('opt_unregistered', Layout"):
        arch.layout_for(tf.OPTForCausalLM(config))


def test_registering_a_model_type_twice_needs_replace(registry):
    register_architecture("plugged_twice", PLUGIN_LAYOUT)
    with pytest.raises(SiteError, match=r"model type 'plugged_twice' is already registered \(from "
                                        r"register_architecture\); pass replace=True"):
        register_architecture("plugged_twice", PLUGIN_LAYOUT)
    other = replace(PLUGIN_LAYOUT, architecture="other")
    register_architecture("plugged_twice", other, replace=True)
    assert architectures()["plugged_twice"] is other


def test_a_built_in_entry_is_not_replaced_by_accident(registry):
    with pytest.raises(SiteError, match=r"'gpt2' is already registered \(from harness\.models\.architectures\)"):
        register_architecture("gpt2", PLUGIN_LAYOUT)


@pytest.mark.parametrize("bad", ["", "Mistral", "my model", None, 3])
def test_a_bad_model_type_is_refused(registry, bad):
    with pytest.raises(SiteError, match=r"`model_type` must be a Hugging Face model type .* got "):
        register_architecture(bad, PLUGIN_LAYOUT)


def test_a_layout_that_is_no_layout_is_refused(registry):
    with pytest.raises(SiteError, match=r"`layout` for model type 'plugged' must be a "
                                        r"harness\.models\.architectures\.Layout, got dict"):
        register_architecture("plugged", {"blocks": "model.layers"})


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"positions": "sinusoidal"}, r"`positions` must be one of \['absolute', 'rotary', 'alibi', 'relative'\], "
                                  r"got 'sinusoidal'"),
    ({"suffix_replay": "yes"}, r"`suffix_replay` must be one of \['keywords', 'positional'\] or None, got 'yes'"),
    ({"stacks": ()}, r"`stacks` must be a non-empty tuple of StackLayout"),
    ({"logits": "scale"}, r"`logits` must be a LogitRule, got 'scale'"),
    ({"batch_heads_args": "alibi"}, r"`batch_heads_args` must be a tuple of argument names"),
    ({"parallel": True, "stacks": (replace(_LLAMA_STACK, resid_mid="post_attention_layernorm"),)},
     r"`parallel=True` has no `resid_mid`"),
])
def test_a_malformed_layout_is_refused_when_built(kwargs, message):
    with pytest.raises(SiteError, match=message):
        replace(PLUGIN_LAYOUT, **kwargs)


def test_a_fused_projection_needs_its_layout():
    with pytest.raises(SiteError, match=r"`qkv` and `qkv_layout` go together; got qkv='attn.c_attn', "
                                        r"qkv_layout=None"):
        replace(_LLAMA_STACK, qkv="attn.c_attn")
    with pytest.raises(SiteError, match=r"`qkv_layout` must be one of \['thirds', 'per_head', 'grouped'\], "
                                        r"got 'mixed'"):
        replace(_LLAMA_STACK, qkv="attn.c_attn", qkv_layout="mixed")
    with pytest.raises(SiteError, match=r"StackLayout `q` must be a non-empty module path"):
        replace(_LLAMA_STACK, q="")


def _with_entry_points(monkeypatch, *points: importlib.metadata.EntryPoint) -> None:
    monkeypatch.setattr(arch, "_REGISTRY", {})
    monkeypatch.setattr(arch, "_SOURCES", {})
    monkeypatch.setattr(arch, "_LOADED", False)
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group: [p for p in points if p.group == group])


def test_entry_points_register_a_layout_or_a_callable_of_layouts(monkeypatch):
    here = __name__
    _with_entry_points(
        monkeypatch,
        importlib.metadata.EntryPoint("plugged", f"{here}:PLUGIN_LAYOUT", arch.ENTRY_POINT_GROUP),
        importlib.metadata.EntryPoint("several", f"{here}:plugin_entries", arch.ENTRY_POINT_GROUP),
        importlib.metadata.EntryPoint("other", f"{here}:PLUGIN_LAYOUT", "some.other.group"),
    )
    table = architectures()
    assert {"plugged", "plugged_a", "plugged_b", "gpt2"} <= set(table)
    assert "other" not in table
    assert table["plugged_a"] is PLUGIN_LAYOUT


def test_a_broken_entry_point_is_named(monkeypatch):
    _with_entry_points(monkeypatch, importlib.metadata.EntryPoint(
        "broken", "tests.no_such_module:X", arch.ENTRY_POINT_GROUP))
    with pytest.raises(SiteError, match=r"could not load entry point 'broken' \(tests\.no_such_module:X\) of "
                                        r"group 'interp_claims\.architectures': ModuleNotFoundError"):
        architectures()


def test_an_entry_point_that_is_no_layout_is_named(monkeypatch):
    _with_entry_points(monkeypatch, importlib.metadata.EntryPoint(
        "wrong", f"{__name__}:_LLAMA_STACK", arch.ENTRY_POINT_GROUP))
    with pytest.raises(SiteError, match=r"entry point 'wrong' .* must load to a Layout or a callable returning "
                                        r"\{model_type: Layout\}, got StackLayout"):
        architectures()


def test_an_entry_point_may_not_silently_replace_a_built_in(monkeypatch):
    _with_entry_points(monkeypatch, importlib.metadata.EntryPoint(
        "again", f"{__name__}:gpt2_again", arch.ENTRY_POINT_GROUP))
    with pytest.raises(SiteError, match=r"'gpt2' is already registered \(from harness\.models\.architectures\)"):
        architectures()


def test_the_logit_rule_describes_itself():
    assert LogitRule().describe() == "output embedding"
    assert LogitRule(scale="logit_scale", softcap="final_logit_softcapping").describe() == \
        "output embedding, * logit_scale, softcap final_logit_softcapping"


# ----------------------------------------------------------------------------- the README


def _readme() -> str:
    from pathlib import Path

    return (Path(__file__).resolve().parents[3] / "README.md").read_text()


def test_the_readme_table_is_the_registrys():
    text = _readme()
    assert arch.readme_with_table(text) == text, \
        "the README's architecture table is out of date: run `python -m harness.models.architectures README.md`"
    for model_type in ("t5", "gpt2", "llama", "qwen2", "gemma2"):
        assert f"| `{model_type}` |" in text


def test_the_readme_table_needs_its_markers():
    with pytest.raises(SiteError, match=r"the README must hold the lines"):
        arch.readme_with_table("# no table here\n")


def test_the_readmes_registration_example_registers_a_model_type_that_loads(registry):
    """The README's worked example, run as printed, then a model of that type loads and its
    logits pass the load-time check (a Granite model under the example's model type)."""
    import re

    import transformers as tf

    from harness.models.load import from_module

    text = _readme()
    section = text[text.index("## Architectures"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})
    assert architectures()["my_decoder"].logits == LogitRule(divide="logits_scaling")
    config = tf.GraniteConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, logits_scaling=8.0)
    module = tf.GraniteForCausalLM(config)
    module.config.model_type = "my_decoder"
    model = from_module(module, tf.ByT5Tokenizer(), name="my_decoder")
    assert model.layout.architecture == "my_decoder"


@pytest.mark.parametrize(("gated", "pre", "gate"), [(True, "wi_1", "wi_0"), (False, "wi", None)])
def test_a_model_types_variants_get_their_own_layout(gated, pre, gate):
    """T5's entry picks the gated or plain MLP's modules by config (`Layout.per_config`)."""
    import transformers as tf

    config = tf.T5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=24, num_layers=1, num_heads=2,
                         feed_forward_proj="gated-gelu" if gated else "relu", decoder_start_token_id=0)
    layout = arch.layout_for(tf.T5ForConditionalGeneration(config))
    assert layout.stack("encoder").mlp_pre == f"layer.1.DenseReluDense.{pre}"
    assert layout.stack("decoder").mlp_gate == (f"layer.2.DenseReluDense.{gate}" if gate else None)


def test_a_per_config_choice_that_is_no_layout_is_an_error():
    odd = replace(PLUGIN_LAYOUT, per_config=lambda config: "llama")
    with pytest.raises(SiteError, match=r"`per_config` of Layout 'plugged' must return a Layout, got 'llama'"):
        odd.for_config(object())
