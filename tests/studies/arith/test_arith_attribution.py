"""The arithmetic study's attribution measurements (`claims.arith.attribution`): the circuit's
faithfulness against a plain-torch oracle, the neuron ablation against one, and the helpers'
choices and errors."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from claims.arith import attribution, measure
from claims.arith.rebracket import rebracket, value
from harness.errors import DataError
from tests._support.arith_rows import row

CLEAN = ["41-((6+9)-7)=", "(7-2)+(0+5)=", "4-(1-5)="]
CORRUPT = [rebracket(c, random.Random(1)) for c in CLEAN]
PAIRS = measure.Pairs(CLEAN, CORRUPT, [str(value(c)) for c in CLEAN], [str(value(c)) for c in CORRUPT])
REFERENCE = ["3+4-5=", "(8*2)-1=", "41-((6+9)-7)="]


def _ids(arith, text: str) -> torch.Tensor:
    return torch.as_tensor([arith.tokenize([text])[0]])


@torch.no_grad()
def oracle_head_means(arith, texts) -> dict[tuple[int, int], torch.Tensor]:
    """Plain torch: each head's slice of the input of GPT-2's ``attn.c_proj`` (the concatenated
    heads), averaged over every token of `texts` (run one at a time, nothing padded)."""
    cfg = arith.module.config
    d_head = cfg.n_embd // cfg.n_head
    seen: dict[int, list[torch.Tensor]] = {layer: [] for layer in range(cfg.n_layer)}
    handles = [arith.module.transformer.h[layer].attn.c_proj.register_forward_pre_hook(
        lambda mod, args, layer=layer: seen[layer].append(args[0][0].detach().clone()))
        for layer in range(cfg.n_layer)]
    try:
        for text in texts:
            arith.module(input_ids=_ids(arith, text))
    finally:
        for h in handles:
            h.remove()
    out = {}
    for layer, parts in seen.items():
        mean = torch.cat(parts).double().mean(0)
        for h in range(cfg.n_head):
            out[layer + 1, h] = mean[h * d_head:(h + 1) * d_head].float()
    return out


@torch.no_grad()
def oracle_logit_diffs(arith, pairs: measure.Pairs, ablated: list[str], means) -> np.ndarray:
    """Plain torch: each clean prompt's last-token logit of the first answer token minus the
    first contrast token's, with the heads in `ablated` replaced by their means in ``c_proj``'s input."""
    cfg = arith.module.config
    d_head = cfg.n_embd // cfg.n_head
    cells = [measure.head_id(name) for name in ablated]

    def hook(layer):
        def edit(mod, args):
            x = args[0].clone()
            for L, h in cells:
                if L == layer + 1:
                    x[..., h * d_head:(h + 1) * d_head] = means[L, h]
            return (x,)
        return edit

    handles = [arith.module.transformer.h[layer].attn.c_proj.register_forward_pre_hook(hook(layer))
               for layer in range(cfg.n_layer)]
    out = []
    try:
        for clean, answer, contrast in zip(pairs.clean, pairs.answers, pairs.contrasts):
            logits = arith.module(input_ids=_ids(arith, clean)).logits[0, -1].float()
            a = arith.tokenize([answer], add_special_tokens=False)[0][0]
            c = arith.tokenize([contrast], add_special_tokens=False)[0][0]
            out.append(float(logits[a] - logits[c]))
    finally:
        for h in handles:
            h.remove()
    return np.array(out)


def test_the_circuit_faithfulness_equals_a_plain_torch_oracle(arith):
    """The study's mean ablation of many heads at once (harness `Ablate` under `intervene`,
    means from `measure.head_means`) gives the logit differences, and the faithfulness ratio, of
    a forward with the heads' slices of ``c_proj``'s input overwritten by hand."""
    means = measure.head_means(arith, [row(e) for e in REFERENCE])
    plain_means = oracle_head_means(arith, REFERENCE)
    for (layer, h), mean in plain_means.items():
        torch.testing.assert_close(means[arith.site(measure.head_site(measure.head_name(layer, h)))], mean,
                                   atol=1e-5, rtol=0)
    kept = ["layer1-head0", "layer3-head1", "layer2-head2"]
    outside = [h for h in attribution.all_heads(arith) if h not in kept]
    full = attribution.ablated_logit_diffs(arith, PAIRS, [], means)
    circuit = attribution.ablated_logit_diffs(arith, PAIRS, outside, means)
    np.testing.assert_allclose(full, oracle_logit_diffs(arith, PAIRS, [], plain_means), atol=1e-4, rtol=0)
    expected = oracle_logit_diffs(arith, PAIRS, outside, plain_means)
    np.testing.assert_allclose(circuit, expected, atol=1e-4, rtol=0)
    assert not np.allclose(circuit, full, atol=0.1)    # the ablation acted
    assert circuit.mean() / full.mean() == pytest.approx(expected.mean() / full.mean(), abs=1e-5)


def test_neuron_mean_ablation_equals_a_plain_torch_oracle(arith):
    """`site_means` and `logprob_drops` on a set of neurons equal overwriting those columns of
    GPT-2's ``mlp.c_proj`` input (``mlp_post``) with their mean over the reference tokens."""
    units = [44, 18, 208]
    site = attribution.neuron_site(4, units)
    rows = [row(e) for e in REFERENCE]
    mean = attribution.site_means(arith, rows, [site])[site]
    seen = []
    proj = arith.module.transformer.h[3].mlp.c_proj
    handle = proj.register_forward_pre_hook(lambda mod, args: seen.append(args[0][0, :, units].detach().clone()))
    try:
        with torch.no_grad():
            plain = [torch.log_softmax(arith.module(input_ids=_ids(arith, r.expression)).logits[0, -1], -1)
                     for r in rows]
    finally:
        handle.remove()
    torch.testing.assert_close(mean, torch.cat(seen).double().mean(0).float(), atol=1e-5, rtol=0)

    def overwrite(mod, args):
        x = args[0].clone()
        x[..., units] = mean
        return (x,)

    handle = proj.register_forward_pre_hook(overwrite)
    try:
        with torch.no_grad():
            ablated = [torch.log_softmax(arith.module(input_ids=_ids(arith, r.expression)).logits[0, -1], -1)
                       for r in rows]
    finally:
        handle.remove()
    targets = measure.first_answer_token(arith, rows)
    expected = np.array([float(p[t] - a[t]) for p, a, t in zip(plain, ablated, targets)])
    np.testing.assert_allclose(attribution.logprob_drops(arith, rows, site, mean), expected, atol=1e-5, rtol=0)


def test_circuit_heads_keep_effects_of_either_sign_above_the_threshold():
    effects = np.zeros((2, 2, 3))
    effects[:, 0, 1] = [0.4, 0.2]      # mean 0.3
    effects[:, 1, 2] = [-0.5, -0.7]    # mean -0.6
    effects[:, 1, 0] = [0.1, 0.0]      # mean 0.05: below
    assert attribution.circuit_heads(effects, 0.25) == ["layer2-head2", "layer1-head1"]
    with pytest.raises(DataError, match="`threshold` must be a positive effect size in nats, got 0"):
        attribution.circuit_heads(effects, 0)


def test_top_units_are_the_largest_mean_effects_first():
    effects = np.array([[[0.1, 3.0, -5.0, 2.0]], [[0.1, 1.0, -5.0, 2.2]]])
    assert attribution.top_units(effects, 2) == [3, 1]     # means 2.1 and 2.0; -5.0 is not "largest"
    with pytest.raises(DataError, match=r"`n` must be in 1..4 \(the layer's units\), got 5"):
        attribution.top_units(effects, 5)
    with pytest.raises(DataError, match=r"one layer's map \[n_pairs, 1, units\], got shape \(2, 4\)"):
        attribution.top_units(effects[:, 0], 1)


def test_random_draws_are_seeded_and_of_the_asked_size():
    draws = attribution.random_draws(range(10), 3, seed=0, n=4)
    assert draws == attribution.random_draws(list(range(10)), 3, seed=0, n=4)
    assert len(draws) == 4 and all(len(set(d)) == 3 for d in draws) and len({tuple(d) for d in draws}) > 1
    with pytest.raises(DataError, match=r"cannot draw 11 of a pool of 10"):
        attribution.random_draws(range(10), 11, seed=0, n=1)


def test_an_unknown_family_or_layer_is_refused(arith):
    maps = attribution.AttributionMaps(arith, PAIRS, None, neuron_layer=4, n_subset=2)
    with pytest.raises(DataError, match=r"unknown attribution family 'head'; use one of \('heads'"):
        maps("head")
    with pytest.raises(DataError, match=r"`neuron_layer` must be a block in 1..4, got 5"):
        attribution.AttributionMaps(arith, PAIRS, None, neuron_layer=5, n_subset=2)
