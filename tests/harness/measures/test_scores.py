"""Scores: values against hand computation, batched+padded == one example at a time, data errors."""

from __future__ import annotations

import functools

import pytest
import torch

from harness.measures import scores
from harness.errors import DataError, InterventionError, ShapeError
from harness.interventions import Ablate, Add, Patch, Positions, Record, RmsAdd, intervene
from harness.models.loaded import LoadedModel, pad_rows
from tests._support.tiny import ARCHITECTURES, tiny_model

TEXTS = ["the quick brown fox", "hi", "abcdefg"]
OTHER = ["THE QUICK BROWN FOX", "HI", "ABCDEFG"]  # the same token lengths, other tokens
A, B = "ok", "no"  # continuations with the same number of tokens
SPANS = [[(0, 3)], [(1, 3)], [(0, 1), (4, 6)]]
ALPHA = torch.tensor([2.0, -1.5, 0.7])
BATCH_ATOL = 1e-4


# --------------------------------------------------------------------------- helpers


def hand_logprob(m: LoadedModel, text: str, continuation: str) -> float:
    """log P(continuation | text) from one plain forward and log_softmax, token by token."""
    prompt = m.tokenize([text])[0]
    cont = m.tokenize([continuation], add_special_tokens=False)[0]
    with torch.no_grad():
        if m.is_encoder_decoder:
            dec = [m.module.config.decoder_start_token_id] + cont[:-1]
            logits = m.module(input_ids=torch.tensor([prompt]), decoder_input_ids=torch.tensor([dec])).logits[0]
            steps = range(len(cont))
        else:
            logits = m.module(input_ids=torch.tensor([prompt + cont])).logits[0]
            steps = range(len(prompt) - 1, len(prompt) + len(cont) - 1)
    logp = torch.log_softmax(logits.double(), -1)
    return sum(float(logp[pos, tok]) for pos, tok in zip(steps, cont))


def hand_next_logits(m: LoadedModel, text: str) -> torch.Tensor:
    prompt = torch.tensor([m.tokenize([text])[0]])
    with torch.no_grad():
        if m.is_encoder_decoder:
            dec = torch.tensor([[m.module.config.decoder_start_token_id]])
            return m.module(input_ids=prompt, decoder_input_ids=dec).logits[0, 0]
        return m.module(input_ids=prompt).logits[0, -1]


def record(m: LoadedModel, site: str, texts: list[str], continuation: str | None) -> torch.Tensor:
    """The activation at `site` on the token layout a score uses (prompt, + continuation if any)."""
    site = m.site(site)
    prompts = m.tokenize(texts)
    cont = m.tokenize([continuation], add_special_tokens=False)[0] if continuation else []
    with torch.no_grad():
        if m.is_encoder_decoder:
            ids, mask = pad_rows(prompts, pad_id=m.pad_id)
            start = m.module.config.decoder_start_token_id
            dec_ids, dec_mask = pad_rows([[start] + cont[:-1]] * len(texts), pad_id=m.pad_id)
            with intervene(m, {site: Record()}, masks={"encoder": mask, "decoder": dec_mask}) as run:
                m.module(input_ids=ids, attention_mask=mask, decoder_input_ids=dec_ids,
                         decoder_attention_mask=dec_mask)
        else:
            ids, mask = pad_rows([p + cont for p in prompts], pad_id=m.pad_id)
            with intervene(m, {site: Record()}, masks={"blocks": mask}) as run:
                m.module(input_ids=ids, attention_mask=mask)
    return run.recorded[site]


# score name -> (call, the continuation its forward decodes, or None for the next token)
SCORES = {
    "logprob": (lambda m, x, **kw: scores.logprob(m, x, A, **kw), A),
    "logprob_diff": (lambda m, x, **kw: scores.logprob_diff(m, x, A, B, **kw), A),
    "logit_diff": (lambda m, x, **kw: scores.logit_diff(m, x, "e", "t", **kw), None),
    "last_token_accuracy": (lambda m, x, **kw: scores.last_token_accuracy(m, x, "e", **kw), None),
    "next_token_logits": (lambda m, x, **kw: scores.next_token_logits(m, x, **kw), None),
}


def _direction(m: LoadedModel, site: str) -> torch.Tensor:
    return torch.randn(m.width(m.site(site)), generator=torch.Generator().manual_seed(3))


def _spans(m: LoadedModel, site: str, rows: slice):
    if m.site(site).stack == "decoder":
        return Positions.of_spans([[(0, 1)]] * len(TEXTS[rows]))
    return Positions.of_spans(SPANS[rows])


# intervention name -> make(model, site, rows, continuation)
INTERVENTIONS = {
    "add_alpha_vector_at_last": lambda m, s, rows, c: Add(_direction(m, s), alpha=ALPHA[rows],
                                                         positions=Positions.last()),
    "add_at_all": lambda m, s, rows, c: Add(_direction(m, s), alpha=1.5, positions=Positions.all()),
    "rms_add": lambda m, s, rows, c: RmsAdd(_direction(m, s), alpha=ALPHA[rows]),
    "patch": lambda m, s, rows, c: Patch(record(m, s, OTHER[rows], c)),
    "ablate_zero_at_spans": lambda m, s, rows, c: Ablate.zero(positions=_spans(m, s, rows)),
    "ablate_mean": lambda m, s, rows, c: Ablate.mean(
        torch.randn(2, 4, m.width(m.site(s)), generator=torch.Generator().manual_seed(5))),
}


def sites_of(arch: str) -> list[str]:
    if arch == "byt5-small":
        return ["encoder.6.resid_post", "decoder.2.resid_post"]
    n = tiny_model(arch).sites.stacks[0].n_layers
    return [f"blocks.{n // 2}.resid_post"]


def batched_and_one_by_one(m, score, make=None, site=None, continuation=None):
    def plan(rows):
        return None if make is None else {site: make(m, site, rows, continuation)}

    batched = score(m, TEXTS, interventions=plan(slice(0, len(TEXTS))))
    singles = torch.cat([score(m, TEXTS[i:i + 1], interventions=plan(slice(i, i + 1))) for i in range(len(TEXTS))])
    return batched, singles


@functools.lru_cache(maxsize=None)
def plain(arch: str, score_name: str) -> torch.Tensor:
    return SCORES[score_name][0](tiny_model(arch), TEXTS)


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype == torch.bool:
        return torch.equal(a, b)
    return a.shape == b.shape and bool(torch.allclose(a, b, atol=BATCH_ATOL, rtol=0))


archs = pytest.mark.parametrize("arch", ARCHITECTURES)


# --------------------------------------------------------------------------- against hand computation


@archs
def test_logprob_is_the_sum_of_the_continuations_per_token_log_softmax(arch):
    m = tiny_model(arch)
    got = scores.logprob(m, TEXTS, ["ok", "a longer one", "z"])
    expected = [hand_logprob(m, t, c) for t, c in zip(TEXTS, ["ok", "a longer one", "z"])]
    assert got.dtype == torch.float32 and got.shape == (3,)
    assert torch.allclose(got.double(), torch.tensor(expected, dtype=torch.float64), atol=1e-4)


@pytest.mark.parametrize("arch", ["gpt2", "byt5-small"])
def test_logprob_diff_is_the_difference_of_the_two_logprobs(arch):
    m = tiny_model(arch)
    got = scores.logprob_diff(m, TEXTS, "ok", ["no", "maybe", "x"])
    expected = scores.logprob(m, TEXTS, "ok") - scores.logprob(m, TEXTS, ["no", "maybe", "x"])
    assert torch.allclose(got, expected, atol=1e-5)


@archs
def test_next_token_logits_are_those_after_the_last_real_token(arch):
    m = tiny_model(arch)
    got = scores.next_token_logits(m, TEXTS)
    expected = torch.stack([hand_next_logits(m, t) for t in TEXTS])
    assert got.shape == (3, m.module.config.vocab_size) and got.dtype == torch.float32
    assert torch.allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("arch", ["gpt2", "byt5-small"])
def test_logit_diff_is_the_difference_of_two_next_token_logits(arch):
    m = tiny_model(arch)
    logits = scores.next_token_logits(m, TEXTS)
    a, b = m.tokenize(["e"], add_special_tokens=False)[0][0], m.tokenize(["t"], add_special_tokens=False)[0][0]
    assert torch.allclose(scores.logit_diff(m, TEXTS, "e", "t"), logits[:, a] - logits[:, b])
    assert torch.allclose(scores.logit_diff(m, TEXTS, a, b), logits[:, a] - logits[:, b])
    per_row = scores.logit_diff(m, TEXTS, ["e", "t", a], [b, "e", "t"])
    assert torch.allclose(per_row, torch.stack([logits[0, a] - logits[0, b], logits[1, b] - logits[1, a],
                                                logits[2, a] - logits[2, b]]))


@pytest.mark.parametrize("arch", ["gpt2", "byt5-small"])
def test_last_token_accuracy_is_whether_the_argmax_is_the_targets_first_token(arch):
    m = tiny_model(arch)
    top = scores.next_token_logits(m, TEXTS).argmax(-1)
    assert scores.last_token_accuracy(m, TEXTS, top.tolist()).tolist() == [True] * 3
    wrong = [(int(t) + 1) % m.module.config.vocab_size for t in top]
    assert scores.last_token_accuracy(m, TEXTS, wrong).tolist() == [False] * 3
    assert scores.last_token_accuracy(m, TEXTS, top.tolist()).dtype == torch.bool


def test_a_string_target_counts_by_its_first_token():
    m = tiny_model("gpt2")
    e = m.tokenize(["e"], add_special_tokens=False)[0][0]
    # push token "e" to the top: add its (tied) unembedding row to the final normed residual
    push = {"blocks.12.resid_post": Add(m.module.lm_head.weight[e].detach(), alpha=100.0)}
    assert scores.last_token_accuracy(m, TEXTS, "e and more", interventions=push).tolist() == [True] * 3
    assert scores.last_token_accuracy(m, TEXTS, "and more", interventions=push).tolist() == [False] * 3


@archs
def test_a_one_token_logprob_agrees_with_next_token_logits_under_an_intervention_at_the_last_token(arch):
    m = tiny_model(arch)
    token = m.tokenize(["e"], add_special_tokens=False)[0][0]
    for site in sites_of(arch):
        plan = {site: Add(_direction(m, site), alpha=ALPHA, positions=Positions.last())}
        got = scores.logprob(m, TEXTS, "e", interventions=plan)
        expected = torch.log_softmax(scores.next_token_logits(m, TEXTS, interventions=plan), -1)[:, token]
        assert torch.allclose(got, expected, atol=1e-4), site
        assert not torch.allclose(got, scores.logprob(m, TEXTS, "e"), atol=1e-3), f"the add at {site} changed nothing"


def test_a_causal_logprob_never_intervenes_on_the_continuation():
    m = tiny_model("gpt2")
    with pytest.raises(ShapeError, match=r"span \(0, 4\) of row 1 runs past its 3 real tokens"):
        scores.logprob(m, TEXTS, "ok", interventions={"blocks.2.resid_post": Ablate.zero(
            positions=Positions.of_spans([[(0, 1)], [(0, 4)], [(0, 1)]]))})


def test_max_length_truncates_the_input_as_the_tokenizer_does():
    m = tiny_model("gpt2")
    long = "abcdefghijklmnop"
    # the byte tokenizer keeps max_length - 1 bytes and its end-of-sequence token
    assert torch.allclose(scores.logprob(m, [long], "ok", max_length=5), scores.logprob(m, [long[:4]], "ok"))


def test_scores_leave_no_hooks_behind():
    m = tiny_model("byt5-small")
    d = torch.ones(32)

    def hooks():
        return [(dict(mod._forward_hooks), dict(mod._forward_pre_hooks)) for mod in m.module.modules()]

    before = hooks()
    scores.logprob_diff(m, TEXTS, A, B, interventions={"encoder.3.resid_post": Add(d), "decoder.1.mlp_out": Add(d)})
    assert hooks() == before


# --------------------------------------------------------------------------- batched == one at a time


@archs
@pytest.mark.parametrize("score_name", list(SCORES))
def test_a_padded_batch_scores_like_one_example_at_a_time(arch, score_name):
    batched, singles = batched_and_one_by_one(tiny_model(arch), SCORES[score_name][0])
    assert same(batched, singles), (batched - singles.to(batched.dtype)).abs().max()


@archs
@pytest.mark.parametrize("score_name", list(SCORES))
def test_a_padded_batch_scores_like_one_at_a_time_under_a_per_row_add(arch, score_name):
    m = tiny_model(arch)
    score, continuation = SCORES[score_name]
    for site in sites_of(arch):
        batched, singles = batched_and_one_by_one(m, score, INTERVENTIONS["add_alpha_vector_at_last"], site,
                                                  continuation)
        assert same(batched, singles), (site, batched, singles)
        if score_name != "last_token_accuracy":
            assert not same(batched, plain(arch, score_name)), f"the add at {site} changed nothing"


@archs
@pytest.mark.parametrize("score_name", ["logprob", "next_token_logits"])
@pytest.mark.parametrize("intervention", list(INTERVENTIONS))
def test_a_padded_batch_scores_like_one_at_a_time_under_each_intervention(arch, score_name, intervention):
    m = tiny_model(arch)
    score, continuation = SCORES[score_name]
    for site in sites_of(arch):
        batched, singles = batched_and_one_by_one(m, score, INTERVENTIONS[intervention], site, continuation)
        assert same(batched, singles), (site, (batched - singles).abs().max())
        assert not same(batched, plain(arch, score_name)), f"{intervention} at {site} changed nothing"


@pytest.mark.slow
@archs
@pytest.mark.parametrize("score_name", ["logprob_diff", "logit_diff", "last_token_accuracy"])
@pytest.mark.parametrize("intervention", list(INTERVENTIONS))
def test_every_score_batches_like_one_at_a_time_under_every_intervention(arch, score_name, intervention):
    m = tiny_model(arch)
    score, continuation = SCORES[score_name]
    for site in sites_of(arch):
        batched, singles = batched_and_one_by_one(m, score, INTERVENTIONS[intervention], site, continuation)
        assert same(batched, singles), (site, batched, singles)


@pytest.mark.parametrize("arch", ["gpt2", "gemma-2-2b"])
def test_a_padded_batch_scores_like_one_at_a_time_under_a_head_intervention(arch):
    m = tiny_model(arch)
    site = f"blocks.2.attn.head{m.sites.stacks[0].n_heads - 1}"
    batched, singles = batched_and_one_by_one(m, SCORES["logprob"][0], INTERVENTIONS["add_alpha_vector_at_last"],
                                              site, A)
    assert same(batched, singles)
    assert not same(batched, plain(arch, "logprob"))


@archs
def test_chunking_with_batch_size_gives_the_unchunked_scores(arch):
    m = tiny_model(arch)
    for name, (score, _) in SCORES.items():
        assert same(score(m, TEXTS, batch_size=2), score(m, TEXTS)), name
        assert same(score(m, TEXTS, batch_size=1), score(m, TEXTS)), name


# --------------------------------------------------------------------------- data errors


@pytest.mark.parametrize("score_name", list(SCORES))
def test_no_inputs_is_an_error(score_name):
    with pytest.raises(DataError, match=r"`inputs` is empty; pass at least one example"):
        SCORES[score_name][0](tiny_model("gpt2"), [])


@pytest.mark.parametrize("score_name", list(SCORES))
def test_a_bare_string_as_inputs_is_an_error(score_name):
    with pytest.raises(DataError, match=r"`inputs` must be a list of strings, got a single str; wrap it in a list"):
        SCORES[score_name][0](tiny_model("gpt2"), "hello")


@pytest.mark.parametrize(("call", "name"), [
    (lambda m: scores.logprob(m, TEXTS, ["a", "b"]), "continuation"),
    (lambda m: scores.logprob_diff(m, TEXTS, "a", ["a", "b"]), "b"),
    (lambda m: scores.logit_diff(m, TEXTS, ["a"], "b"), "a"),
    (lambda m: scores.last_token_accuracy(m, TEXTS, ["a", "b", "c", "d"]), "targets"),
])
def test_a_per_row_list_of_the_wrong_length_is_an_error(call, name):
    with pytest.raises(DataError, match=rf"`{name}` has \d entries but `inputs` has 3; give one per input or a single value"):
        call(tiny_model("gpt2"))


@pytest.mark.parametrize("arch", ["gpt2", "byt5-small"])
def test_an_empty_continuation_is_an_error(arch):
    with pytest.raises(DataError, match=r"continuation '' has no tokens; score a non-empty continuation"):
        scores.logprob(tiny_model(arch), TEXTS, ["ok", "", "no"])


def test_a_multi_token_answer_for_logit_diff_is_an_error():
    with pytest.raises(DataError, match=r"answer token 'ab' is 2 tokens \[\d+, \d+\] for this tokenizer; "
                                        r"give a single token or its id"):
        scores.logit_diff(tiny_model("gpt2"), TEXTS, "ab", "c")


def test_an_empty_target_for_accuracy_is_an_error():
    with pytest.raises(DataError, match=r"target '' has no tokens"):
        scores.last_token_accuracy(tiny_model("gpt2"), TEXTS, "")


@pytest.mark.parametrize("batch_size", [0, -2])
def test_a_batch_size_below_one_is_an_error(batch_size):
    with pytest.raises(DataError, match=rf"`batch_size` must be a positive integer, got {batch_size}"):
        scores.logprob(tiny_model("gpt2"), TEXTS, "ok", batch_size=batch_size)


@pytest.mark.parametrize("score_name", list(SCORES))
def test_batch_size_with_interventions_is_an_error(score_name):
    m = tiny_model("gpt2")
    with pytest.raises(InterventionError, match=r"`batch_size`=2 with interventions: per-row intervention "
                                                r"tensors describe one batch; chunk the rows yourself"):
        SCORES[score_name][0](m, TEXTS, batch_size=2, interventions={"blocks.2.resid_post": Record()})
