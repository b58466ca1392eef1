"""The logit rule: `unembed` of the final norm's output equals the model's own logits (output
embedding, Cohere's logit scale, Granite's division, Gemma's soft-capping, T5's rescaling), a rule
that does not reproduce them is refused at load, and the logit lens reads through it."""

from __future__ import annotations

import pytest
import torch

from harness.errors import ModelLoadError
from harness.measures.lens import logit_lens
from harness.models import architectures as arch
from harness.models.architectures import LogitRule
from harness.models.load import from_module
from harness.models.logits import unembed
from tests._support.tiny import tiny_model
from tests.harness.models import _families

PROMPTS = ["hello world", "abc"]


@pytest.fixture
def registry(monkeypatch):
    arch.architectures()
    monkeypatch.setattr(arch, "_REGISTRY", dict(arch._REGISTRY))
    monkeypatch.setattr(arch, "_SOURCES", dict(arch._SOURCES))


def loaded(name: str, layout=None, **overrides):
    import transformers as tf

    arch.register_architecture(name, layout or _families.LAYOUTS[name], replace=True)
    return from_module(_families.module(name, **overrides), tf.ByT5Tokenizer(), name=f"tiny:{name}")


@torch.no_grad()
def own_and_rule(model, final_norm: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's own logits ``[1, pos, vocab]`` for the first prompt, and `unembed` of the final
    norm's output captured with a raw hook in the same forward."""
    ids = torch.tensor([model.tokenizer(PROMPTS[0])["input_ids"]])
    kwargs = {"decoder_input_ids": ids[:, :4]} if model.module.config.is_encoder_decoder else {}
    seen = {}

    def keep(module, args, output):
        seen["normed"] = output
    handle = model.module.get_submodule(final_norm).register_forward_hook(keep)
    try:
        own = model.module(input_ids=ids, **kwargs).logits.float()
    finally:
        handle.remove()
    return own, unembed(model, seen["normed"])


@pytest.mark.parametrize("name", ["cohere", "granite"])
def test_unembed_applies_the_models_logit_scale(registry, name):
    m = loaded(name)
    own, rule = own_and_rule(m, "model.norm")
    torch.testing.assert_close(rule, own, rtol=1e-5, atol=1e-6)
    plain = m.module.get_output_embeddings()(m.module.model.norm.weight.new_ones(1, 32)).float()
    factor = {"cohere": 0.0625, "granite": 1 / 8}[name]
    torch.testing.assert_close(unembed(m, m.module.model.norm.weight.new_ones(1, 32)), plain * factor)


@pytest.mark.parametrize(("arch_name", "final_norm"), [("gpt2", "transformer.ln_f"), ("gemma-2-2b", "model.norm"),
                                                       ("qwen2.5-0.5b", "model.norm"),
                                                       ("byt5-small", "decoder.final_layer_norm")])
def test_unembed_equals_the_fixture_layouts_own_logits(arch_name, final_norm):
    m = tiny_model(arch_name)
    own, rule = own_and_rule(m, final_norm)
    torch.testing.assert_close(rule, own, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scale", [True, False])
def test_t5s_rescaling_follows_its_config(scale):
    import transformers as tf

    config = tf.T5Config(vocab_size=384, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=2,
                         num_heads=4, decoder_start_token_id=0, tie_word_embeddings=True,
                         scale_decoder_outputs=scale)
    torch.manual_seed(0)
    m = from_module(tf.T5ForConditionalGeneration(config), tf.ByT5Tokenizer(), name="tiny-t5")
    own, rule = own_and_rule(m, "decoder.final_layer_norm")
    torch.testing.assert_close(rule, own, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("name", "ratio"), [("cohere", "0.0625"), ("granite", "0.125")])
def test_a_rule_that_misses_the_scale_is_refused_at_load(registry, name, ratio):
    from dataclasses import replace

    wrong = replace(_families.LAYOUTS[name], logits=LogitRule())
    with pytest.raises(ModelLoadError, match=rf"logit rule for model type '{name}' \(architecture '{name}': "
                                             rf"output embedding\) does not reproduce the model's own logits: "
                                             rf"max abs difference .* the model's logits are {ratio} times the "
                                             r"rule's in norm\)\. Fix the Layout's `logits`"):
        loaded(name, wrong)


def test_a_scale_the_model_does_not_apply_is_refused_too(registry):
    from dataclasses import replace

    wrong = replace(_families.LAYOUTS["mistral"], logits=LogitRule(softcap="max_position_embeddings"))
    with pytest.raises(ModelLoadError, match=r"'mistral' .*output embedding, softcap max_position_embeddings\) "
                                             r"does not reproduce"):
        loaded("mistral", wrong)


def test_the_logit_lens_at_the_last_layer_is_the_models_own_prediction(registry):
    m = loaded("cohere")
    rows = [m.tokenizer(p)["input_ids"] for p in PROMPTS]
    lens = logit_lens(m, rows, targets=[5, 6], keep_logits=True)
    with torch.no_grad():
        for i, row in enumerate(rows):
            own = m.module(input_ids=torch.tensor([row])).logits[0, -1].float()
            torch.testing.assert_close(lens.logits[i, -1], own, rtol=1e-5, atol=1e-5)


def test_a_projection_before_the_output_embedding_is_applied_and_checked(registry):
    """OPT-350m's layout: the final norm's output goes through ``project_out`` to the embedding
    width; the rule names it, and a misspelt path is an error naming it."""
    import transformers as tf
    from dataclasses import replace

    config = tf.OPTConfig(vocab_size=384, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, ffn_dim=48,
                          word_embed_proj_dim=16, do_layer_norm_before=True, pad_token_id=0)
    torch.manual_seed(0)
    module = tf.OPTForCausalLM(config).eval()
    assert module.model.decoder.project_out is not None
    stack = arch.StackLayout("blocks", "model.decoder.layers", "model.decoder.final_layer_norm",
                             attn_out="self_attn.out_proj", head_in="self_attn.out_proj", mlp_out="fc2")
    layout = arch.Layout(architecture="opt", stacks=(stack,), n_heads_attr="num_attention_heads", head_dim_attr=None,
                         logits=LogitRule(project="model.decoder.project_out"))
    arch.register_architecture("opt", layout, replace=True)
    m = from_module(module, tf.ByT5Tokenizer(), name="tiny-opt")
    own, rule = own_and_rule(m, "model.decoder.final_layer_norm")
    torch.testing.assert_close(rule, own, rtol=1e-5, atol=1e-5)
    arch.register_architecture("opt", replace(layout, logits=LogitRule()), replace=True)
    with pytest.raises(ModelLoadError, match=r"logit rule for model type 'opt' .*cannot be applied to the output of "
                                             r"final norm 'model\.decoder\.final_layer_norm' \(shape \(1, 6, 32\)\)"):
        from_module(module, tf.ByT5Tokenizer(), name="tiny-opt")
    from harness.errors import SiteError

    arch.register_architecture("opt", replace(layout, logits=LogitRule(project="model.decoder.projectout")),
                               replace=True)
    with pytest.raises(SiteError, match=r"the logit rule's `project` path 'model\.decoder\.projectout' does not "
                                        r"exist on model type 'opt'"):
        from_module(module, tf.ByT5Tokenizer(), name="tiny-opt")


def _own_last(model, ids, mask) -> torch.Tensor:
    """The model's own logits at each row's last real token, from a full forward (no harness code)."""
    with torch.no_grad():
        full = model.module(input_ids=ids, attention_mask=mask).logits.float()
    return full[torch.arange(ids.shape[0]), mask.sum(1) - 1]


@pytest.mark.parametrize("arch_name", ["gpt2", "gemma-2-2b", "qwen2.5-0.5b"])
def test_last_logits_equal_the_models_own_at_each_rows_last_token_of_a_padded_batch(arch_name):
    from harness.models.loaded import pad_rows
    from harness.models.logits import last_logits

    m = tiny_model(arch_name)
    ids, mask = pad_rows([m.tokenizer(t)["input_ids"] for t in ["hello world", "abc", "a longer prompt here"]],
                         pad_id=m.pad_id)
    with torch.no_grad():
        got = last_logits(m, ids, mask)
    assert got.shape == (3, m.module.config.vocab_size) and got.dtype == torch.float32
    torch.testing.assert_close(got, _own_last(m, ids, mask), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["cohere", "granite"])
def test_last_logits_apply_the_logit_rule(registry, name):
    from harness.models.loaded import pad_rows
    from harness.models.logits import last_logits

    m = loaded(name)
    ids, mask = pad_rows([m.tokenizer(t)["input_ids"] for t in PROMPTS], pad_id=m.pad_id)
    with torch.no_grad():
        torch.testing.assert_close(last_logits(m, ids, mask), _own_last(m, ids, mask), rtol=1e-5, atol=1e-5)


def test_stop_at_final_norm_leaves_no_hook_and_lets_other_errors_through():
    from harness.models.logits import stop_at_final_norm

    m = tiny_model("gpt2")
    norm = m.module.transformer.ln_f
    ids = torch.tensor([m.tokenizer("abc")["input_ids"]])
    reached_the_head = []
    head = m.module.get_output_embeddings().register_forward_hook(lambda *a: reached_the_head.append(1))
    try:
        with stop_at_final_norm(m) as out:
            m.module(input_ids=ids)
    finally:
        head.remove()
    assert not reached_the_head   # the forward ended at the norm, its output kept
    assert out["normed"].shape == (1, ids.shape[1], m.module.config.n_embd)
    assert not norm._forward_hooks
    block = m.module.transformer.h[0]
    handle = block.register_forward_hook(lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    try:
        with pytest.raises(RuntimeError, match="boom"), stop_at_final_norm(m) as out:
            m.module(input_ids=ids)
    finally:
        handle.remove()
    assert out == {} and not norm._forward_hooks
