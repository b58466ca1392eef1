"""Interventions: what each one does at its site, where it acts, and the errors it raises."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from harness.errors import InterventionError, ShapeError
from harness.interventions import (
    Ablate,
    Add,
    Context,
    Interchange,
    Noise,
    Patch,
    Positions,
    Record,
    RmsAdd,
    check_acted,
    intervene,
    noise_draw,
)
from harness.measures.directions import Direction
from harness.models.loaded import LoadedModel, pad_rows
from harness.models.sites import Site
from tests._support.tiny import tiny_model

TEXTS = ["hello world, this is long", "hi", "abcdef"]  # 26, 3 and 7 tokens with </s>
LENGTHS = [26, 3, 7]
OTHER = ["HELLO WORLD, THIS IS LONG", "HI", "ABCDEF"]  # the same lengths, other tokens
SITE = "blocks.3.resid_post"
HEAD = "blocks.3.attn.head2"


@pytest.fixture(scope="module")
def m() -> LoadedModel:
    return tiny_model("gpt2")


def batch(m: LoadedModel, texts=TEXTS) -> tuple[torch.Tensor, torch.Tensor]:
    return pad_rows(m.tokenize(texts), pad_id=m.pad_id)


def forward(m: LoadedModel, plan, texts=TEXTS):
    """Run the model under `plan`; returns the run, the logits and the attention mask."""
    ids, mask = batch(m, texts)
    with torch.no_grad(), intervene(m, plan, masks={"blocks": mask}) as run:
        logits = m.module(input_ids=ids, attention_mask=mask).logits
    return run, logits, mask


def at_site(m: LoadedModel, site: str, *chain, texts=TEXTS) -> torch.Tensor:
    """The activation at `site` after `chain` acted there (a plain read when `chain` is empty)."""
    run, _, _ = forward(m, {site: [*chain, Record()]}, texts)
    return run.recorded[m.site(site)]


def direction(m: LoadedModel, site: str, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m.width(m.site(site)), generator=g)


def real_mask(m: LoadedModel, texts=TEXTS) -> torch.Tensor:
    return batch(m, texts)[1].bool()


# --------------------------------------------------------------------------- positions


def test_positions_all_is_every_real_token():
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    assert torch.equal(Positions.all().resolve(mask), mask.bool())


def test_positions_last_is_the_last_real_token_not_the_last_column():
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    got = Positions.last().resolve(mask)
    assert got.nonzero().tolist() == [[0, 2], [1, 4], [2, 0]]


def test_positions_of_spans_marks_each_rows_spans():
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    got = Positions.of_spans([[(1, 3)], [(0, 1), (3, 5)]]).resolve(mask)
    assert got.int().tolist() == [[0, 1, 1, 0, 0], [1, 0, 0, 1, 1]]


def test_positions_of_mask_never_includes_padding():
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    got = Positions.of_mask(torch.ones(2, 3)).resolve(mask)
    assert torch.equal(got, mask.bool())


@pytest.mark.parametrize("span", [(3, 3), (4, 2), (-1, 2)])
def test_an_empty_or_reversed_span_is_an_error(span):
    with pytest.raises(InterventionError, match=re.escape(
            f"`spans` row 0 has span {span}; a span is [start, end) with 0 <= start < end")):
        Positions.of_spans([[span]])


def test_a_span_list_with_the_wrong_number_of_rows_is_a_shape_error():
    with pytest.raises(ShapeError, match=r"`spans` has 1 rows but the batch has 2; give one list of spans per row"):
        Positions.of_spans([[(0, 1)]]).resolve(torch.ones(2, 4))


def test_a_span_past_the_rows_real_tokens_is_a_shape_error():
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    with pytest.raises(ShapeError, match=re.escape(
            "span (2, 5) of row 1 runs past its 3 real tokens; spans index tokens of the unpadded row")):
        Positions.of_spans([[(0, 5)], [(2, 5)]]).resolve(mask)


def test_a_position_mask_that_is_not_two_dimensional_is_a_shape_error():
    with pytest.raises(ShapeError, match=re.escape("`mask` must be [batch, pos], got shape (4,)")):
        Positions.of_mask(torch.ones(4))


def test_a_position_mask_of_another_shape_than_the_batch_is_a_shape_error(m):
    positions = Positions.of_mask(torch.ones(3, 4))
    with pytest.raises(ShapeError, match=re.escape(
            "position `mask` has shape (3, 4) but the batch is (3, 26) [batch, pos]")):
        forward(m, {SITE: Add(direction(m, SITE), positions=positions)})


# --------------------------------------------------------------------------- what each intervention does


def test_record_captures_the_activation_detached(m):
    run, _, _ = forward(m, {SITE: Record(), HEAD: Record()})
    act = run.recorded[m.site(SITE)]
    assert act.shape == (3, 26, 48) and not act.requires_grad
    assert run.recorded[m.site(HEAD)].shape == (3, 26, 4)
    assert run.calls == {m.site(SITE): 1, m.site(HEAD): 1}


def test_record_keeps_a_copy_that_later_edits_do_not_touch(m):
    run, _, _ = forward(m, {SITE: [Record(), Add(direction(m, SITE), alpha=5.0)]})
    assert torch.equal(run.recorded[m.site(SITE)], at_site(m, SITE))


def test_add_adds_alpha_times_the_direction_at_every_real_token_and_nowhere_else(m):
    d = direction(m, SITE)
    delta = at_site(m, SITE, Add(d, alpha=2.5)) - at_site(m, SITE)
    real = real_mask(m)
    assert torch.allclose(delta[real], (2.5 * d).expand(int(real.sum()), -1), atol=1e-5)
    assert torch.equal(delta[~real], torch.zeros_like(delta[~real]))


def test_a_per_row_alpha_scales_each_row_by_its_own_alpha(m):
    d, alpha = direction(m, SITE), torch.tensor([1.0, 0.0, -3.0])
    delta = at_site(m, SITE, Add(d, alpha=alpha, positions=Positions.last())) - at_site(m, SITE)
    for row, (length, a) in enumerate(zip(LENGTHS, alpha)):
        assert torch.allclose(delta[row, length - 1], a * d, atol=1e-5)
        delta[row, length - 1] = 0
    assert delta.abs().max() == 0


def test_rms_add_changes_the_site_by_alpha_times_its_rms_times_the_direction(m):
    d, base = direction(m, SITE), at_site(m, SITE)
    alpha = torch.tensor([0.5, -1.0, 2.0])
    delta = at_site(m, SITE, RmsAdd(d, alpha=alpha)) - base
    rms = base.pow(2).mean(-1, keepdim=True).sqrt()
    expected = alpha[:, None, None] * rms * d
    real = real_mask(m)
    assert torch.allclose(delta[real], expected[real], atol=1e-5, rtol=1e-5)
    assert delta[~real].abs().max() == 0


def test_patch_replaces_the_activation_with_the_source_at_the_chosen_positions(m):
    source = torch.randn(3, 26, 48)
    spans = Positions.of_spans([[(0, 4)], [(1, 3)], []])
    got = at_site(m, SITE, Patch(source, positions=spans))
    base, where = at_site(m, SITE), spans.resolve(batch(m)[1])
    assert torch.equal(got[where], source[where])
    assert torch.equal(got[~where], base[~where])


def test_patching_every_position_of_a_run_reproduces_that_runs_logits(m):
    donor_run, donor_logits, mask = forward(m, {SITE: Record()}, OTHER)
    _, patched, _ = forward(m, {SITE: Patch(donor_run.recorded[m.site(SITE)])}, TEXTS)
    _, plain, _ = forward(m, {}, TEXTS)
    real = mask.bool()
    assert torch.allclose(patched[real], donor_logits[real], atol=1e-5)
    assert not torch.allclose(plain[real], donor_logits[real], atol=1e-2)


def test_ablate_zero_sets_the_chosen_positions_to_zero(m):
    got = at_site(m, SITE, Ablate.zero(positions=Positions.last()))
    last = Positions.last().resolve(batch(m)[1])
    assert got[last].abs().max() == 0
    assert torch.equal(got[~last], at_site(m, SITE)[~last])


def test_ablate_mean_sets_the_site_to_the_mean_over_the_references_real_tokens(m):
    reference, mask = at_site(m, SITE, texts=OTHER), real_mask(m, OTHER)
    mean = reference[mask].mean(0)
    got = at_site(m, SITE, Ablate.mean(reference, mask.long()))
    assert torch.allclose(got[real_mask(m)], mean.expand(int(mask.sum()), -1), atol=1e-5)


def test_ablate_mean_without_a_mask_averages_every_position():
    reference = torch.arange(12.0).reshape(2, 3, 2)
    assert torch.equal(Ablate.mean(reference).value, torch.tensor([5.0, 6.0]))


def test_ablate_resample_puts_the_donors_activation_in_place(m):
    donor = at_site(m, SITE, texts=OTHER)
    got = at_site(m, SITE, Ablate.resample(donor))
    real = real_mask(m)
    assert torch.equal(got[real], donor[real])


def test_noise_with_the_same_seed_gives_the_same_result(m):
    a = at_site(m, SITE, Noise(std=0.5, seed=7))
    b = at_site(m, SITE, Noise(std=0.5, seed=7))
    c = at_site(m, SITE, Noise(std=0.5, seed=8))
    assert torch.equal(a, b)
    assert not torch.allclose(a[real_mask(m)], c[real_mask(m)])
    assert not torch.allclose(a[real_mask(m)], at_site(m, SITE)[real_mask(m)])


def test_noise_of_a_row_is_drawn_from_the_seed_its_real_tokens_and_the_position_among_them():
    act, where = torch.zeros(2, 3, 4), torch.ones(2, 3, dtype=torch.bool)
    real = torch.tensor([[1, 1, 1], [0, 1, 1]])  # row 1 left-padded: its real tokens are 7, 8
    ids = torch.tensor([[5, 6, 7], [0, 7, 8]])
    got = Noise(std=2.0, seed=10).apply(act, where, Site("blocks", 1, "resid_post"), None,
                                        Context(real=real.bool(), input_ids=ids))
    expected = 2.0 * torch.stack([noise_draw(10, [7, 8], k, 4) for k in range(2)])
    assert torch.equal(got[1, 1:], expected)
    assert got[1, 0].abs().max() == 0


def test_a_list_of_interventions_at_one_site_applies_in_order(m):
    d = direction(m, SITE)
    source = torch.zeros(3, 26, 48)
    patch_then_add = at_site(m, SITE, Patch(source), Add(d, alpha=1.0))
    add_then_patch = at_site(m, SITE, Add(d, alpha=1.0), Patch(source))
    real = real_mask(m)
    assert torch.allclose(patch_then_add[real], d.expand(int(real.sum()), -1))
    assert add_then_patch[real].abs().max() == 0
    twice = at_site(m, SITE, Add(d, alpha=1.0), Add(d, alpha=2.0)) - at_site(m, SITE)
    assert torch.allclose(twice[real], 3 * d.expand(int(real.sum()), -1), atol=1e-5)


def test_an_intervention_at_a_head_changes_only_that_heads_columns(m):
    d, site = direction(m, HEAD), m.site(HEAD)
    o_proj = m.module.transformer.h[2].get_submodule(m.layout.stacks[0].head_in)  # block 3's
    ids, mask = batch(m)
    seen = []
    for plan in ({}, {site: Add(d, alpha=1.0)}):
        with torch.no_grad(), intervene(m, plan, masks={"blocks": mask}):
            # registered after the intervention's hook, so it sees the edited input
            handle = o_proj.register_forward_pre_hook(lambda mod, args: seen.append(args[0].clone()))
            try:
                m.module(input_ids=ids, attention_mask=mask)
            finally:
                handle.remove()
    delta = seen[1] - seen[0]
    real = mask.bool()
    assert torch.allclose(delta[real][:, 8:12], d.expand(int(real.sum()), -1), atol=1e-6)
    delta[..., 8:12] = 0
    assert delta.abs().max() == 0


@pytest.mark.parametrize("make", [
    lambda m, d: Add(d, alpha=3.0),
    lambda m, d: RmsAdd(d, alpha=3.0),
    lambda m, d: Patch(torch.randn(3, 26, 48)),
    lambda m, d: Ablate.zero(),
    lambda m, d: Ablate.mean(torch.randn(2, 5, 48)),
    lambda m, d: Ablate.resample(torch.randn(3, 26, 48)),
    lambda m, d: Noise(std=1.0, seed=0),
    lambda m, d: Add(d, positions=Positions.of_mask(torch.ones(3, 26))),
], ids=["add", "rms_add", "patch", "ablate_zero", "ablate_mean", "resample", "noise", "mask"])
def test_padding_positions_are_never_changed(m, make):
    got, base = at_site(m, SITE, make(m, direction(m, SITE))), at_site(m, SITE)
    real = real_mask(m)
    assert torch.equal(got[~real], base[~real])
    assert not torch.equal(got[real], base[real])


def test_interventions_act_at_encoder_and_decoder_sites_of_t5():
    t5 = tiny_model("byt5-small")
    ids, mask = pad_rows(t5.tokenize(["hello", "a"]), pad_id=0)
    dec_ids, dec_mask = pad_rows([[0, 40, 41], [0]], pad_id=0)

    def run(plan):
        with torch.no_grad(), intervene(t5, plan, masks={"encoder": mask, "decoder": dec_mask}) as r:
            t5.module(input_ids=ids, attention_mask=mask, decoder_input_ids=dec_ids, decoder_attention_mask=dec_mask)
        return r.recorded

    d = torch.randn(32)
    for site in ("encoder.5.resid_post", "decoder.2.cross_attn_out"):
        s = t5.site(site)
        delta = run({s: [Add(d), Record()]})[s] - run({s: Record()})[s]
        real = (mask if s.stack == "encoder" else dec_mask).bool()
        assert torch.allclose(delta[real], d.expand(int(real.sum()), -1), atol=1e-5)
        assert delta[~real].abs().max() == 0


# --------------------------------------------------------------------------- shape and input errors


def test_a_direction_of_the_wrong_width_is_a_shape_error_naming_the_site(m):
    with pytest.raises(ShapeError, match=re.escape(
            "`direction` must have shape [48] for site blocks.3.resid_post, got (47,) (directions are not broadcast)")):
        forward(m, {SITE: Add(torch.ones(47))})


def test_a_direction_for_a_head_must_have_the_head_width(m):
    with pytest.raises(ShapeError, match=re.escape(
            "`direction` must have shape [4] for site blocks.3.attn.head2, got (48,)")):
        forward(m, {HEAD: RmsAdd(torch.ones(48))})


def test_a_direction_is_never_broadcast_from_a_matrix(m):
    with pytest.raises(ShapeError, match=re.escape("got (1, 48)")):
        forward(m, {SITE: Add(torch.ones(1, 48))})


def test_a_per_row_alpha_of_the_wrong_length_is_a_shape_error(m):
    with pytest.raises(ShapeError, match=re.escape(
            "per-row `alpha` must have shape [3] (one per batch row) at site blocks.3.resid_post, got (2,)")):
        forward(m, {SITE: Add(direction(m, SITE), alpha=torch.ones(2))})


def test_a_patch_source_of_another_shape_is_a_shape_error(m):
    with pytest.raises(ShapeError, match=re.escape(
            "patch `source` has shape (3, 25, 48) but the activation at blocks.3.resid_post is (3, 26, 48) "
            "[batch, pos, d]")):
        forward(m, {SITE: Patch(torch.zeros(3, 25, 48))})


def test_a_mean_of_the_wrong_width_is_a_shape_error_naming_the_reference(m):
    with pytest.raises(ShapeError, match=re.escape(
            "the mean of `Ablate.mean`'s reference must have shape [4] for site blocks.3.attn.head2, got (48,)")):
        forward(m, {HEAD: Ablate.mean(torch.zeros(1, 2, 48))})


def test_ablate_mean_needs_a_three_dimensional_reference():
    with pytest.raises(ShapeError, match=re.escape("`reference` must be [n, pos, d], got (5, 48)")):
        Ablate.mean(torch.zeros(5, 48))


def test_ablate_mean_needs_the_mask_of_the_reference_batch():
    with pytest.raises(ShapeError, match=re.escape(
            "`attention_mask` has shape (2, 4) but `reference` is (2, 5, 8); give the mask of the reference batch")):
        Ablate.mean(torch.zeros(2, 5, 8), torch.ones(2, 4))


def test_ablate_resample_needs_a_three_dimensional_donor():
    with pytest.raises(ShapeError, match=re.escape("`donor` must be [batch, pos, d], got (5,)")):
        Ablate.resample(torch.zeros(5))


def test_an_unknown_ablation_kind_is_an_error_when_the_ablate_is_made():
    with pytest.raises(InterventionError, match=re.escape(
            "`kind` of Ablate must be 'zero', 'mean' or 'resample', got 'bogus'; use Ablate.zero(), "
            "Ablate.mean(reference) or Ablate.resample(donor)")):
        Ablate("bogus")


def test_a_zero_ablation_with_a_value_is_an_error():
    with pytest.raises(InterventionError, match=re.escape("`value` of a zero Ablate must be None, got Tensor")):
        Ablate("zero", torch.zeros(48))


def test_something_that_is_not_an_intervention_is_an_error(m):
    """The listed kinds are the public ones, whatever was imported before (the patching engine
    defines a private kind)."""
    import harness.measures.patching_engine  # noqa: F401

    with pytest.raises(InterventionError, match=re.escape(
            "intervention at blocks.3.resid_post must be an Intervention, one of "
            "['Record', 'Add', 'RmsAdd', 'Patch', 'Interchange', 'Ablate', 'ProjectOut', 'Noise'] or a subclass of "
            "harness.interventions.Intervention, got Tensor")):
        forward(m, {SITE: torch.ones(48)})


def test_a_site_without_an_attention_mask_for_its_stack_is_an_error(m):
    ids, mask = batch(m)
    with pytest.raises(InterventionError, match=re.escape(
            "no attention mask for stack 'blocks' (site blocks.3.resid_post); pass "
            "masks={'blocks': attention_mask} to intervene()")):
        with intervene(m, {SITE: Record()}, masks={}):
            m.module(input_ids=ids, attention_mask=mask)


def test_an_attention_mask_of_another_batch_is_a_shape_error(m):
    ids, mask = batch(m)
    with pytest.raises(ShapeError, match=re.escape(
            "activation at blocks.3.resid_post is (3, 26, 48) but the blocks attention mask is (3, 5) "
            "[batch, pos]; pass the mask of this forward's batch")):
        with intervene(m, {SITE: Record()}, masks={"blocks": mask[:, :5]}):
            m.module(input_ids=ids, attention_mask=mask)


def test_an_input_site_called_without_its_input_is_an_error(m):
    block = m.module.transformer.h[3]
    with pytest.raises(InterventionError, match=r"GPT2Block was called without a positional input or "
                                                r"`hidden_states`; this site cannot be hooked"):
        with intervene(m, {"blocks.4.resid_pre": Record()}, masks={"blocks": torch.ones(1, 2)}):
            block()


def test_an_activation_of_another_width_than_the_site_is_a_shape_error(m):
    with pytest.raises(ShapeError, match=re.escape("activation at blocks.4.resid_pre has width 10, expected 48")):
        with intervene(m, {"blocks.4.resid_pre": Record()}, masks={"blocks": torch.ones(1, 2)}):
            m.module.transformer.h[3](torch.randn(1, 2, 10))


def test_an_input_site_reads_hidden_states_passed_by_keyword(m):
    x = torch.randn(1, 2, 48)
    with torch.no_grad(), intervene(m, {"blocks.4.resid_pre": Record()}, masks={"blocks": torch.ones(1, 2)}) as run:
        m.module.transformer.h[3](hidden_states=x)
    assert torch.equal(run.recorded[m.site("blocks.4.resid_pre")], x)


# --------------------------------------------------------------------------- Directions as vectors


def test_add_and_rms_add_take_a_direction_and_act_as_its_vector(m):
    d = direction(m, SITE)
    as_direction = Direction(d, SITE, "test")
    for kind in (Add, RmsAdd):
        assert torch.equal(at_site(m, SITE, kind(as_direction, alpha=1.5)), at_site(m, SITE, kind(d, alpha=1.5)))


def test_a_mean_ablation_takes_a_direction_as_its_mean(m):
    d = direction(m, SITE)
    got = at_site(m, SITE, Ablate("mean", Direction(d, SITE, "test")))
    assert torch.equal(got, at_site(m, SITE, Ablate("mean", d)))
    assert torch.allclose(got[real_mask(m)], d.expand(int(real_mask(m).sum()), -1))


def test_an_interchange_takes_a_direction_as_the_line_it_spans(m):
    d = direction(m, SITE)
    source = at_site(m, SITE, texts=OTHER)
    got = at_site(m, SITE, Interchange(source, Direction(3.0 * d, SITE, "test")))
    want = at_site(m, SITE, Interchange(source, (d / d.norm())[:, None]))
    assert torch.allclose(got, want, atol=1e-6)


def test_a_head_edit_takes_a_direction_at_that_head(m):
    d = torch.randn(m.width(m.site(HEAD)), generator=torch.Generator().manual_seed(1))
    assert torch.equal(at_site(m, HEAD, Add(Direction(d, HEAD, "test"))), at_site(m, HEAD, Add(d)))


@pytest.mark.parametrize("make", [
    lambda d: Add(d), lambda d: RmsAdd(d), lambda d: Ablate("mean", d),
    lambda d: Interchange(torch.zeros(3, 26, 48), d),
], ids=["add", "rms_add", "ablate_mean", "interchange"])
def test_a_direction_installed_at_another_site_is_an_error_naming_both_sites(m, make):
    edit = make(Direction(direction(m, SITE), "blocks.2.resid_post", "class-mean"))
    with pytest.raises(InterventionError, match=re.escape(
            "is a Direction at blocks.2.resid_post (class-mean) but the edit is installed at blocks.3.resid_post; "
            "install it at blocks.2.resid_post, or pass `")):
        forward(m, {SITE: edit})


def test_a_direction_without_a_site_is_used_wherever_it_is_installed(m):
    d = direction(m, SITE)
    assert torch.equal(at_site(m, SITE, Add(Direction(d, "", "loaded"))), at_site(m, SITE, Add(d)))


def test_a_direction_of_the_wrong_width_is_a_shape_error_like_its_vector(m):
    with pytest.raises(ShapeError, match=re.escape(
            "`direction` must have shape [48] for site blocks.3.resid_post, got (4,)")):
        forward(m, {SITE: Add(Direction(torch.ones(4), SITE, "test"))})


@pytest.mark.parametrize("value, shown", [
    ([1.0, 2.0], "list [1.0, 2.0]"), (np.ones(2), "ndarray array([1., 1.])"), (0.5, "float 0.5"),
], ids=["list", "ndarray", "float"])
@pytest.mark.parametrize("make, name, owner", [
    (lambda v: Add(v), "direction", "Add"), (lambda v: RmsAdd(v), "direction", "RmsAdd"),
    (lambda v: Ablate("mean", v), "value", "a mean Ablate"),
    (lambda v: Interchange(torch.zeros(1, 1, 2), v), "basis", "Interchange"),
], ids=["add", "rms_add", "ablate_mean", "interchange_basis"])
def test_a_vector_argument_that_is_not_a_tensor_or_direction_is_an_error_naming_it(make, name, owner, value, shown):
    with pytest.raises(InterventionError, match=re.escape(
            f"`{name}` of {owner} must be a torch.Tensor [") + r".*" + re.escape(
            f"or a Direction, got {shown}; pass torch.as_tensor(...) of the values, or a Direction")):
        make(value)


@pytest.mark.parametrize("make, name, owner", [
    (lambda v: Patch(v), "source", "Patch"), (lambda v: Interchange(v, torch.eye(2)), "source", "Interchange"),
    (lambda v: Ablate("resample", v), "value", "a resample Ablate"),
    (lambda v: Ablate.resample(v), "donor", "Ablate.resample"), (lambda v: Ablate.mean(v), "reference", "Ablate.mean"),
], ids=["patch", "interchange", "ablate", "ablate_resample", "ablate_mean"])
def test_an_activation_argument_must_be_a_tensor_and_a_direction_there_points_to_add(make, name, owner):
    with pytest.raises(InterventionError, match=re.escape(f"`{name}` of {owner} must be a torch.Tensor [")
                       + r".*got list \[\[0.0\]\]; pass "):
        make([[0.0]])
    with pytest.raises(InterventionError, match=re.escape(
            "got Direction") + r".*" + re.escape(
            "; a Direction is a vector to add: use Add(direction) or RmsAdd(direction)")):
        make(Direction(torch.ones(2), SITE, "test"))


def test_an_ablate_mean_mask_that_is_not_a_tensor_is_an_error():
    with pytest.raises(InterventionError, match=re.escape(
            "`attention_mask` of Ablate.mean must be a torch.Tensor [n, pos], got list [[1, 1]]")):
        Ablate.mean(torch.zeros(1, 2, 4), [[1, 1]])


# --------------------------------------------------------------------------- check_acted


def plain_forward(m: LoadedModel, texts=TEXTS):
    ids, mask = batch(m, texts)
    return (lambda: m.module(input_ids=ids, attention_mask=mask)), {"blocks": mask}


def test_check_acted_holds_for_an_add_at_the_last_token(m):
    fwd, masks = plain_forward(m)
    rep = check_acted(m, SITE, Add(direction(m, SITE), positions=Positions.last()), forward=fwd, masks=masks)
    assert rep.held, str(rep)
    assert rep.missed == rep.leaked == 0 and rep.max_change_outside == 0
    assert torch.equal(rep.changed, Positions.last().resolve(masks["blocks"]))
    assert str(rep) == ("blocks.3.resid_post: changed 3 of 3 intended positions, missed 0, leaked 0 "
                        "(max change outside 0)")


def test_check_acted_confines_a_head_intervention_to_its_heads_columns(m):
    fwd, masks = plain_forward(m)
    rep = check_acted(m, HEAD, Add(direction(m, HEAD), alpha=2.0), forward=fwd, masks=masks)
    assert rep.held, str(rep)
    assert rep.leaked == 0 and rep.max_change_outside == 0
    assert torch.equal(rep.changed, masks["blocks"].bool())


def test_check_acted_reports_missed_positions_for_a_no_op(m):
    fwd, masks = plain_forward(m)
    rep = check_acted(m, SITE, Add(direction(m, SITE), alpha=0.0, positions=Positions.last()),
                      forward=fwd, masks=masks)
    assert not rep.held
    assert rep.missed == 3 and rep.leaked == 0
    assert "missed 3" in str(rep)


def test_check_acted_does_not_intend_rows_whose_alpha_is_zero(m):
    fwd, masks = plain_forward(m)
    rep = check_acted(m, SITE, Add(direction(m, SITE), alpha=torch.tensor([1.0, 0.0, 1.0])),
                      forward=fwd, masks=masks)
    assert rep.held, str(rep)
    assert not rep.intended[1].any()
    assert int(rep.intended.sum()) == LENGTHS[0] + LENGTHS[2]


def test_check_acted_counts_changes_outside_the_intent_as_leaked(m):
    (ids, mask), (other, _) = batch(m), batch(m, OTHER)
    calls = iter([ids, other])  # the second (intervened) forward sees other tokens everywhere
    rep = check_acted(m, SITE, Add(direction(m, SITE), positions=Positions.last()),
                      forward=lambda: m.module(input_ids=next(calls), attention_mask=mask), masks={"blocks": mask})
    assert not rep.held
    assert rep.leaked == mask.numel() - 3  # every position but the intended ones, padding included
    assert rep.max_change_outside > 0


def test_check_acted_counts_a_change_in_another_heads_columns_as_leaked(m):
    (ids, mask), (other, _) = batch(m), batch(m, OTHER)
    calls = iter([ids, other])
    rep = check_acted(m, HEAD, Add(direction(m, HEAD)),
                      forward=lambda: m.module(input_ids=next(calls), attention_mask=mask), masks={"blocks": mask})
    assert rep.leaked > 0 and rep.max_change_outside > 0
