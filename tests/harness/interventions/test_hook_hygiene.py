"""Hook hygiene: `intervene` installs nothing on a bad plan, always removes what it installed,
leaves other people's hooks alone, and nests."""

from __future__ import annotations

import pytest
import torch

from harness.measures import scores
from harness.errors import InterventionError, ShapeError, SiteError
from harness.interventions import Add, Positions, Record, check_acted, intervene
from harness.models.loaded import LoadedModel, pad_rows
from tests._support.tiny import tiny_model

SITE = "blocks.3.resid_post"
HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_forward_hooks_with_kwargs",
              "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called")


@pytest.fixture(scope="module")
def m() -> LoadedModel:
    return tiny_model("gpt2")


def hooks(m: LoadedModel) -> dict[str, dict[str, tuple]]:
    """Every hook dict of every module (and torch's global hooks), as plain copies."""
    out = {name: {d: tuple(getattr(module, d, {}).items()) for d in HOOK_DICTS}
           for name, module in m.module.named_modules()}
    import torch.nn.modules.module as mm

    out["<global>"] = {"forward": tuple(mm._global_forward_hooks.items()),
                       "pre": tuple(mm._global_forward_pre_hooks.items())}
    return out


def n_hooks(m: LoadedModel) -> int:
    return sum(len(getattr(mod, d, {})) for mod in m.module.modules() for d in ("_forward_hooks", "_forward_pre_hooks"))


def inputs(m: LoadedModel):
    ids, mask = pad_rows(m.tokenize(["hello world", "hi"]), pad_id=m.pad_id)
    return ids, mask


def run_model(m: LoadedModel, ids, mask):
    with torch.no_grad():
        return m.module(input_ids=ids, attention_mask=mask).logits


# --------------------------------------------------------------------------- removal whatever happens


def test_hooks_are_installed_inside_the_block_and_removed_after(m):
    before, count = hooks(m), n_hooks(m)  # transformers 5 may hold hooks of its own (output capture)
    ids, mask = inputs(m)
    with intervene(m, {SITE: Record(), "blocks.5.attn.head1": Record(), "blocks.2.resid_pre": Record()},
                   masks={"blocks": mask}):
        assert n_hooks(m) == count + 3
        run_model(m, ids, mask)
    assert hooks(m) == before


def test_hooks_are_removed_when_a_hook_raises(m):
    before = hooks(m)
    ids, mask = inputs(m)
    with pytest.raises(ShapeError, match=r"`direction` must have shape \[48\]"):
        with intervene(m, {"blocks.1.resid_post": Record(), SITE: Add(torch.ones(5))}, masks={"blocks": mask}):
            run_model(m, ids, mask)
    assert hooks(m) == before


def test_hooks_are_removed_when_the_model_raises(m):
    before = hooks(m)
    ids, mask = inputs(m)
    with pytest.raises(IndexError):
        with intervene(m, {SITE: Record()}, masks={"blocks": mask}):
            run_model(m, ids + 10_000, mask)  # token ids past the vocabulary
    assert hooks(m) == before


def test_hooks_are_removed_when_a_later_module_raises_after_the_hooks_fired(m):
    ids, mask = inputs(m)

    def explode(module, args, output):
        raise RuntimeError("boom in ln_f")

    handle = m.module.transformer.ln_f.register_forward_hook(explode)
    try:
        before = hooks(m)
        with pytest.raises(RuntimeError, match="boom in ln_f"):
            with intervene(m, {SITE: Record()}, masks={"blocks": mask}) as run:
                run_model(m, ids, mask)
        assert run.calls == {m.site(SITE): 1}
        assert hooks(m) == before
    finally:
        handle.remove()


def test_hooks_are_removed_on_keyboard_interrupt_inside_the_block(m):
    before = hooks(m)
    ids, mask = inputs(m)
    with pytest.raises(KeyboardInterrupt):
        with intervene(m, {SITE: Add(torch.ones(48)), "blocks.4.mlp_out": Record()}, masks={"blocks": mask}):
            run_model(m, ids, mask)
            raise KeyboardInterrupt
    assert hooks(m) == before


@pytest.mark.parametrize(("bad", "error", "message"), [
    ("blocks.99.resid_post", SiteError, r"`layer` must be in 0\.\.12"),
    ("blocks.3.resid_pst", SiteError, r"did you mean 'resid_post'"),
    ("encoder.3.resid_post", SiteError, r"`stack` must be one of \['blocks'\]"),
    ("blocks.3.attn.head12", SiteError, r"`head` must be in 0\.\.11"),
])
def test_a_bad_site_half_way_through_the_plan_installs_nothing(m, bad, error, message):
    before = hooks(m)
    plan = {"blocks.1.resid_post": Record(), SITE: Add(torch.ones(48)), bad: Record(), "blocks.6.mlp_out": Record()}
    with pytest.raises(error, match=message):
        with intervene(m, plan, masks={"blocks": inputs(m)[1]}):
            pytest.fail("the block must not be entered")
    assert hooks(m) == before


def test_a_bad_plan_is_rejected_before_any_hook_is_registered(m, monkeypatch):
    registered = []
    for name in ("register_forward_hook", "register_forward_pre_hook"):
        original = getattr(torch.nn.Module, name)

        def spy(self, *args, _original=original, **kwargs):
            registered.append(type(self).__name__)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.nn.Module, name, spy)
    plan = {"blocks.1.resid_post": Record(), SITE: Add(torch.ones(48)), "blocks.99.resid_post": Record()}
    with pytest.raises(SiteError):
        with intervene(m, plan, masks={"blocks": inputs(m)[1]}):
            pass
    assert registered == []


def test_a_bad_intervention_half_way_through_the_plan_installs_nothing(m):
    before = hooks(m)
    plan = {"blocks.1.resid_post": Record(), SITE: [Record(), "add"], "blocks.6.mlp_out": Record()}
    with pytest.raises(InterventionError, match=r"intervention at blocks.3.resid_post must be an Intervention, one of .* got str"):
        with intervene(m, plan, masks={"blocks": inputs(m)[1]}):
            pytest.fail("the block must not be entered")
    assert hooks(m) == before


def test_hooks_are_removed_when_a_score_raises_in_the_decoder():
    t5 = tiny_model("byt5-small")
    before = hooks(t5)
    with pytest.raises(ShapeError):
        scores.logprob(t5, ["hello", "hi"], "ok",
                       interventions={"encoder.2.resid_post": Add(torch.ones(32)), "decoder.1.mlp_out": Add(torch.ones(3))})
    assert hooks(t5) == before


def test_check_acted_leaves_no_hooks_even_when_it_raises(m):
    before = hooks(m)
    ids, mask = inputs(m)
    forward = lambda: m.module(input_ids=ids, attention_mask=mask)  # noqa: E731
    check_acted(m, SITE, Add(torch.ones(48), positions=Positions.last()), forward=forward, masks={"blocks": mask})
    assert hooks(m) == before
    with pytest.raises(ShapeError):
        check_acted(m, SITE, Add(torch.ones(4)), forward=forward, masks={"blocks": mask})
    assert hooks(m) == before


# --------------------------------------------------------------------------- other people's hooks


def test_a_hook_registered_before_survives_and_still_fires_after_the_block(m):
    ids, mask = inputs(m)
    block = m.module.transformer.h[2]  # the module SITE hooks
    fired = {"forward": 0, "pre": 0}
    handles = [block.register_forward_hook(lambda *a: fired.__setitem__("forward", fired["forward"] + 1)),
               block.register_forward_pre_hook(lambda *a: fired.__setitem__("pre", fired["pre"] + 1))]
    try:
        before = hooks(m)
        with intervene(m, {SITE: Add(torch.ones(48)), "blocks.3.resid_pre": Record()}, masks={"blocks": mask}):
            run_model(m, ids, mask)
        assert fired == {"forward": 1, "pre": 1}
        assert hooks(m) == before
        run_model(m, ids, mask)
        assert fired == {"forward": 2, "pre": 2}
    finally:
        for handle in handles:
            handle.remove()


def test_a_hook_registered_inside_the_block_is_left_in_place(m):
    ids, mask = inputs(m)
    block = m.module.transformer.h[2]
    before = list(block._forward_hooks)
    with intervene(m, {SITE: Record()}, masks={"blocks": mask}, require_fired=False):
        handle = block.register_forward_hook(lambda *a: None)
    try:
        assert list(block._forward_hooks) == before + [handle.id]
    finally:
        handle.remove()


# --------------------------------------------------------------------------- nesting


def test_nested_blocks_compose_and_unwind_one_at_a_time(m):
    ids, mask = inputs(m)
    site = m.site(SITE)
    before, count = hooks(m), n_hooks(m)
    with intervene(m, {SITE: Record()}, masks={"blocks": mask}) as plain:
        run_model(m, ids, mask)
    with intervene(m, {SITE: Add(torch.ones(48), alpha=2.0)}, masks={"blocks": mask}):
        outer = hooks(m)
        with intervene(m, {SITE: Record()}, masks={"blocks": mask}) as inner:
            assert n_hooks(m) == count + 2
            run_model(m, ids, mask)
        assert hooks(m) == outer
        with intervene(m, {SITE: Record()}, masks={"blocks": mask}) as again:
            run_model(m, ids, mask)
    assert hooks(m) == before
    real = mask.bool()
    # the inner Record, registered after the outer Add, sees the edited activation
    assert torch.allclose((inner.recorded[site] - plain.recorded[site])[real], torch.full((int(real.sum()), 48), 2.0),
                          atol=1e-5)
    assert torch.equal(again.recorded[site], inner.recorded[site])


def test_nested_blocks_unwind_when_the_inner_one_raises(m):
    ids, mask = inputs(m)
    before = hooks(m)
    with pytest.raises(ShapeError):
        with intervene(m, {SITE: Record()}, masks={"blocks": mask}):
            with intervene(m, {"blocks.5.resid_post": Add(torch.ones(2))}, masks={"blocks": mask}):
                run_model(m, ids, mask)
    assert hooks(m) == before


def test_a_block_whose_forward_never_reaches_a_site_raises_and_still_removes_its_hooks(m):
    ids, mask = inputs(m)
    before = hooks(m)
    with pytest.raises(InterventionError, match=r"the hooks at \['blocks.3.resid_post'\] never ran"):
        with intervene(m, {SITE: Record()}, masks={"blocks": mask}):
            pass  # no forward: the intervention would have changed nothing
    assert hooks(m) == before
