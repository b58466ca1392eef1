"""Sites: parsing, printing, and validation against a model's site table."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.errors import HarnessError, SiteError
from harness.models.sites import POINTS, Site, SiteTable, StackShape, parse_site

FULL = ("resid_pre", "resid_post", "attn_out", "mlp_out", "block_out", "head")

# the shape of fixture:tacgen (ByT5-small): 12 encoder blocks, 4 decoder blocks, 6 heads
TABLE = SiteTable(
    "fixture:tacgen",
    (
        StackShape("encoder", n_layers=12, n_heads=6, d_model=32, d_head=8, points=FULL),
        StackShape("decoder", n_layers=4, n_heads=6, d_model=32, d_head=8, points=FULL + ("cross_attn_out",)),
    ),
)

stacks = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
plain_points = st.sampled_from([p for p in POINTS if p != "head"])


@st.composite
def sites(draw) -> Site:
    stack, layer = draw(stacks), draw(st.integers(-3, 200))
    if draw(st.booleans()):
        return Site(stack, layer, "head", head=draw(st.integers(-3, 128)))
    return Site(stack, layer, draw(plain_points))


# --------------------------------------------------------------------------- parse and print


@given(sites())
def test_a_site_parses_back_from_the_string_it_prints(site):
    assert parse_site(str(site)) == site
    assert Site.parse(str(site)) == site


@given(stacks, st.integers(0, 200), plain_points)
def test_a_canonical_site_string_prints_back_unchanged(stack, layer, point):
    text = f"{stack}.{layer}.{point}"
    assert str(parse_site(text)) == text


def test_a_head_site_parses_into_the_head_point_and_its_index():
    site = parse_site("blocks.2.attn.head11")
    assert site == Site("blocks", 2, "head", head=11)
    assert site.point_name == "attn.head11"
    assert str(site) == "blocks.2.attn.head11"


def test_surrounding_whitespace_is_ignored():
    assert parse_site("  encoder.12.resid_post\n") == Site("encoder", 12, "resid_post")


def test_sites_are_hashable_values():
    assert {parse_site("encoder.3.mlp_out"), Site("encoder", 3, "mlp_out")} == {Site("encoder", 3, "mlp_out")}


def test_a_site_that_is_not_a_string_is_an_error():
    with pytest.raises(SiteError, match=r"a site must be a string like 'encoder.12.resid_post', got 12"):
        parse_site(12)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["encoder.resid_post", "encoder", "", "encoder.x.resid_post", "1enc.3.resid_post"])
def test_a_string_not_of_the_form_stack_layer_point_is_an_error(text):
    with pytest.raises(SiteError, match=re.escape(f"site {text!r} is not of the form STACK.LAYER.POINT")):
        parse_site(text)


def test_an_unknown_point_lists_the_valid_points_and_suggests_the_closest():
    with pytest.raises(SiteError) as info:
        parse_site("encoder.12.resid_pst")
    message = str(info.value)
    assert "has unknown point 'resid_pst'" in message
    assert "valid points are ['resid_pre', 'resid_post', 'attn_out', 'mlp_out', 'block_out', " \
           "'cross_attn_out', 'attn.head{h}']" in message
    assert message.endswith("did you mean 'resid_post'?")


def test_the_bare_head_point_name_is_not_a_site_point():
    with pytest.raises(SiteError, match=r"has unknown point 'head'"):
        parse_site("blocks.2.head")


def test_a_site_built_with_an_unknown_point_is_an_error_with_a_suggestion():
    with pytest.raises(SiteError, match=r"`point` must be one of \[.*\], got 'mlp_ot'; did you mean 'mlp_out'\?"):
        Site("blocks", 2, "mlp_ot")


@pytest.mark.parametrize(("point", "head"), [("head", None), ("resid_post", 3)])
def test_a_head_index_is_required_exactly_for_the_head_point(point, head):
    with pytest.raises(SiteError, match=r"`head` is required exactly for the per-head point"):
        Site("blocks", 2, point, head=head)


def test_site_errors_are_harness_errors_and_value_errors():
    with pytest.raises(HarnessError):
        parse_site("nonsense")
    with pytest.raises(ValueError):
        parse_site("nonsense")


# --------------------------------------------------------------------------- validation against a table


@pytest.mark.parametrize("text", ["encoder.0.resid_post", "encoder.12.resid_post", "encoder.1.resid_pre",
                                  "encoder.12.block_out", "decoder.4.cross_attn_out", "decoder.1.attn.head5"])
def test_a_site_the_model_has_validates_to_itself(text):
    assert TABLE.validate(text) == parse_site(text)
    assert TABLE.validate(parse_site(text)) == parse_site(text)


def test_an_unknown_stack_lists_the_stacks_and_suggests_the_closest():
    with pytest.raises(SiteError, match=re.escape(
            "`stack` must be one of ['encoder', 'decoder'] for fixture:tacgen, got 'encodr'; "
            "did you mean 'encoder'?")):
        TABLE.validate("encodr.3.resid_post")


def test_a_point_the_stack_lacks_lists_the_points_it_has():
    with pytest.raises(SiteError, match=re.escape(
            "`point` must be one of ['resid_pre', 'resid_post', 'attn_out', 'mlp_out', 'block_out', "
            "'attn.head{h}'] for encoder of fixture:tacgen, got 'cross_attn_out'")):
        TABLE.validate("encoder.3.cross_attn_out")


def test_a_layer_past_the_last_lists_the_range_and_says_where_the_final_norm_is():
    with pytest.raises(SiteError, match=re.escape(
            "`layer` must be in 0..12 for resid_post of encoder of fixture:tacgen, got 13; "
            "layer 12 is the output after the final norm")):
        TABLE.validate("encoder.13.resid_post")


def test_the_layer_range_depends_on_the_stack():
    with pytest.raises(SiteError, match=re.escape(
            "`layer` must be in 1..4 for mlp_out of decoder of fixture:tacgen, got 5")):
        TABLE.validate("decoder.5.mlp_out")


def test_layer_zero_of_a_block_point_says_blocks_count_from_one():
    with pytest.raises(SiteError, match=re.escape(
            "`layer` must be in 1..12 for attn_out of encoder of fixture:tacgen, got 0; blocks are "
            "counted from 1 (layer 0 exists only as resid_post, the embeddings)")):
        TABLE.validate("encoder.0.attn_out")


def test_a_negative_layer_is_out_of_range():
    with pytest.raises(SiteError, match=r"`layer` must be in 0\.\.12 for resid_post of encoder .* got -1"):
        TABLE.validate("encoder.-1.resid_post")


@pytest.mark.parametrize("head", [6, -1])
def test_a_head_out_of_range_lists_the_heads_of_the_stack(head):
    with pytest.raises(SiteError, match=re.escape(
            f"`head` must be in 0..5 for encoder of fixture:tacgen (6 heads), got {head}")):
        TABLE.validate(f"encoder.3.attn.head{head}")


def test_a_bad_site_string_is_reported_by_validate_as_a_parse_error():
    with pytest.raises(SiteError, match=r"is not of the form STACK.LAYER.POINT"):
        TABLE.validate("encoder/3/resid_post")


# --------------------------------------------------------------------------- all_sites


def test_all_sites_lists_every_layer_of_every_stack_in_order():
    got = TABLE.all_sites("resid_post")
    assert got == ([Site("encoder", layer, "resid_post") for layer in range(13)]
                   + [Site("decoder", layer, "resid_post") for layer in range(5)])
    assert all(TABLE.validate(s) == s for s in got)


def test_all_sites_of_a_block_point_start_at_layer_one():
    assert [s.layer for s in TABLE.all_sites("mlp_out", "decoder")] == [1, 2, 3, 4]


def test_all_sites_of_the_head_point_lists_every_head_of_every_layer():
    got = TABLE.all_sites("head", "encoder")
    assert len(got) == 12 * 6
    assert got[:7] == [Site("encoder", 1, "head", head=h) for h in range(6)] + [Site("encoder", 2, "head", head=0)]


def test_all_sites_skips_stacks_that_lack_the_point():
    assert {s.stack for s in TABLE.all_sites("cross_attn_out")} == {"decoder"}
    assert TABLE.all_sites("cross_attn_out", "encoder") == []


def test_all_sites_of_an_unknown_point_is_an_error_not_an_empty_list():
    with pytest.raises(SiteError, match=r"`point` must be one of \[.*\], got 'resid'; did you mean 'resid_pre'\?"):
        TABLE.all_sites("resid")


def test_all_sites_of_an_unknown_stack_is_an_error_not_an_empty_list():
    with pytest.raises(SiteError, match=r"`stack` must be one of \['encoder', 'decoder'\] for fixture:tacgen, got 'blocks'"):
        TABLE.all_sites("resid_post", "blocks")
