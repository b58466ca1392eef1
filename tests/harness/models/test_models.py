"""Loading models, fingerprints, padding, and the loaded model's view of its sites."""

from __future__ import annotations

import pytest
import torch

from harness.errors import DataError, ModelLoadError, SiteError
from harness.models.load import fingerprint, from_module, load_model
from harness.models.loaded import LoadedModel, pad_rows
from harness.models.sites import Site
from tests._support.tiny import ARCHITECTURES, tiny_model

TEXTS = ["hello world", "hi"]


def build(arch: str, seed: int = 0) -> LoadedModel:
    """A fresh build, not the per-process cached one."""
    return tiny_model.__wrapped__(arch, seed)


def logits(m: LoadedModel, texts=TEXTS) -> torch.Tensor:
    ids, mask = pad_rows(m.tokenize(texts), pad_id=m.pad_id)
    kw = {"decoder_input_ids": torch.zeros_like(ids[:, :3])} if m.is_encoder_decoder else {}
    with torch.no_grad():
        return m.module(input_ids=ids, attention_mask=mask, **kw).logits


def save(m: LoadedModel, path) -> str:
    m.module.save_pretrained(path)
    m.tokenizer.save_pretrained(path)
    return str(path)


# --------------------------------------------------------------------------- fingerprint


def test_the_fingerprint_is_the_same_for_two_builds_with_the_same_seed():
    a, b = build("gpt2"), build("gpt2")
    assert a.fingerprint == b.fingerprint == fingerprint(a.module)
    assert len(a.fingerprint) == 64


def test_the_fingerprint_differs_between_seeds():
    assert build("gpt2", seed=1).fingerprint != tiny_model("gpt2").fingerprint


def test_the_fingerprint_changes_when_one_weight_changes():
    m = build("gpt2")
    before = fingerprint(m.module)
    with torch.no_grad():
        m.module.transformer.h[5].mlp.c_fc.weight[3, 7] += 1e-3
    assert fingerprint(m.module) != before


def test_the_fingerprint_changes_when_the_config_changes():
    m = build("gpt2")
    before = fingerprint(m.module)
    m.module.config.layer_norm_epsilon = 1e-3
    assert fingerprint(m.module) != before


def test_the_fingerprint_does_not_change_when_the_model_is_saved(tmp_path):
    m = build("gpt2")
    before = fingerprint(m.module)
    m.module.save_pretrained(tmp_path)  # sets config.architectures and config.dtype
    assert fingerprint(m.module) == before


def test_the_fingerprint_covers_zero_dimensional_buffers():
    module = torch.nn.Linear(2, 2)
    module.register_buffer("scale", torch.tensor(2.0))
    before = fingerprint(module)
    module.scale.fill_(3.0)
    assert fingerprint(module) != before


# --------------------------------------------------------------------------- load_model


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_a_saved_model_directory_loads_with_the_same_logits_and_fingerprint(arch, tmp_path):
    m = tiny_model(arch)
    loaded = load_model(save(m, tmp_path))
    assert loaded.fingerprint == m.fingerprint
    assert type(loaded.tokenizer) is type(m.tokenizer)  # transformers 5 would force Qwen2Tokenizer on qwen2
    assert torch.equal(logits(loaded), logits(m))
    assert [(s.name, s.n_layers) for s in loaded.sites.stacks] == [(s.name, s.n_layers) for s in m.sites.stacks]
    assert loaded.spec == loaded.name == str(tmp_path)


def test_a_t5_with_its_own_output_head_is_not_tied_to_the_embedding_on_reload(tmp_path):
    m = tiny_model("byt5-small")
    assert not torch.equal(m.module.lm_head.weight, m.module.shared.weight)
    loaded = load_model(save(m, tmp_path))
    assert loaded.module.lm_head.weight.data_ptr() != loaded.module.shared.weight.data_ptr()
    assert torch.equal(loaded.module.lm_head.weight, m.module.lm_head.weight)
    assert torch.equal(logits(loaded), logits(m))


def test_a_t5_whose_config_says_untied_as_on_the_hub_loads_untied_and_unscaled(tmp_path):
    import json

    m = tiny_model("byt5-small")
    path = save(m, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["tie_word_embeddings"] = False  # as google/byt5-small's config.json says
    config.pop("scale_decoder_outputs", None)
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = load_model(path)
    assert loaded.module.lm_head.weight.data_ptr() != loaded.module.shared.weight.data_ptr()
    assert torch.equal(logits(loaded), logits(m))


def test_load_model_takes_a_name_and_a_dtype(tmp_path):
    loaded = load_model(save(tiny_model("gpt2"), tmp_path), name="small", dtype=torch.float64)
    assert loaded.name == "small" and loaded.dtype == torch.float64
    assert loaded.describe() == {"name": "small", "spec": str(tmp_path), "fingerprint": loaded.fingerprint,
                                 "device": "cpu", "dtype": "float64"}


def test_a_hub_id_that_is_not_in_the_cache_says_how_to_provide_it(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelLoadError) as info:
        load_model("interp-claims-test/no-such-model")
    message = str(info.value)
    assert "model 'interp-claims-test/no-such-model' is not in the local Hugging Face cache" in message
    assert "models are loaded offline" in message
    assert "hf download interp-claims-test/no-such-model" in message
    assert "or pass a local directory" in message


@pytest.mark.parametrize("spec", ["/nonexistent/interp-claims/model", "./no-such-dir", "a/b/c"])
def test_a_directory_that_does_not_exist_is_a_load_error(spec):
    with pytest.raises(ModelLoadError, match=rf"model directory '{spec}' does not exist; pass an existing directory"):
        load_model(spec)


def test_a_directory_without_a_config_is_a_load_error(tmp_path):
    with pytest.raises(ModelLoadError, match=rf"could not load model '{tmp_path}' from directory"):
        load_model(str(tmp_path))


def test_a_directory_without_tokenizer_files_is_a_load_error(tmp_path):
    tiny_model("gpt2").module.save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match=r"has no tokenizer .* save the tokenizer next to the weights"):
        load_model(str(tmp_path))


@pytest.mark.parametrize("spec", ["", "   ", None])
def test_an_empty_spec_is_a_load_error(spec):
    with pytest.raises(ModelLoadError, match=r"`spec` must be a hub id, a directory or 'fixture:NAME'"):
        load_model(spec)  # type: ignore[arg-type]


def test_load_errors_are_os_errors():
    with pytest.raises(OSError):
        load_model("/nonexistent/interp-claims/model")


def test_from_module_puts_the_model_in_eval_mode():
    m = build("gpt2")
    m.module.train()
    assert not from_module(m.module, m.tokenizer, name="again").module.training


# --------------------------------------------------------------------------- pad_rows


def test_pad_rows_pads_on_the_right_and_masks_the_padding():
    ids, mask = pad_rows([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert ids.dtype == mask.dtype == torch.long


def test_pad_rows_of_no_rows_is_an_error():
    with pytest.raises(DataError, match=r"`rows` is empty; pass at least one tokenized example"):
        pad_rows([], pad_id=0)


def test_pad_rows_of_only_empty_rows_is_an_error():
    with pytest.raises(DataError, match=r"every row in `rows` is empty; each example needs at least one token"):
        pad_rows([[], []], pad_id=0)


def test_pad_rows_errors_are_still_value_errors():
    with pytest.raises(ValueError):
        pad_rows([], pad_id=0)


# --------------------------------------------------------------------------- LoadedModel


def test_a_site_can_be_named_by_string_by_parts_or_by_value():
    m = tiny_model("gpt2")
    assert m.site("blocks", torch.tensor(2), "mlp_out") == Site("blocks", 2, "mlp_out")
    assert m.site("blocks.2.attn.head3") == m.site("blocks", 2, "attn.head3") == Site("blocks", 2, "head", head=3)
    assert m.site("blocks", 2, "head", head=3) == m.site(Site("blocks", 2, "head", head=3))
    assert m.site("blocks", 12, "resid_post") == Site("blocks", 12, "resid_post")


def test_a_site_given_by_only_some_parts_is_an_error():
    with pytest.raises(SiteError, match=r"give either a site string, or all of `stack`, `layer` and `point`"):
        tiny_model("gpt2").site("blocks", 2)


@pytest.mark.parametrize("point", ["attn.headX", "attn.head"])
def test_a_malformed_head_point_given_by_parts_is_a_site_error(point):
    with pytest.raises(SiteError, match=rf"site 'blocks.2.{point}' has unknown point '{point}'"):
        tiny_model("gpt2").site("blocks", 2, point)


@pytest.mark.parametrize("layer", ["2", 2.0, True])
def test_a_layer_given_by_parts_must_be_an_int(layer):
    with pytest.raises(SiteError, match=r"`layer` must be an int, got "):
        tiny_model("gpt2").site("blocks", layer, "resid_post")


def test_a_site_the_model_lacks_is_an_error_naming_the_model():
    with pytest.raises(SiteError, match=r"`layer` must be in 0\.\.12 for resid_post of blocks of tiny:gpt2, got 13"):
        tiny_model("gpt2").site("blocks.13.resid_post")


def test_width_is_d_model_or_d_head_for_a_head():
    m = tiny_model("qwen2.5-0.5b")
    assert m.width(m.site("blocks.3.resid_post")) == 56
    assert m.width(m.site("blocks.3.attn.head13")) == 4


def test_the_main_stack_is_the_one_the_input_tokens_index():
    assert tiny_model("byt5-small").main_stack == "encoder"
    assert tiny_model("byt5-small").is_encoder_decoder
    assert tiny_model("gpt2").main_stack == "blocks"
    assert not tiny_model("gpt2").is_encoder_decoder


def test_hooks_are_resolved_once_per_site():
    m = tiny_model("gpt2")
    site = m.site("blocks.4.mlp_out")
    assert m.hook_for(site) is m.hook_for(site)
    assert m.hook_for(site).module is m.module.transformer.h[3].mlp


def test_tokenize_truncates_to_max_length():
    m = tiny_model("gpt2")
    assert [len(r) for r in m.tokenize(["abcdefgh", "ab"], max_length=4)] == [4, 3]


def test_tokenize_of_a_bare_string_is_an_error():
    with pytest.raises(TypeError, match=r"`texts` must be a sequence of strings, got a single str"):
        tiny_model("gpt2").tokenize("hello")  # type: ignore[arg-type]


def test_load_study_model_loads_and_records_the_model_for_the_report(tmp_path, monkeypatch):
    from harness.verdicts import evidence
    from harness.models.load import load_study_model

    monkeypatch.setenv("CLAIMS_CACHE_DIR", str(tmp_path))
    registry = evidence.open_registry()
    try:
        model = load_study_model("planted", "fixture:planted")
        (record,) = evidence.registered_models()
    finally:
        evidence.close_registry(registry)
    assert (record.name, record.spec, record.fingerprint) == ("planted", "fixture:planted", model.fingerprint)
    assert (record.device, record.dtype) == ("cpu", "float32")


def test_length_order_puts_the_longest_rows_first_and_keeps_ties_in_input_order():
    from harness.models.loaded import length_order

    rows = [[1], [1, 2, 3], [4], [1, 2], [5, 6, 7]]
    assert length_order(rows) == [1, 4, 3, 0, 2]
    assert length_order([]) == []


def test_a_qwen2_checkpoint_keeps_the_tokenizer_it_saved(tmp_path):
    """transformers 5 builds Qwen2's own tokenizer class for a qwen2 checkpoint, with Qwen2's
    pre-tokenizer (numbers split into digits), whatever tokenizer.json holds; load_model gives
    back the saved word-level tokenizer (``10`` one token), as the model was trained with."""
    import transformers as tf
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = {t: i for i, t in enumerate(["<pad>", "<eos>", "<unk>", "a", "=", ";", "?", *map(str, range(20))])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("[0-9]+|."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = tf.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    config = tf.Qwen2Config(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                            num_attention_heads=2, num_key_value_heads=1, head_dim=8)
    tf.Qwen2ForCausalLM(config).save_pretrained(tmp_path)
    fast.save_pretrained(tmp_path)
    assert tf.AutoTokenizer.from_pretrained(tmp_path)("a=10;")["input_ids"] != fast("a=10;")["input_ids"]
    model = load_model(str(tmp_path))
    assert model.tokenize(["a=10;a?"]) == [fast("a=10;a?")["input_ids"]] == [[3, 4, 17, 5, 3, 6]]
    assert model.tokenizer.decode(model.tokenize(["a=19;"])[0]) == "a=19;"
