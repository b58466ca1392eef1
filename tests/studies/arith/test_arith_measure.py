"""The arithmetic study's own measurements: re-bracketing, patching pairs and the patched run,
and the errors bad input gets (a head out of range, pairs of different lengths, no pairs)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from claims.arith import measure
from claims.arith.rebracket import bracketings, inside_parentheses, rebracket, terms_and_operators, value
from harness.errors import DataError, SiteError
from tests._support.arith_rows import row


def test_terms_keep_products_whole():
    assert terms_and_operators("41-((6+9)-(2*3))=") == (["41", "6", "9", "2*3"], ["-", "+", "-"])


@pytest.mark.parametrize("expression", ["41-((6+9)-7)=", "(7-2)+(0+5)=", "((1+2)-(3*4))+5=", "3-(4*5)="])
def test_every_bracketing_has_the_same_characters_and_length(expression):
    options = bracketings(expression)
    assert expression in options
    assert len(set(options)) == len(options)
    for other in options:
        assert len(other) == len(expression)
        assert sorted(other) == sorted(expression)


def test_rebracketing_changes_the_value_or_gives_none():
    rng = random.Random(0)
    other = rebracket("41-((6+9)-7)=", rng)
    assert other is not None and value(other) != 33 and len(other) == len("41-((6+9)-7)=")
    assert rebracket("1+(2+3)=", rng) is None      # every bracketing is worth 6
    assert rebracket("6-(0*3)=", rng) is None      # one term pair: one bracketing


def test_inside_parentheses_marks_the_groups_with_their_parentheses():
    assert inside_parentheses("4-(1-5)=") == [False, False, True, True, True, True, True, False]


def test_a_non_expression_is_refused():
    with pytest.raises(ValueError, match="not an arithmetic expression"):
        terms_and_operators("import os=")


def test_pairs_differ_only_in_their_bracketing():
    rows = [row(e) for e in ("41-((6+9)-7)=", "(7-2)+(0+5)=", "1+(2+3)=", "3+4-5=")]
    pairs = measure.rebracketed_pairs(rows, np.array([True, True, True, True]), clean_correct=True, n=10, seed=0)
    assert sorted(pairs.clean) == ["(7-2)+(0+5)=", "41-((6+9)-7)="]   # 1+(2+3) has no other value
    for clean, corrupt, answer, contrast in zip(pairs.clean, pairs.corrupt, pairs.answers, pairs.contrasts):
        assert sorted(clean) == sorted(corrupt) and clean != corrupt
        assert answer == str(value(clean)) != contrast == str(value(corrupt))


def test_no_pairs_is_an_error_that_says_what_is_missing():
    rows = [row("41-((6+9)-7)="), row("3+4-5=")]
    with pytest.raises(DataError, match="no patching pairs: none of the 1 parenthesised rows is answered correctly"):
        measure.rebracketed_pairs(rows, np.array([False, True]), clean_correct=True, n=10, seed=0)


def test_pairs_of_different_lengths_are_refused_not_truncated(arith):
    pairs = measure.Pairs(["41-((6+9)-7)="], ["4-(1-5)="], ["33"], ["8"])
    with pytest.raises(DataError, match=r"pair 0: source '41-\(\(6\+9\)-7\)=' has 13 tokens but target '4-\(1-5\)=' "
                                        r"has 8; .*same token length"):
        measure.patched(arith, pairs, ["blocks.1.attn.head0"])


def test_positions_must_cover_each_prompt(arith):
    pairs = measure.Pairs(["4-(1-5)="], ["(4-1)-5="], ["8"], ["-2"])
    with pytest.raises(DataError, match=r"positions\[0\] has 3 entries for a 8-token prompt"):
        measure.patched(arith, pairs, ["blocks.1.attn.head0"], [[True] * 3])


def test_a_head_out_of_range_names_the_range(arith):
    pairs = measure.Pairs(["4-(1-5)="], ["(4-1)-5="], ["8"], ["-2"])
    with pytest.raises(SiteError, match=r"`head` must be in 0..3"):
        measure.patched(arith, pairs, [measure.head_site("layer1-head9")])
    with pytest.raises(DataError, match="not of the form 'layerL-headH'"):
        measure.head_id("L1H2")


def test_patching_a_head_from_its_own_prompt_changes_nothing(arith):
    pairs = measure.Pairs(["4-(1-5)=", "(7-2)+(0+5)="], ["4-(1-5)=", "(7-2)+(0+5)="], ["8", "10"], ["-2", "0"])
    plain = measure.patched(arith, pairs, source="clean", target="clean")
    same = measure.patched(arith, pairs, ["blocks.2.attn.head1", "blocks.1.attn.head0"])
    np.testing.assert_allclose(same.logit_diff, plain.logit_diff, atol=1e-5)
    assert (same.exact == plain.exact).all()


def test_patching_at_no_position_is_the_corrupt_run(arith):
    pairs = measure.Pairs(["4-(1-5)="], ["(4-1)-5="], ["8"], ["-2"])
    corrupt = measure.patched(arith, pairs)
    none = measure.patched(arith, pairs, ["blocks.1.attn.head0"], [[False] * 8])
    np.testing.assert_allclose(none.logit_diff, corrupt.logit_diff, atol=1e-5)


def test_batched_equals_one_pair_at_a_time(arith):
    clean = ["41-((6+9)-7)=", "(7-2)+(0+5)=", "4-(1-5)="]
    corrupt = [rebracket(c, random.Random(1)) for c in clean]
    pairs = measure.Pairs(clean, corrupt, [str(value(c)) for c in clean], [str(value(c)) for c in corrupt])
    together = measure.patched(arith, pairs, ["blocks.1.attn.head0"])
    for i in range(len(clean)):
        alone = measure.patched(arith, pairs.take(np.arange(len(clean)) == i), ["blocks.1.attn.head0"])
        np.testing.assert_allclose(alone.logit_diff, together.logit_diff[i: i + 1], atol=1e-4)
        assert alone.exact[0] == together.exact[i]
