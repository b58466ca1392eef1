"""Sites: parsing, printing, and validation against a model's site table."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.errors import HarnessError, SiteError
from harness.models.sites import HEAD_POINTS, PATTERN_POINTS, POINTS, UNIT_POINTS, Site, SiteTable, StackShape, parse_site

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
plain_points = st.sampled_from([p for p in POINTS if p != "head" and p not in PATTERN_POINTS])


@st.composite
def sites(draw) -> Site:
    stack, layer = draw(stacks), draw(st.integers(-3, 200))
    kind = draw(st.sampled_from(["head", "pattern", "qkv", "units", "plain"]))
    if kind == "head":
        return Site(stack, layer, "head", head=draw(st.integers(-3, 128)))
    if kind == "pattern":
        return Site(stack, layer, draw(st.sampled_from(PATTERN_POINTS)), head=draw(st.integers(-3, 128)))
    if kind == "qkv":
        return Site(stack, layer, draw(st.sampled_from(HEAD_POINTS)), head=draw(st.integers(-3, 128)))
    if kind == "units":
        units = draw(st.lists(st.integers(-2, 5000), min_size=1, max_size=8, unique=True))
        return Site(stack, layer, draw(st.sampled_from(UNIT_POINTS)), units=tuple(units))
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
    assert "valid points are ['resid_pre', 'resid_mid', 'resid_post', 'attn_out', 'mlp_out', 'block_out', " \
           "'cross_attn_out', 'attn.head{h}', 'attn.q[.head{h}]', 'attn.k[.head{h}]', 'attn.v[.head{h}]', " \
           "'attn.scores.head{h}', 'attn.pattern.head{h}', 'mlp_pre[.neuron{i}]', 'mlp_pre_linear[.neuron{i}]', 'mlp_post[.neuron{i}]', 'final_norm_in', " \
           "'final_scale']" in message
    assert message.endswith("did you mean 'resid_post'?")


def test_the_bare_head_point_name_is_not_a_site_point():
    with pytest.raises(SiteError, match=r"has unknown point 'head'"):
        parse_site("blocks.2.head")


def test_a_site_built_with_an_unknown_point_is_an_error_with_a_suggestion():
    with pytest.raises(SiteError, match=r"`point` must be one of \[.*\], got 'mlp_ot'; did you mean 'mlp_out'\?"):
        Site("blocks", 2, "mlp_ot")


@pytest.mark.parametrize(("point", "head"), [("head", None), ("resid_post", 3), ("mlp_post", 1)])
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


# --------------------------------------------------------------------------- heads, keys/values and neurons

ALL_POINTS = FULL + ("resid_mid", "attn.q", "attn.k", "attn.v", "mlp_pre", "mlp_pre_linear", "mlp_post",
                     "final_norm_in", "final_scale")
# a Qwen2-like stack: 14 query heads sharing 2 key/value heads, d_mlp 64; and a parallel one
GQA = SiteTable("tiny:qwen2", (StackShape("blocks", n_layers=3, n_heads=14, d_model=56, d_head=4,
                                          points=ALL_POINTS, n_kv_heads=2, d_mlp=64),))
PARALLEL = SiteTable("tiny:gpt_neox", (StackShape(
    "blocks", n_layers=2, n_heads=4, d_model=32, d_head=8, d_mlp=48,
    points=tuple(p for p in ALL_POINTS if p not in ("resid_mid", "mlp_pre_linear")),
    lacks=(("resid_mid", "blocks of gpt_neox are parallel (...)"),)),))


@pytest.mark.parametrize(("text", "site"), [
    ("blocks.2.attn.q.head13", Site("blocks", 2, "attn.q", head=13)),
    ("blocks.2.attn.k.head1", Site("blocks", 2, "attn.k", head=1)),
    ("blocks.2.attn.v", Site("blocks", 2, "attn.v")),
    ("blocks.1.resid_mid", Site("blocks", 1, "resid_mid")),
    ("blocks.1.mlp_post.neuron45", Site("blocks", 1, "mlp_post", units=(45,))),
    ("blocks.1.mlp_pre.neurons[45:51]", Site("blocks", 1, "mlp_pre", units=(45, 46, 47, 48, 49, 50))),
    ("blocks.1.mlp_pre_linear.neurons[3, 17, 40:42]", Site("blocks", 1, "mlp_pre_linear", units=(3, 17, 40, 41))),
    ("blocks.3.final_scale", Site("blocks", 3, "final_scale")),
])
def test_the_new_points_parse_into_their_point_head_and_units(text, site):
    assert parse_site(text) == site
    assert parse_site(str(site)) == site


def test_unit_sets_print_as_one_neuron_a_range_or_a_list():
    assert str(Site("blocks", 1, "mlp_post", units=(45,))) == "blocks.1.mlp_post.neuron45"
    assert str(Site("blocks", 1, "mlp_post", units=range(45, 51))) == "blocks.1.mlp_post.neurons[45:51]"
    assert str(Site("blocks", 1, "mlp_post", units=[9, 2])) == "blocks.1.mlp_post.neurons[9,2]"


def test_sites_with_and_without_heads_or_units_sort_together():
    mixed = [Site("blocks", 1, "attn.q", head=2), Site("blocks", 1, "attn.q"),
             Site("blocks", 1, "mlp_post", units=(3,)), Site("blocks", 1, "mlp_post")]
    assert sorted(mixed) == [mixed[1], mixed[0], mixed[3], mixed[2]]


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(point="resid_post", units=(1,)), r"`units` \(neurons\) are addressable only on \['mlp_pre', 'mlp_pre_linear', "
                                           r"'mlp_post'\], got units for point 'resid_post'"),
    (dict(point="mlp_post", units=()), r"`units` is empty"),
    (dict(point="mlp_post", units=(3, 4, 3)), r"`units` must be distinct neuron indices, got \[3\] more than once"),
    (dict(point="mlp_post", units=(1.5,)), r"`units` must hold neuron indices \(ints\), got 1.5"),
    (dict(point="mlp_post", units="12"), r"`units` must be a sequence of neuron indices \(ints\), got '12'"),
    (dict(point="attn.q", head=True), r"`head` must be an int, got True"),
])
def test_a_bad_head_or_unit_selection_is_an_error(kwargs, message):
    with pytest.raises(SiteError, match=message):
        Site("blocks", 1, **kwargs)


@pytest.mark.parametrize(("text", "message"), [
    ("blocks.1.mlp_post.neurons[5:5]", r"the range '5:5' is empty; write a:b with a < b"),
    ("blocks.1.mlp_post.neurons[a]", r"`neurons\[...\]` must hold indices or ranges a:b .* got 'a'"),
    ("blocks.1.mlp_out.neuron3", r"has unknown point 'mlp_out.neuron3'"),
    ("blocks.1.attn.z.head3", r"has unknown point 'attn.z.head3'"),
])
def test_a_malformed_head_or_neuron_suffix_is_an_error(text, message):
    with pytest.raises(SiteError, match=message):
        parse_site(text)


def test_a_neuron_beyond_d_mlp_is_an_error_naming_the_range():
    assert GQA.validate("blocks.1.mlp_post.neuron63") == Site("blocks", 1, "mlp_post", units=(63,))
    with pytest.raises(SiteError, match=re.escape(
            "`units` must be neuron indices in 0..63 for mlp_post of blocks of tiny:qwen2 (d_mlp = 64), got 64")):
        GQA.validate("blocks.1.mlp_post.neuron64")
    with pytest.raises(SiteError, match=re.escape("got 64 (and 1 more)")):
        GQA.validate("blocks.1.mlp_pre.neurons[60:66]")


def test_keys_and_values_are_addressed_by_key_value_head_under_grouped_query_attention():
    assert GQA.validate("blocks.2.attn.k.head1").head == 1
    assert GQA.validate("blocks.2.attn.q.head13").head == 13
    with pytest.raises(SiteError, match=re.escape(
            "`head` must be a key/value head in 0..1 for attn.k of blocks of tiny:qwen2, got 9: under grouped-query "
            "attention its 14 query heads share 2 key/value heads, query head h reading key/value head h // 7; "
            "query head 9 reads key/value head 1: write 'blocks.2.attn.k.head1'")):
        GQA.validate("blocks.2.attn.k.head9")
    with pytest.raises(SiteError, match=r"`head` must be a key/value head in 0\.\.1 .* got 14: .* h // 7$"):
        GQA.validate("blocks.2.attn.v.head14")
    with pytest.raises(SiteError, match=re.escape("`head` must be in 0..13 for attn.q of blocks of tiny:qwen2 "
                                                  "(14 heads), got 14")):
        GQA.validate("blocks.2.attn.q.head14")


def test_a_point_a_stack_lacks_says_why():
    with pytest.raises(SiteError, match=re.escape(
            "`point` 'resid_mid' is no site of blocks of tiny:gpt_neox: blocks of gpt_neox are parallel (...); "
            "its points are [")):
        PARALLEL.validate("blocks.1.resid_mid")


@pytest.mark.parametrize("point", ["final_scale", "final_norm_in"])
def test_the_final_norm_points_exist_only_at_the_last_layer(point):
    assert GQA.validate(f"blocks.3.{point}").layer == 3
    with pytest.raises(SiteError, match=re.escape(
            f"`layer` must be 3 (the last block: {point} belongs to the final norm) for {point} of blocks of "
            "tiny:qwen2, got 2")):
        GQA.validate(f"blocks.2.{point}")


def test_widths_follow_heads_key_value_heads_units_and_the_scale():
    shape = GQA.stack("blocks")
    widths = {text: shape.width(parse_site(text)) for text in (
        "blocks.1.attn.q", "blocks.1.attn.k", "blocks.1.attn.v.head0", "blocks.1.attn.q.head3", "blocks.1.attn.head3",
        "blocks.1.mlp_post", "blocks.1.mlp_pre.neurons[4:9]", "blocks.1.resid_mid", "blocks.3.final_scale")}
    assert widths == {"blocks.1.attn.q": 56, "blocks.1.attn.k": 8, "blocks.1.attn.v.head0": 4,
                      "blocks.1.attn.q.head3": 4, "blocks.1.attn.head3": 4, "blocks.1.mlp_post": 64,
                      "blocks.1.mlp_pre.neurons[4:9]": 5, "blocks.1.resid_mid": 56, "blocks.3.final_scale": 1}


def test_all_sites_lists_query_heads_key_value_heads_mlp_layers_and_the_final_norm_once():
    assert len(GQA.all_sites("attn.q")) == 3 * 14
    assert GQA.all_sites("attn.k")[:3] == [Site("blocks", 1, "attn.k", head=0), Site("blocks", 1, "attn.k", head=1),
                                          Site("blocks", 2, "attn.k", head=0)]
    assert GQA.all_sites("mlp_post") == [Site("blocks", layer, "mlp_post") for layer in (1, 2, 3)]
    assert GQA.all_sites("final_scale") == [Site("blocks", 3, "final_scale")]
    assert PARALLEL.all_sites("resid_mid") == []
    assert all(GQA.validate(s) == s for p in ALL_POINTS for s in GQA.all_sites(p))
