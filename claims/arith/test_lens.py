"""Finding 5: the logit lens at ``=`` decodes the answer's first token only from `lens_layer` on.

At the last prompt token (``=``, which predicts the first answer character) of each held-out
row, the residual stream after each layer L = 0..n (0: the embeddings) is decoded through the
model's final norm and unembedding (`harness.measures.lens.logit_lens`); per layer, whether the first
answer token is the top-1 token (a rate with a Wilson CI over rows) and its probability. After
the last block the lens is the model itself, so its top-1 rate is the first-token accuracy.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from claims.arith.measure import first_answer_token
from claims.arith.settings import thresholds_at_collection
from harness import expect, logit_lens, stats


def pytest_generate_tests(metafunc):
    """`early_layer` runs over the layers before `lens_layer`, `lens_layer` is that layer; both
    are in the test id (``layer2``), so ``-k layer2`` selects them."""
    row = thresholds_at_collection(metafunc.config)
    for name, layers in (("early_layer", range(row.lens_layer) if row else [0]),
                         ("lens_layer", [row.lens_layer] if row else [1])):
        if name in metafunc.fixturenames:
            metafunc.parametrize(name, list(layers), ids=[f"layer{layer}" for layer in layers])


def lens_on(model, rows):
    """The logit lens at the ``=`` of each row, for the row's first answer token."""
    return logit_lens(model, model.tokenize([r.expression for r in rows]), first_answer_token(model, rows).tolist())


def lens_estimates(lens, *, seed: int, n_resamples: int) -> dict[str, list]:
    """Per layer: the top-1 rate of the first answer token (Wilson) and its mean probability
    (bootstrap over rows)."""
    hits = lens.hits()
    return {
        "top-1 rate": [stats.proportion_of(hits[:, layer]).with_context(
            statistic=f"logit lens top-1 rate of the first answer token, layer {layer}", site=str(site))
            for layer, site in enumerate(lens.sites)],
        "mean P(first answer token)": [stats.bootstrap_mean(lens.prob[:, layer].numpy(), seed=seed,
                                                            n_resamples=n_resamples).with_context(
            statistic=f"logit lens P(first answer token), layer {layer}", site=str(site))
            for layer, site in enumerate(lens.sites)],
    }


@pytest.fixture(scope="module")
def lens(arith, splits):
    """The logit lens on the test split."""
    return lens_on(arith, splits["test"])


@pytest.fixture(scope="module")
def per_layer(lens, claims_settings):
    """`lens_estimates` of the test split; writes ``arith/lens.png`` (both, per layer, with CIs)."""
    from harness.reports.plots import plot_layers

    out = lens_estimates(lens, seed=claims_settings.seed, n_resamples=claims_settings.resamples)
    plot_layers(out, Path(claims_settings.report_dir) / "arith" / "lens.png", ylabel="rate / probability",
                title="logit lens at '=': first answer token (test split, 95% CIs)")
    return out


@pytest.mark.claim("Before the lens layer, the logit lens at '=' rarely has the answer's first token as top-1",
                   source="002/003: logit lens; the answer is not decodable in the early layers")
def test_the_first_answer_token_is_not_decodable_before_the_lens_layer(per_layer, thresholds, early_layer):
    expect(per_layer["top-1 rate"][early_layer]).at_most(thresholds.max_early_top1)


@pytest.mark.claim("At the lens layer the logit lens's top-1 rate rises above the layer before's",
                   source="002/003: logit lens; the layer where the answer becomes decodable")
def test_the_top1_rate_rises_at_the_lens_layer(lens, claim_seed, claims_settings, lens_layer):
    assert lens_layer >= 1, f"lens_layer must be a block (1..n), got {lens_layer}; fix THRESHOLDS"
    hits = lens.hits().astype(float)
    rise = stats.paired_difference(hits[:, lens_layer], hits[:, lens_layer - 1], seed=claim_seed,
                                   n_resamples=claims_settings.resamples).with_context(
        statistic=f"top-1 rate at layer {lens_layer} minus layer {lens_layer - 1} (paired over rows)",
        site=str(lens.sites[lens_layer]))
    expect(rise).positive()


@pytest.mark.claim("After the last block, the logit lens at '=' has the answer's first token as top-1 "
                   "(the model's first-token accuracy)",
                   source="002/003: logit lens; the answer is decodable at the output")
def test_the_first_answer_token_is_decodable_after_the_last_block(per_layer, thresholds):
    expect(per_layer["top-1 rate"][-1]).greater_than(thresholds.min_final_top1)
