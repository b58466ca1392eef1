"""The variable-tracing study can fail, and it runs on the real setting's path.

* On the null twin (`fixture:tracer-null`, the same Qwen2 untrained) the accuracy claims are
  measured and fail, and the model does not meet the source's selection rule: every claim built
  on pairs is skipped with the rule's message (how far below the bar the model is), never passed.
* The real setting (``--claims-model tracer=<a Qwen2 folder>``) on a random-weight Qwen2 of 24
  blocks saved locally, whose config names ``Qwen/Qwen2.5-0.5B-Instruct`` (so the run takes that
  threshold row) and whose tokenizer splits numbers into digits as Qwen's does: the model and
  its tokenizer load, the programs are tokenized and answered in its own tokens (multi-token
  answers), and every claim built on pairs is skipped with the message that the model does not
  meet the source's selection rule. No download.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests._support.recipes import by_kind, load_recipe, run_study_on

from harness.models.fixtures import resolve
from harness.models.load import fingerprint, load_model

ACCURACY = ("test_accuracy_by_program_length",)
DEPENDENT = ("test_at_the_last_block_only_the_final_position_carries_the_answer",
             "test_the_effect_moves_to_the_final_position_inside_the_stack",
             "test_steps_that_read_the_changed_variable_carry_it", "test_the_top_head_beats_random_heads",
             "test_noise_on_the_changed_step_corrupts_the_answer", "test_tracing_and_patching_agree_on_where_the_effect_lives",
             "test_a_random_position_recovers_about_nothing", "test_attribution_agrees_with_patching",
             "test_the_top_cells_by_attribution_contain_the_top_cell_by_patching")

pytestmark = pytest.mark.slow


def _check_no_pairs(claims: dict, n_dependent: int, because: str) -> None:
    accuracy = by_kind(claims, ACCURACY)
    assert len(accuracy) == 9
    assert {k: v["outcome"] for k, v in accuracy.items() if v["outcome"] != "failed"} == {}
    assert all(v["evidence"] for v in accuracy.values())
    dependent = by_kind(claims, DEPENDENT)
    assert len(dependent) == n_dependent
    assert {k: v["outcome"] for k, v in dependent.items() if v["outcome"] != "skipped"} == {}
    assert all(because in v["message"] for v in dependent.values())


def test_effect_claims_fail_on_the_untrained_twin(tmp_path):
    claims = run_study_on("tracer", "fixture:tracer-null", ACCURACY + DEPENDENT, tmp_path, returncodes=(1,))
    _check_no_pairs(claims, 6 + 1 + 2 + 1 + 1 + 1 + 2 + 6 + 3, because="the model does not meet the study's selection rule")
    null, trained = load_model("fixture:tracer-null"), load_model("fixture:tracer")
    assert null.fingerprint != trained.fingerprint
    assert null.module.config.to_dict() | {"_name_or_path": ""} == trained.module.config.to_dict() | {"_name_or_path": ""}
    assert fingerprint(load_recipe("tracer").new_model(0)) == null.fingerprint
    log = json.loads((resolve("tracer-null") / "train_log.json").read_text())
    assert log["trained"] is False and log["heldout"]["accuracy"] < 0.2


def _digit_tokenizer():
    """A character-level tokenizer (every digit its own token, as Qwen's pre-tokenizer splits numbers)."""
    import transformers as tf
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = {t: i for i, t in enumerate(["<pad>", "<eos>", "<unk>", *"abcd0123456789+-*=;?"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return tf.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def _random_qwen(folder: Path) -> None:
    """A random-weight Qwen2 of 24 blocks (width 32), named Qwen/Qwen2.5-0.5B-Instruct."""
    import transformers as tf

    config = tf.Qwen2Config(vocab_size=24, hidden_size=32, intermediate_size=64, num_hidden_layers=24,
                            num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=256,
                            tie_word_embeddings=True, pad_token_id=0, eos_token_id=1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = tf.Qwen2ForCausalLM(config).eval()
    module.save_pretrained(folder)
    _digit_tokenizer().save_pretrained(folder)
    path = folder / "config.json"
    saved = json.loads(path.read_text())
    saved["_name_or_path"] = "Qwen/Qwen2.5-0.5B-Instruct"
    path.write_text(json.dumps(saved, indent=1))


def test_the_real_setting_runs_from_a_local_folder(tmp_path):
    _random_qwen(tmp_path / "qwen")
    claims = run_study_on("tracer", str(tmp_path / "qwen"), ACCURACY + DEPENDENT, tmp_path / "report",
                          returncodes=(1,))
    # the Qwen/Qwen2.5-0.5B-Instruct row, found from the folder's config: 24 blocks, middle layers 8, 12, 16
    _check_no_pairs(claims, 6 + 1 + 3 + 1 + 1 + 1 + 3 + 6 + 3, because="the model does not meet the study's selection rule")
    assert "test_a_random_position_recovers_about_nothing[layer12]" in claims
