"""The recall study's own measurements: subject spans, position categories, and the noised runs
with restored MLP / attention outputs against an oracle of raw torch hooks on the Hugging Face
modules (the noise drawn by `noise_draw`, everything else plain torch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness import DataError, answer_prob, load_model, trace_resid_map
from harness.interventions import noise_draw
from harness.measures.tracing import noise_seed

from claims.recall import measure
from claims.recall.facts import facts
from claims.recall.prompts import CATEGORIES, LEAD, categories, other_subject_pairs, tokenize_facts


@pytest.fixture(scope="module")
def model():
    return load_model("fixture:recall")


@pytest.fixture(scope="module")
def prompts(model):
    return tokenize_facts(model, facts())


def test_every_subject_span_decodes_to_the_subject(model, prompts):
    for p in prompts:
        a, b = p.subject
        assert model.tokenizer.decode(list(p.ids[a:b])).strip() == p.fact.subject, p.text
        assert p.text == LEAD + p.fact.prompt


def test_the_control_span_lies_in_the_lead_with_the_subjects_length(model, prompts):
    lead = len(model.tokenize([LEAD.strip()])[0])
    for p in prompts:
        assert p.control is not None
        c0, c1 = p.control
        assert c1 - c0 == p.subject[1] - p.subject[0] and 0 < c0 and c1 <= p.subject[0] and c1 <= lead


def test_categories_follow_rome():
    class P:      # a prompt of 10 tokens: lead 0-2, subject 3-5, then 6-8, last 9
        ids, subject, last = tuple(range(10)), (3, 6), 9
    cat = categories(P)  # type: ignore[arg-type]
    names = [CATEGORIES[c] if c >= 0 else "lead" for c in cat]
    assert names == ["lead"] * 3 + ["first_subject", "middle_subject", "last_subject", "first_after", "further",
                                    "further", "last"]


def test_patching_partners_differ_only_in_the_subject(prompts):
    for i, j in other_subject_pairs(prompts):
        a, b = prompts[i], prompts[j]
        s0, s1 = a.subject
        assert a.fact.relation == b.fact.relation and len(a.ids) == len(b.ids) and a.target != b.target
        assert a.ids[:s0] == b.ids[:s0] and a.ids[s1:] == b.ids[s1:]


@torch.no_grad()
def _oracle(model, p, *, std, samples, seed, point, layers, at) -> float:
    """P(answer) of one prompt with the noise added by a raw hook on the embedding and the clean
    MLP / attention outputs written back by raw hooks on the decoder layers' modules."""
    hf = model.module
    ids = torch.tensor([list(p.ids)])
    mods = {L: getattr(hf.model.layers[L - 1], "mlp" if point == "mlp_out" else "self_attn") for L in layers}
    clean, handles = {}, []

    def keep(L):
        def hook(module, args, output):
            clean[L] = (output[0] if isinstance(output, tuple) else output).detach().clone()
        return hook

    try:
        handles = [m.register_forward_hook(keep(L)) for L, m in mods.items()]
        hf(input_ids=ids)
    finally:
        for h in handles:
            h.remove()
    total = 0.0
    for s in range(samples):
        def noise(module, args, output, s=s):
            out = output.clone()
            for q in range(*p.subject):
                out[0, q] += std * noise_draw(noise_seed(seed, s), list(p.ids), q, out.shape[-1])
            return out

        def restore(L):
            def hook(module, args, output):
                x = output[0] if isinstance(output, tuple) else output
                x = x.clone()
                x[0, at] = clean[L][0, at]
                return (x,) + tuple(output[1:]) if isinstance(output, tuple) else x
            return hook

        handles = [hf.model.embed_tokens.register_forward_hook(noise)]
        try:
            handles += [m.register_forward_hook(restore(L)) for L, m in mods.items()]
            logits = hf(input_ids=ids).logits[0, -1]
        finally:
            for h in handles:
                h.remove()
        total += float(torch.softmax(logits.float(), -1)[p.target])
    return total / samples


@pytest.mark.parametrize("point", ["mlp_out", "attn_out"])
def test_restored_outputs_equal_a_raw_hook_oracle(model, prompts, point):
    chosen = [prompts[i] for i in (0, 90, 140, 300)]
    at = [p.last_subject for p in chosen]
    got = measure.noised_runs(model, chosen, [p.subject for p in chosen], std=0.5, samples=2, seed=3, point=point,
                              layers=(2, 3), at=at)
    want = [_oracle(model, p, std=0.5, samples=2, seed=3, point=point, layers=(2, 3), at=a)
            for p, a in zip(chosen, at)]
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_noise_alone_is_the_traces_corrupted_run(model, prompts):
    chosen = [prompts[i] for i in (5, 60, 200)]
    got = measure.noised_runs(model, chosen, [p.subject for p in chosen], std=0.5, samples=3, seed=7)
    tm = trace_resid_map(model, [list(p.ids) for p in chosen], [p.subject for p in chosen],
                         answer_prob([p.target for p in chosen]), std=0.5, samples=3, seed=7)
    np.testing.assert_allclose(got, tm.corrupted.mean(1).numpy(), atol=1e-5, rtol=0)


def test_a_misspelt_point_is_refused(model, prompts):
    with pytest.raises(DataError, match="`point` must be None, 'mlp_out' or 'attn_out', got 'mlp'"):
        measure.noised_runs(model, prompts[:1], [prompts[0].subject], std=0.5, samples=1, seed=0, point="mlp",
                            layers=(1,), at=[0])


def test_unequal_maps_are_refused():
    from harness import map_agreement

    with pytest.raises(DataError, match="the two maps have shapes"):
        map_agreement(np.zeros((3, 2, 6)), np.zeros((4, 2, 6)), name="x")
