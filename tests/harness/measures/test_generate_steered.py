"""Steered greedy generation: `generate` (batched, left-padded or length-grouped, key/value cache,
per-row coefficients, rows stopping at different steps) equals the plain loop of the source
study token for token, with logits within 1e-4, on the GPT-2, Qwen2 and Gemma-2 layouts."""

from __future__ import annotations

import re

import pytest
import torch

from harness import progress
from harness.errors import DataError, InterventionError
from harness.interventions import Add, Positions, intervene
from harness.measures.generate import END_OF_FUNCTION, generate, greedy
from tests._support.tiny import tiny_model

PROMPTS = ["def f(x):\n    return", "hi", "the quick brown fox jumps", "abc", "x = [1, 2, 3]\nfor i in x:"]
COEFS = [-6.0, 0.0, 3.0, 8.0]  # every prompt at each: 20 rows, the same prompt on 4 of them
ROWS = [p for p in PROMPTS for _ in COEFS]
ALPHA = torch.tensor([c for _ in PROMPTS for c in COEFS])
STOP = ["6", "?", "\x08", "ff", END_OF_FUNCTION]  # characters these random models emit, so some rows stop early
N_NEW = 20
SITES = {"gpt2": "blocks.6.resid_post", "qwen2.5-0.5b": "blocks.12.resid_post", "gemma-2-2b": "blocks.13.resid_post"}


def unit_direction(m, site: str, seed: int = 0) -> torch.Tensor:
    d = torch.randn(m.width(m.site(site)), generator=torch.Generator().manual_seed(seed))
    return d / d.norm()


def plain_loop(m, prompt: str, plan: dict, *, max_new_tokens: int, stop=()):
    """The source study's loop: one prompt, no batch, no cache; the whole sequence is recomputed
    under the same hook at every step. Returns (text, ids, why it stopped, logits [n, vocab])."""
    ids = m.tokenize([prompt])[0]
    eos = m.tokenizer.eos_token_id
    new, seen, why = [], [], "max_new_tokens"
    for _ in range(max_new_tokens):
        x = torch.tensor([ids + new])
        mask = torch.ones_like(x)
        with torch.no_grad(), intervene(m, plan, masks={m.main_stack: mask}):
            logits = m.module(input_ids=x, attention_mask=mask, use_cache=False).logits[0, -1].float()
        token = int(logits.argmax())
        new.append(token)
        seen.append(logits)
        if token == eos:
            why = "eos"
            break
        if first_stop(m.tokenizer.decode(new, skip_special_tokens=True), stop) is not None:
            why = "stop"
            break
    text = m.tokenizer.decode(new[:-1] if why == "eos" else new, skip_special_tokens=True)
    cut = first_stop(text, stop)
    return (text if cut is None else text[:cut]), new, why, torch.stack(seen)


def first_stop(text: str, stop) -> int | None:
    hits = [text.find(s) for s in stop if isinstance(s, str)] + [
        s.search(text).start() for s in stop if not isinstance(s, str) and s.search(text)]
    hits = [h for h in hits if h >= 0]
    return min(hits) if hits else None


@pytest.fixture(scope="module", params=list(SITES))
def case(request):
    """A tiny model, its site and direction, and the plain loop's result for every row."""
    m = tiny_model(request.param)
    site = SITES[request.param]
    d = unit_direction(m, site)
    torch.set_num_threads(1)
    plain = [plain_loop(m, p, {site: Add(d, alpha=float(a))}, max_new_tokens=N_NEW, stop=STOP)
             for p, a in zip(ROWS, ALPHA)]
    return m, site, d, plain


def assert_same(got, plain):
    for row, (g, (text, ids, why, logits)) in enumerate(zip(got, plain)):
        assert g.ids == ids, f"row {row}: {g.ids} != plain loop {ids}"
        assert (g.text, g.stop) == (text, why), f"row {row}"
        torch.testing.assert_close(g.logits, logits, atol=1e-4, rtol=0)


@pytest.mark.parametrize("layout", [dict(batch_size=7), dict(batch_size=64), dict(group_by_length=True, batch_size=3),
                                    dict(cache=False, batch_size=6)],
                         ids=["left-padded", "one-batch", "length-grouped", "no-cache"])
def test_steered_generation_equals_the_plain_loop(case, layout):
    m, site, d, plain = case
    got = generate(m, ROWS, interventions={site: Add(d, alpha=ALPHA)}, max_new_tokens=N_NEW, stop=STOP,
                   return_logits=True, **layout)
    assert_same(got, plain)


def test_the_test_inputs_can_fail(case):
    """The coefficients change what each prompt generates, and rows stop at different steps by
    different rules, so a batch loses rows while it decodes."""
    m, site, d, plain = case
    for i in range(len(PROMPTS)):
        assert len({tuple(ids) for _, ids, _, _ in plain[i * len(COEFS):(i + 1) * len(COEFS)]}) >= 2, PROMPTS[i]
    assert len({len(ids) for _, ids, _, _ in plain}) >= 3
    assert len({why for *_, why, _ in plain}) >= 2
    unsteered = generate(m, ROWS, max_new_tokens=N_NEW, stop=STOP)
    assert [g.ids for g in unsteered] != [ids for _, ids, _, _ in plain]


def test_two_directions_in_one_call_by_chained_edits_with_zero_alphas():
    m = tiny_model("gpt2")
    site = SITES["gpt2"]
    d1, d2 = unit_direction(m, site, 1), unit_direction(m, site, 2)
    rows = ROWS + ROWS
    a1 = torch.cat([ALPHA, torch.zeros(len(ROWS))])
    a2 = torch.cat([torch.zeros(len(ROWS)), ALPHA])
    got = generate(m, rows, interventions={site: [Add(d1, alpha=a1), Add(d2, alpha=a2)]},
                   max_new_tokens=8, batch_size=16)
    for r, g in enumerate(got):
        d, a = (d1, a1[r]) if r < len(ROWS) else (d2, a2[r])
        _, ids, _, _ = plain_loop(m, rows[r], {site: Add(d, alpha=float(a))}, max_new_tokens=8)
        assert g.ids == ids, f"row {r}"
    assert [g.ids for g in got[:len(ROWS)]] != [g.ids for g in got[len(ROWS):]]


def test_greedy_is_generate_grouped_by_length_and_takes_per_row_alphas():
    m = tiny_model("qwen2.5-0.5b")
    site = SITES["qwen2.5-0.5b"]
    plan = {site: Add(unit_direction(m, site), alpha=ALPHA)}
    texts = greedy(m, ROWS, max_new_tokens=N_NEW, interventions=plan, stop=STOP)
    assert texts == [g.text for g in generate(m, ROWS, max_new_tokens=N_NEW, interventions=plan, stop=STOP)]
    assert greedy(m, ROWS, max_new_tokens=6, interventions=plan, cache=False) == \
        greedy(m, ROWS, max_new_tokens=6, interventions=plan)


def test_a_plan_that_changes_with_the_sequence_is_recomputed_each_step_or_refused():
    """An edit at the last token moves as the sequence grows: no cache can hold it."""
    m = tiny_model("gpt2")
    site = SITES["gpt2"]
    plan = {site: Add(unit_direction(m, site) * 8.0, positions=Positions.last())}
    got = generate(m, PROMPTS, interventions=plan, max_new_tokens=6)
    assert [g.ids for g in got] == [plain_loop(m, p, plan, max_new_tokens=6)[1] for p in PROMPTS]
    with pytest.raises(InterventionError, match=r"`cache=True` needs edits that act at every position"):
        generate(m, PROMPTS, interventions=plan, max_new_tokens=6, cache=True)


def test_end_of_function_cuts_before_the_first_dedented_line():
    assert first_stop("    return x\n\nprint(1)", [END_OF_FUNCTION]) == len("    return x\n")
    from harness.measures.decoding import stop_index

    for text in ["    return x\n    y = 1\n", "x\n  \n\tz", "\n    a\nb", "no newline"]:
        assert stop_index(text, [END_OF_FUNCTION, "zz"]) == first_stop(text, [END_OF_FUNCTION, "zz"])
    assert stop_index("    a\n    b\nc = 1", [END_OF_FUNCTION]) == 11
    assert stop_index("ab\ncd", ["cd", END_OF_FUNCTION]) == 2


def test_generation_reports_progress_and_leaves_no_hook():
    m = tiny_model("gpt2")
    site = SITES["gpt2"]
    before = [(n, len(x._forward_hooks), len(x._forward_pre_hooks)) for n, x in m.module.named_modules()]
    seen: list = []
    previous = progress.set_sink(seen.append)
    try:
        generate(m, ROWS[:6], interventions={site: Add(unit_direction(m, site), alpha=ALPHA[:6])}, max_new_tokens=3)
    finally:
        progress.set_sink(previous)
    assert any(s and s.startswith("greedy decoding") for s in seen) and seen[-1] is None
    assert [(n, len(x._forward_hooks), len(x._forward_pre_hooks)) for n, x in m.module.named_modules()] == before


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    (dict(prompts=ROWS, interventions={"blocks.6.resid_post": Add(torch.ones(48), alpha=torch.ones(3))}),
     DataError, "`alpha` of the Add at blocks.6.resid_post has shape (3,) but `prompts` has 20 rows"),
    (dict(prompts=[]), DataError, "`prompts` is empty; pass at least one prompt"),
    (dict(prompts="hi"), DataError, "`prompts` must be a list of strings, got a single str"),
    (dict(prompts=["hi"], max_new_tokens=0), DataError, "`max_new_tokens` must be a positive integer, got 0"),
    (dict(prompts=["hi"], batch_size=0), DataError, "`batch_size` must be a positive integer, got 0"),
])
def test_bad_input_is_an_error_naming_the_argument(kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        generate(tiny_model("gpt2"), **kwargs)


def test_an_encoder_decoder_is_an_error_that_says_what_to_use():
    with pytest.raises(DataError, match=r"generate\(\) decodes decoder-only models; .* is an encoder-decoder"):
        generate(tiny_model("byt5-small"), ["x"])
