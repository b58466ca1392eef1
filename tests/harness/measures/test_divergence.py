"""`harness.measures.divergence`: similarity ratios and length ratios of steered generations
against their baselines, and the errors bad input gets."""

from __future__ import annotations

import difflib
import math

import numpy as np
import pytest

from harness.errors import DataError
from harness.measures.divergence import Divergence, divergence, length_ratio, similarity

# ----------------------------------------------------------------------------------------
# similarity


@pytest.mark.parametrize("seq", ["def f(x):\n    return x\n", [5, 9, 2, 2], "", []])
def test_identical_sequences_have_similarity_one(seq):
    assert similarity(seq, seq) == 1.0


@pytest.mark.parametrize("a, b", [("abc", "xyz"), ([1, 2, 3], [4, 5]), ("abc", ""), ([], [7])])
def test_sequences_with_nothing_in_common_have_similarity_zero(a, b):
    assert similarity(a, b) == 0.0


def test_known_ratios():
    assert similarity("abcd", "abce") == 0.75  # 3 matching characters: 2 * 3 / 8
    assert similarity([5, 9, 2], [5, 9, 7]) == pytest.approx(2 / 3)
    assert similarity("abc", "abcdef") == pytest.approx(2 * 3 / 9)


def test_token_arrays_and_tensors_compare_like_lists():
    torch = pytest.importorskip("torch")
    assert similarity(np.array([5, 9, 2]), [5, 9, 7]) == pytest.approx(2 / 3)
    assert similarity(torch.tensor([5, 9, 2]), (5, 9, 7)) == pytest.approx(2 / 3)


def test_junk_heuristics_are_off():
    """difflib's default drops every element making up over 1% of a sequence of 200 or more
    from its matching: twenty lines of code with a comment line put in front then score 0."""
    base = "    return x\n" * 20
    steered = "#\n" + base
    assert difflib.SequenceMatcher(None, base, steered).ratio() == 0.0
    assert similarity(base, steered) == pytest.approx(2 * 260 / 522)


def test_similarity_keeps_the_baseline_first_because_the_ratio_is_not_symmetric():
    # the example from difflib's documentation
    assert similarity("tide", "diet") == 0.25
    assert similarity("diet", "tide") == 0.5


@pytest.mark.parametrize(
    "a, b, match",
    [
        ("abc", ["a", "b", "c"], r"`a` and `b` must both be str or both token-id lists, got str and list"),
        (None, "abc", r"`a` must be a str or a list of token ids, got NoneType"),
        ("abc", 3, r"`b` must be a str or a list of token ids, got int"),
        ([[1, 2], [3]], [1], r"`a` must be one sequence .* got a nested list"),
    ],
)
def test_similarity_rejects_what_it_cannot_compare(a, b, match):
    with pytest.raises(DataError, match=match):
        similarity(a, b)


# ----------------------------------------------------------------------------------------
# length_ratio


def test_length_ratio_is_steered_over_baseline():
    assert length_ratio("abcd", "ab") == 0.5
    assert length_ratio("ab", "abcd") == 2.0
    assert length_ratio([1, 2, 3], [1, 2, 3]) == 1.0


def test_length_ratio_of_an_empty_baseline_is_one_or_inf_never_nan():
    assert length_ratio("", "") == 1.0
    assert length_ratio([], []) == 1.0
    assert length_ratio("", "x") == math.inf


def test_length_ratio_checks_its_arguments():
    with pytest.raises(DataError, match="`a` and `b` must both be str or both token-id lists"):
        length_ratio("ab", [1, 2])


# ----------------------------------------------------------------------------------------
# divergence


def test_divergence_computes_each_row():
    base = ["return a + b", "x = 1", ""]
    steered = ["return a + b", "y = 2", "pass"]
    d = divergence(base, steered)
    assert isinstance(d, Divergence) and d.n == 3
    np.testing.assert_allclose(d.char_similarity, [1.0, similarity("x = 1", "y = 2"), 0.0])
    # without token ids the token level is whitespace-separated words: "=" is the only shared one
    np.testing.assert_allclose(d.token_similarity, [1.0, 1 / 3, 0.0])
    np.testing.assert_array_equal(d.length_ratio, [1.0, 1.0, math.inf])
    for field in (d.char_similarity, d.token_similarity, d.length_ratio):
        assert field.dtype == np.float64 and field.shape == (3,)
        assert not field.flags.writeable


def test_character_and_token_levels_differ_where_expected():
    # one changed character in a long identifier: almost the same text, a different word
    base, steered = ["total_count = 0"], ["total_counts = 0"]
    d = divergence(base, steered)
    assert d.char_similarity[0] > 0.95
    assert d.token_similarity[0] == pytest.approx(2 * 2 / 6)  # "=" and "0" of 3 words each
    # whitespace alone changes the characters, not the words
    d = divergence(["a  b\n"], ["a b"])
    assert d.char_similarity[0] < 1.0
    assert d.token_similarity[0] == 1.0


def test_token_ids_are_compared_when_given():
    d = divergence(
        ["ab", "cd"], ["ab", "ce"],
        baseline_tokens=[[1, 2], np.array([3, 4, 5])],
        steered_tokens=[(1, 9), [3, 4, 5]],
    )
    np.testing.assert_allclose(d.token_similarity, [0.5, 1.0])
    np.testing.assert_allclose(d.char_similarity, [1.0, 0.5])


def test_token_ids_may_be_tensors():
    torch = pytest.importorskip("torch")
    d = divergence(["a"], ["a"], baseline_tokens=[torch.tensor([1, 2, 3])],
                   steered_tokens=torch.tensor([[1, 2, 4]]))
    assert d.token_similarity[0] == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(baseline_texts="abc", steered_texts=["abc"]),
         r"`baseline_texts` must be a list of strings .* got a single str \('abc'\); wrap it in a list"),
        (dict(baseline_texts=["abc"], steered_texts="abc"), r"`steered_texts` must be a list of strings"),
        (dict(baseline_texts=[], steered_texts=[]), r"`baseline_texts` is empty"),
        (dict(baseline_texts=["a", "b"], steered_texts=["a"]),
         r"`steered_texts` has 1 rows but `baseline_texts` has 2; pass one steered generation"),
        (dict(baseline_texts=["a", 3], steered_texts=["a", "b"]), r"`baseline_texts\[1\]` must be a str, got int"),
        (dict(baseline_texts=None, steered_texts=["a"]), r"`baseline_texts` must be a list of strings, got NoneType"),
        (dict(baseline_texts=["a"], steered_texts=["a"], baseline_tokens=[[1]]),
         r"`steered_tokens` is None but `baseline_tokens` was given; pass both"),
        (dict(baseline_texts=["a"], steered_texts=["a"], steered_tokens=[[1]]),
         r"`baseline_tokens` is None but `steered_tokens` was given"),
        (dict(baseline_texts=["a", "b"], steered_texts=["a", "b"], baseline_tokens=[[1]],
              steered_tokens=[[1], [2]]),
         r"`baseline_tokens` has 1 rows but the texts have 2"),
        (dict(baseline_texts=["a"], steered_texts=["a"], baseline_tokens=["a"], steered_tokens=[[1]]),
         r"`baseline_tokens\[0\]` must be a list of token ids, got a str"),
        (dict(baseline_texts=["a"], steered_texts=["a"], baseline_tokens=[[1]], steered_tokens="a"),
         r"`steered_tokens` must be a list of token-id lists .* got a single str"),
        (dict(baseline_texts=["a"], steered_texts=["a"], baseline_tokens=[[1]], steered_tokens=[None]),
         r"`steered_tokens\[0\]` must be a str or a list of token ids, got NoneType"),
    ],
)
def test_divergence_rejects_bad_input_naming_the_argument(kwargs, match):
    with pytest.raises(DataError, match=match):
        divergence(**kwargs)


def test_divergence_fields_must_be_one_length():
    with pytest.raises(DataError, match="1-D arrays of one length"):
        Divergence(char_similarity=np.ones(2), token_similarity=np.ones(3), length_ratio=np.ones(2))
