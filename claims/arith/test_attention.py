"""Finding 7: some heads attend from `=` to the operators, and some from each `)` to its
matching `(`, several times more than a uniform pattern would.

Two patterns, measured for every block x head, one ratio per example:

    to-operators        from the answer position (the last prompt token, `=`): the attention
                        mass on the operator tokens (+ - *), divided by the uniform share
                        (operators / attended positions)
    to-matching-paren   from each `)` at position i: the weight on its matching `(`, divided by
                        the uniform share 1 / (i + 1); averaged over the example's closing
                        parentheses, so examples are the resampling unit (parenthesised rows only)

Heads are identified on the selection split: those whose mean ratio is above the model's
`attention_factor`, or, when none is, the single highest (so the claim is still stated, and
fails). The claim is measured on the test split, one expectation per identified head, whose site
names it. Which heads qualify depends on the loaded model, which pytest loads after collection,
so the test ids carry the pattern (``-k to-matching-paren``), not the heads.

Control: the same ratio, for the same heads and queries, to as many positions drawn uniformly at
random from the attended ones, averaged over `CONTROL_DRAWS` draws per example (so no verdict
hangs on one draw). Whatever a head does, that ratio averages 1 over the draws (the weights of a
query sum to 1 over its attended positions), so it checks the measure's baseline. The draw
includes the matching position: excluding it would push a head that does attend to it below 1 by
construction. Each example draws from a generator of its own, draw i seeded from (seed + i,
pattern, the example's tokens), so its draws do not depend on the other examples or their order.

Specificity: a head that attends to every `(` also scores on to-matching-paren. So the paren
heads' ratio to the matching `(` is compared, per `)`, with their mean ratio to the other `(`
before it (nested or earlier groups), on the `)` that have one.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from claims.arith.measure import head_name
from harness import attention_weights, DataError, expect, ratio_to_uniform, stats

OPERATORS = ("+", "-", "*")
CALIBRATION_TOLERANCE = 0.2   # the control's CI must lie within 1 +- this
CONTROL_DRAWS = 8             # random-key draws per example, averaged (draw i from seed + i)

Targets = list[tuple[int, list[int]]]   # (query position, key positions) pairs of one example


def operator_targets(tokens: list[str]) -> Targets:
    """The answer position (the last prompt token) and the operator positions before it."""
    keys = [i for i, t in enumerate(tokens[:-1]) if t in OPERATORS]
    return [(len(tokens) - 1, keys)] if keys else []


def paren_targets(tokens: list[str]) -> Targets:
    """Each closing parenthesis and the position of the `(` it closes."""
    opened, out = [], []
    for i, t in enumerate(tokens):
        if t == "(":
            opened.append(i)
        elif t == ")":
            if not opened:
                raise DataError(f"unbalanced parentheses in {''.join(tokens)!r}: the `)` at {i} closes nothing")
            out.append((i, [opened.pop()]))
    return out


PATTERNS: dict[str, Callable[[list[str]], Targets]] = {"to-operators": operator_targets,
                                                        "to-matching-paren": paren_targets}


def example_ratio(weights: np.ndarray, targets: Targets) -> np.ndarray:
    """``[layers, heads]``: the example's attention / uniform, averaged over its targets."""
    return np.mean([ratio_to_uniform(weights, query, keys) for query, keys in targets], 0)


def example_rng(seed: int, key: str) -> np.random.Generator:
    """A generator of the example's own: seeded from a blake2b hash of (`seed`, `key`)."""
    digest = hashlib.blake2b(f"{int(seed)}|{key}".encode("utf-8"), digest_size=16,
                             person=b"arith.attention").digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def example_key(tokens: list[str], pattern: str) -> str:
    """An example's key for its control draw: the pattern and its tokens (unambiguously joined)."""
    return "\x1f".join([pattern, *tokens])


def random_targets(targets: Targets, *, seed: int, key: str) -> Targets:
    """The same queries, each with as many keys drawn uniformly from its attended positions.

    The draw depends only on `seed`, the example's `key` (`example_key`) and its `targets`: a
    generator of its own per example (`example_rng`), never shared with other examples."""
    rng = example_rng(seed, key)
    return [(q, sorted(rng.choice(q + 1, size=len(keys), replace=False).tolist())) for q, keys in targets]


def pattern_ratios(rows: list[tuple[list[str], np.ndarray]], pattern: str,
                   seed: int | None = None, draws: int = 1) -> np.ndarray:
    """``[examples, layers, heads]`` ratios of `pattern` over the (tokens, weights) rows that have
    its targets; with `seed`, to random keys instead, averaged over `draws` draws per example (the
    control: draw i of an example's keys from (seed + i, pattern, its tokens), whatever the other
    rows and their order)."""
    out = []
    for tokens, weights in rows:
        targets = PATTERNS[pattern](tokens)
        if targets:
            if seed is None:
                out.append(example_ratio(weights, targets))
                continue
            key = example_key(tokens, pattern)
            out.append(np.mean([example_ratio(weights, random_targets(targets, seed=seed + i, key=key))
                                for i in range(draws)], 0))
    return np.stack(out)


def specificity(rows: list[tuple[list[str], np.ndarray]]) -> np.ndarray:
    """``[examples, layers, heads]``: per `)` that has another `(` before it, the ratio to its
    matching `(` minus the mean ratio to those other `(`; averaged per example (examples
    without such a `)` are left out)."""
    out = []
    for tokens, weights in rows:
        gaps = []
        for close, (match,) in paren_targets(tokens):
            others = [j for j in range(close) if tokens[j] == "(" and j != match]
            if others:
                other = np.mean([ratio_to_uniform(weights, close, [j]) for j in others], 0)
                gaps.append(ratio_to_uniform(weights, close, [match]) - other)
        if gaps:
            out.append(np.mean(gaps, 0))
    return np.stack(out)


def identify(ratios: np.ndarray, factor: float) -> list[tuple[int, int]]:
    """(layer, head) pairs, layers from 1, whose mean ratio exceeds `factor`, highest first; the
    single highest when none does."""
    means = ratios.mean(0)
    order = [tuple(int(x) for x in np.unravel_index(i, means.shape)) for i in np.argsort(-means, axis=None)]
    chosen = [(layer + 1, head) for layer, head in order if means[layer, head] > factor]
    return chosen or [(order[0][0] + 1, order[0][1])]


@pytest.fixture(scope="module")
def attention(arith, splits):
    """Per split, each row's tokens and attention weights (computed once)."""
    cache: dict[str, list] = {}

    def get(split: str) -> list[tuple[list[str], np.ndarray]]:
        if split not in cache:
            ids = arith.tokenize([r.expression for r in splits[split]])
            tokens = [arith.tokenizer.convert_ids_to_tokens(row) for row in ids]
            cache[split] = list(zip(tokens, attention_weights(arith, ids)))
        return cache[split]

    return get


@pytest.fixture(scope="module")
def ratios(attention, claims_settings):
    """``ratios(split, pattern)``: the ``[examples, layers, heads]`` ratios (cached); at the end of
    the module, heatmaps of the test split's mean ratios go into the report directory."""
    cache: dict[tuple[str, str], np.ndarray] = {}

    def get(split: str, pattern: str) -> np.ndarray:
        if (split, pattern) not in cache:
            cache[split, pattern] = pattern_ratios(attention(split), pattern)
        return cache[split, pattern]

    yield get
    if any(split == "test" for split, _ in cache):
        _plot(get, attention("test"), Path(claims_settings.report_dir) / "arith")


def test_reading_attention_leaves_the_model_as_it_was(arith, splits):
    """Reading the weights switches to eager attention and back: the implementation is
    restored and the logits are those of the model's own implementation (within 1e-4)."""
    ids = torch.as_tensor(arith.tokenize([splits["test"][0].expression]))
    implementation = arith.module.config._attn_implementation
    with torch.no_grad():
        before = arith.module(input_ids=ids).logits
        attention_weights(arith, ids.tolist())
        after = arith.module(input_ids=ids).logits
    assert arith.module.config._attn_implementation == implementation
    torch.testing.assert_close(after, before, atol=1e-4, rtol=0)


@pytest.mark.claim("Heads identified on the selection split attend to the pattern's positions more than "
                   "`attention_factor` times uniform on held-out expressions",
                   source="002/003: attention patterns: heads attending from '=' to the operators and from "
                          "')' to the matching '('")
@pytest.mark.parametrize("pattern", PATTERNS)
def test_identified_heads_attend_to_the_pattern(ratios, thresholds, claim_seed, claims_settings, pattern):
    for layer, head in identify(ratios("selection", pattern), thresholds.attention_factor):
        est = stats.bootstrap_mean(ratios("test", pattern)[:, layer - 1, head], seed=claim_seed,
                                   n_resamples=claims_settings.resamples)
        expect(est.with_context(statistic=f"test split: attention {pattern} / uniform ({head_name(layer, head)})",
                                site=f"blocks.{layer}.attn.head{head}")).at_least(thresholds.attention_factor)


@pytest.mark.claim("Control: the identified heads' ratio to as many randomly drawn earlier positions (the mean of "
                   "8 draws per example) is uniform (1 within the calibration tolerance)",
                   source="002/003: attention patterns (control for the uniform baseline)")
@pytest.mark.parametrize("pattern", PATTERNS)
def test_random_positions_get_the_uniform_share(attention, ratios, thresholds, claim_seed, claims_settings,
                                                pattern):
    control = pattern_ratios(attention("test"), pattern, seed=claim_seed, draws=CONTROL_DRAWS)
    for layer, head in identify(ratios("selection", pattern), thresholds.attention_factor):
        est = stats.bootstrap_mean(control[:, layer - 1, head], seed=claim_seed, n_resamples=claims_settings.resamples)
        expect(est.with_context(statistic=f"test split: attention to random positions / uniform, the mean of "
                                          f"{CONTROL_DRAWS} draws per example ({pattern} queries, "
                                          f"{head_name(layer, head)})",
                                site=f"blocks.{layer}.attn.head{head}")
               ).within(1 - CALIBRATION_TOLERANCE, 1 + CALIBRATION_TOLERANCE)


@pytest.mark.claim("The heads identified for to-matching-paren attend more to the matching `(` than to the "
                   "other `(` before the same `)`",
                   source="002/003: attention from ')' to the matching '(' (specificity: not to any '(')")
def test_paren_heads_prefer_the_matching_paren(attention, ratios, thresholds, claim_seed, claims_settings):
    gaps = specificity(attention("test"))
    for layer, head in identify(ratios("selection", "to-matching-paren"), thresholds.attention_factor):
        est = stats.bootstrap_mean(gaps[:, layer - 1, head], seed=claim_seed, n_resamples=claims_settings.resamples)
        expect(est.with_context(statistic=f"test split: ratio to the matching '(' - to other '(' "
                                          f"({head_name(layer, head)})",
                                site=f"blocks.{layer}.attn.head{head}")).ci_excludes(0).positive()


def _plot(ratios: Callable[[str, str], np.ndarray], rows: list[tuple[list[str], np.ndarray]], folder: Path) -> None:
    """Heatmaps of the mean ratio per block x head for each pattern, and the top paren head's
    attention on the first test expression with the most parentheses."""
    from harness.reports.plots import plot_heatmap

    files = {"to-operators": "attention_operators.png", "to-matching-paren": "attention_parens.png"}
    means = {}
    for pattern, name in files.items():
        ratio = ratios("test", pattern)
        means[pattern] = ratio.mean(0)
        layers, heads = means[pattern].shape
        plot_heatmap(means[pattern], folder / name, title=f"attention {pattern} / uniform, test split "
                     f"(n={len(ratio)})", row_labels=[f"layer{i}" for i in range(1, layers + 1)],
                     col_labels=[f"head{h}" for h in range(heads)], xlabel="head", ylabel="block",
                     colorbar_label="mean attention / uniform")
    layer, head = np.unravel_index(int(np.argmax(means["to-matching-paren"])), means["to-matching-paren"].shape)
    tokens, weights = max(rows, key=lambda row: row[0].count("("))   # the first with the most
    plot_heatmap(weights[layer, head], folder / "attention_example.png", fmt="{:.1f}", vmin=0, vmax=1,
                 title=f"{head_name(layer + 1, head)} on {''.join(tokens)!r}", row_labels=tokens, col_labels=tokens,
                 xlabel="key", ylabel="query", colorbar_label="attention weight")
