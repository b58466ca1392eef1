"""ProjectOut: the activation loses its component in the span of a basis, checked against a raw
torch hook whose projector is built independently (a least-squares solve in float64)."""

from __future__ import annotations

import re

import pytest
import torch

from harness.errors import InterventionError, ShapeError
from harness.interventions import Positions, ProjectOut, Record, intervene
from harness.measures.directions import Direction
from harness.models.loaded import LoadedModel, pad_rows
from harness.models.sites import Site
from tests._support.tiny import tiny_model

TEXTS = ["hello world, this is long", "hi", "abcdef"]
SITE = "blocks.3.resid_post"   # the output of the Hugging Face block transformer.h[2]
HEAD = "blocks.3.attn.head2"   # columns 2*d_head..3*d_head of transformer.h[2].attn.c_proj's input


@pytest.fixture(scope="module")
def m() -> LoadedModel:
    return tiny_model("gpt2")


def projector_away(basis: torch.Tensor) -> torch.Tensor:
    """``I - B^T (B B^T)^-1 B`` in float64 for a full-rank ``basis`` [k, d] (the oracle's)."""
    b = basis.double()
    return torch.eye(b.shape[1], dtype=torch.float64) - b.T @ torch.linalg.solve(b @ b.T, b)


def run(m: LoadedModel, plan: dict) -> tuple[torch.Tensor, dict]:
    ids, mask = pad_rows(m.tokenize(TEXTS), pad_id=m.pad_id)
    with torch.no_grad(), intervene(m, plan, masks={"blocks": mask}) as r:
        logits = m.module(input_ids=ids, attention_mask=mask).logits
    return logits, r.recorded


def raw(m: LoadedModel, module: torch.nn.Module, edit, *, pre: bool) -> torch.Tensor:
    ids, mask = pad_rows(m.tokenize(TEXTS), pad_id=m.pad_id)
    if pre:
        handle = module.register_forward_pre_hook(lambda mod, args: (edit(args[0]),) + tuple(args[1:]))
    else:
        handle = module.register_forward_hook(
            lambda mod, args, out: (edit(out[0]),) + tuple(out[1:]) if isinstance(out, tuple) else edit(out))
    try:
        with torch.no_grad():
            return m.module(input_ids=ids, attention_mask=mask).logits
    finally:
        handle.remove()


def real() -> torch.Tensor:
    return torch.tensor([[True] * 26, [True] * 3 + [False] * 23, [True] * 7 + [False] * 19])


def test_project_out_equals_a_raw_hook_with_an_independent_projector(m):
    g = torch.Generator().manual_seed(0)
    d = m.width(m.site(SITE))
    basis = torch.randn(3, d, generator=g) * torch.tensor([[0.1], [1.0], [7.0]])   # not orthonormal
    p = projector_away(basis)
    got, rec = run(m, {SITE: [ProjectOut(basis), Record()]})
    want = raw(m, m.module.transformer.h[2], lambda h: (h.double() @ p).to(h.dtype), pre=False)
    assert torch.allclose(got[real()], want[real()], atol=1e-4, rtol=0)
    after = rec[m.site(SITE)][real()]
    assert (after.double() @ basis.double().T).abs().max() < 1e-4 * basis.abs().max()   # orthogonal to the span


def test_project_out_at_a_head_edits_only_that_heads_columns(m):
    site = m.site(HEAD)
    w = m.width(site)
    basis = torch.randn(2, w, generator=torch.Generator().manual_seed(1))
    p = projector_away(basis)

    def edit(z: torch.Tensor) -> torch.Tensor:
        z = z.clone()
        z[..., 2 * w:3 * w] = (z[..., 2 * w:3 * w].double() @ p).to(z.dtype)
        return z

    got, _ = run(m, {HEAD: ProjectOut(basis)})
    want = raw(m, m.module.transformer.h[2].attn.c_proj, edit, pre=True)
    assert torch.allclose(got[real()], want[real()], atol=1e-4, rtol=0)


def test_the_span_is_what_counts_rescaled_repeated_and_mixed_rows_give_the_same_edit():
    act = torch.randn(2, 4, 6, generator=torch.Generator().manual_seed(2))
    where = torch.ones(2, 4, dtype=torch.bool)
    site = Site.parse(SITE)
    b = torch.randn(2, 6, generator=torch.Generator().manual_seed(3))
    once = ProjectOut(b).apply(act, where, site, None)
    same = ProjectOut(torch.stack([3 * b[0], b[0] + b[1], -b[1], b[0]])).apply(act, where, site, None)
    assert torch.allclose(once, same, atol=1e-6)
    p = projector_away(b)
    assert torch.allclose(once, (act.double() @ p).float(), atol=1e-6)


def test_an_empty_or_zero_basis_changes_nothing_bit_for_bit():
    act = torch.randn(1, 3, 5)
    where = torch.ones(1, 3, dtype=torch.bool)
    site = Site.parse(SITE)
    assert torch.equal(ProjectOut(torch.zeros(0, 5)).apply(act, where, site, None), act)
    assert torch.equal(ProjectOut(torch.zeros(2, 5)).apply(act, where, site, None), act)


def test_only_the_chosen_positions_change(m):
    basis = torch.randn(1, m.width(m.site(SITE)), generator=torch.Generator().manual_seed(4))
    _, before = run(m, {SITE: Record()})
    _, after = run(m, {SITE: [ProjectOut(basis, Positions.last()), Record()]})
    changed = (after[m.site(SITE)] != before[m.site(SITE)]).any(-1)
    ids, mask = pad_rows(m.tokenize(TEXTS), pad_id=m.pad_id)
    assert torch.equal(changed, Positions.last().resolve(mask))


def test_a_direction_is_the_line_it_spans_and_must_sit_at_the_site(m):
    v = torch.randn(m.width(m.site(SITE)), generator=torch.Generator().manual_seed(5))
    by_vector, _ = run(m, {SITE: ProjectOut(v[None])})
    by_direction, _ = run(m, {SITE: ProjectOut(Direction(v, SITE, "class-mean"))})
    assert torch.allclose(by_vector, by_direction, atol=1e-6)
    with pytest.raises(InterventionError, match=re.escape(
            "`basis` of ProjectOut is a Direction at blocks.2.resid_post (class-mean) but the edit is "
            "installed at blocks.3.resid_post")):
        run(m, {SITE: ProjectOut(Direction(v, "blocks.2.resid_post", "class-mean"))})


def test_a_basis_of_the_wrong_shape_is_a_shape_error_that_says_rows(m):
    d = m.width(m.site(SITE))
    with pytest.raises(ShapeError, match=re.escape(
            f"`basis` of ProjectOut must have shape [k, {d}] (the vectors as rows, the width of "
            f"blocks.3.resid_post) for site blocks.3.resid_post, got ({d}, 2); transpose a [d, k] basis")):
        run(m, {SITE: ProjectOut(torch.randn(d, 2))})
    with pytest.raises(ShapeError, match=r"must have shape \[k, 48\].*got \(48,\)"):
        run(m, {SITE: ProjectOut(torch.randn(d))})


def test_a_basis_that_is_not_a_tensor_or_is_not_finite_is_an_intervention_error(m):
    with pytest.raises(InterventionError, match=re.escape("`basis` of ProjectOut must be a torch.Tensor [k, d] or a "
                                                          "Direction, got list")):
        ProjectOut([[1.0, 0.0]])
    bad = torch.zeros(1, m.width(m.site(SITE)))
    bad[0, 0] = float("nan")
    with pytest.raises(InterventionError, match="`basis` of ProjectOut at blocks.3.resid_post has NaN"):
        run(m, {SITE: ProjectOut(bad)})
