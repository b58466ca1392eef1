"""Greedy decoding: batched by length equals one prompt at a time; exact match reads the whole
answer; bad input is a clear error; no hook stays attached."""

from __future__ import annotations

import pytest
import torch

from harness.errors import DataError
from harness.measures.generate import exact_match, greedy
from harness.interventions import Add
from tests._support.tiny import tiny_model

PROMPTS = ["the quick brown fox", "hi", "abcdefg", "xy", "another prompt"]


def hooks(m) -> list[tuple[str, int, int]]:
    return [(name, len(mod._forward_hooks), len(mod._forward_pre_hooks)) for name, mod in m.module.named_modules()]


def test_batched_greedy_equals_one_prompt_at_a_time():
    m = tiny_model("gpt2")
    batched = greedy(m, PROMPTS, max_new_tokens=6)
    assert batched == [greedy(m, [p], max_new_tokens=6)[0] for p in PROMPTS]
    assert all(isinstance(t, str) for t in batched)


def test_greedy_with_max_new_tokens_one_is_the_argmax_of_the_next_token():
    from harness.measures.scores import next_token_logits

    m = tiny_model("gpt2")
    top = next_token_logits(m, PROMPTS).argmax(-1).tolist()
    got = greedy(m, PROMPTS, max_new_tokens=1)
    assert got == [m.tokenizer.decode([t], skip_special_tokens=True) for t in top]


def test_exact_match_needs_the_whole_answer_and_then_the_end_of_sequence_token():
    m = tiny_model("gpt2")
    eos = m.tokenizer.eos_token_id
    ids = greedy(m, PROMPTS, max_new_tokens=4, _ids=True)
    answers = [m.tokenizer.decode(row[:3], skip_special_tokens=True) for row in ids]
    expected = [row[3] == eos and eos not in row[:3] for row in ids]
    assert exact_match(m, PROMPTS, answers) == expected
    # an answer of the same tokens that the model does not end there is not matched
    assert exact_match(m, PROMPTS, [a + "z" for a in answers]) == [False] * len(PROMPTS)


def test_exact_match_is_true_where_the_model_stops_after_the_answer():
    m = tiny_model("gpt2")
    eos = m.tokenizer.eos_token_id
    site = m.site("blocks.12.resid_post")
    to_eos = {site: Add(m.module.get_output_embeddings().weight[eos].detach() * 1e3, alpha=1.0)}
    assert greedy(m, PROMPTS, max_new_tokens=3, interventions=to_eos, _ids=True) == [[eos]] * len(PROMPTS)
    assert exact_match(m, PROMPTS, [""] * len(PROMPTS), interventions=to_eos) == [True] * len(PROMPTS)
    assert exact_match(m, PROMPTS, ["x"] * len(PROMPTS), interventions=to_eos) == [False] * len(PROMPTS)


def test_greedy_under_an_intervention_differs_and_leaves_no_hook():
    m = tiny_model("gpt2")
    site = m.site("blocks.6.resid_post")
    d = torch.randn(m.width(site), generator=torch.Generator().manual_seed(0)) * 50
    before = hooks(m)  # transformers may keep hooks of its own on a shared model; compare, not count
    edited = greedy(m, PROMPTS, max_new_tokens=4, interventions={site: Add(d, alpha=1.0)})
    assert edited != greedy(m, PROMPTS, max_new_tokens=4)
    assert hooks(m) == before


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"prompts": "hi"}, "`prompts` must be a list of strings, got a single str"),
    ({"prompts": ["hi"], "max_new_tokens": 0}, "`max_new_tokens` must be a positive integer, got 0"),
])
def test_bad_greedy_input_is_an_error_naming_the_argument(kwargs, message):
    with pytest.raises(DataError, match=message):
        greedy(tiny_model("gpt2"), **kwargs)


def test_exact_match_needs_one_answer_per_prompt():
    with pytest.raises(DataError, match=r"`prompts` has 2 rows but `answers` has 1; give one answer per prompt"):
        exact_match(tiny_model("gpt2"), ["a", "b"], ["1"])


def test_greedy_on_an_encoder_decoder_is_an_error_that_says_what_to_use():
    with pytest.raises(DataError, match="decodes decoder-only models"):
        greedy(tiny_model("byt5-small"), ["x"])
