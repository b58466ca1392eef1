"""A new intervention kind is a subclass written outside the library: `intervene`, the scores'
``interventions=`` and `check_acted` take it like the library's own, and its numbers equal an
oracle of raw torch hooks on the Hugging Face modules."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from harness.errors import InterventionError
from harness.interventions import Context, Intervention, Positions, check_acted, intervene
from harness.measures.scores import logprob
from harness.models.loaded import LoadedModel, pad_rows
from tests._support.tiny import tiny_model

TEXTS = ["hello world, this is long", "hi", "abcdef"]
SITE = "blocks.3.resid_post"   # the output of the Hugging Face block transformer.h[2]


@dataclass(frozen=True)
class ProjectOut(Intervention):
    """Remove the activation's component in the span of the orthonormal rows of ``basis [k, d]``."""

    basis: torch.Tensor
    positions: Positions = Positions.all()

    def apply(self, act, where, site, run, context=None):
        b = self.basis.to(act.device, act.dtype)
        return torch.where(where[..., None], act - (act @ b.T) @ b, act)


@dataclass(frozen=True)
class SeesIds(Intervention):
    """Reads the context it is given: the real-token mask and (it asks for them) the input ids."""

    seen: list
    needs_input_ids: ClassVar[bool] = True

    def apply(self, act, where, site, run, context=None):
        self.seen.append(context)
        return act


@dataclass(frozen=True)
class SeesContext(Intervention):
    seen: list

    def apply(self, act, where, site, run, context=None):
        self.seen.append(context)
        return act


@pytest.fixture(scope="module")
def m() -> LoadedModel:
    return tiny_model("gpt2")


def orthonormal(d: int, k: int, seed: int = 0) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, k, generator=torch.Generator().manual_seed(seed)))
    return q.T.contiguous()   # [k, d]


def raw_logits(m: LoadedModel, ids: torch.Tensor, mask: torch.Tensor, on: torch.Tensor,
               basis: torch.Tensor) -> torch.Tensor:
    """The oracle: a raw torch hook on the Hugging Face block ``transformer.h[2]`` (the harness's
    ``blocks.3.resid_post``) projects span(basis) out at the positions `on` ``[batch, pos]``."""
    def project(module, args, output):
        h = output[0] if isinstance(output, tuple) else output
        edited = torch.where(on[..., None], h - (h @ basis.T) @ basis, h)
        return (edited,) + tuple(output[1:]) if isinstance(output, tuple) else edited

    handle = m.module.transformer.h[2].register_forward_hook(project)
    try:
        with torch.no_grad():
            return m.module(input_ids=ids, attention_mask=mask).logits
    finally:
        handle.remove()


def test_a_kind_written_outside_the_library_acts_through_intervene_like_a_raw_torch_hook(m):
    ids, mask = pad_rows(m.tokenize(TEXTS), pad_id=m.pad_id)
    basis = orthonormal(m.width(m.site(SITE)), 3)
    with torch.no_grad(), intervene(m, {SITE: ProjectOut(basis, Positions.last())}, masks={"blocks": mask}):
        got = m.module(input_ids=ids, attention_mask=mask).logits
    want = raw_logits(m, ids, mask, Positions.last().resolve(mask), basis)
    with torch.no_grad():
        plain = m.module(input_ids=ids, attention_mask=mask).logits
    real = mask.bool()
    assert torch.allclose(got[real], want[real], atol=1e-5, rtol=0)
    assert (got[real] - plain[real]).abs().max() > 1e-2   # it did something


def test_a_new_kind_works_in_the_scores_like_a_raw_torch_hook(m):
    """`logprob` with ``interventions=`` (what a sweep runs per chunk) takes the new kind; the
    oracle teacher-forces the continuation with the projection on the input's tokens only."""
    basis = orthonormal(m.width(m.site(SITE)), 2, seed=1)
    got = logprob(m, TEXTS, "xy", interventions={SITE: ProjectOut(basis)})
    prompts, cont = m.tokenize(TEXTS), m.tokenize(["xy"], add_special_tokens=False)[0]
    ids, mask = pad_rows([p + cont for p in prompts], pad_id=m.pad_id)
    on = torch.zeros_like(mask, dtype=torch.bool)
    for i, p in enumerate(prompts):
        on[i, :len(p)] = True
    logp = torch.log_softmax(raw_logits(m, ids, mask, on, basis).float(), -1)
    want = torch.stack([sum(logp[i, len(p) - 1 + k, t] for k, t in enumerate(cont)) for i, p in enumerate(prompts)])
    assert torch.allclose(got, want, atol=1e-4, rtol=0)
    assert (got - logprob(m, TEXTS, "xy")).abs().max() > 1e-3


def test_check_acted_proves_a_new_kind_acted_where_it_meant_to(m):
    ids, mask = pad_rows(m.tokenize(TEXTS), pad_id=m.pad_id)
    basis = orthonormal(m.width(m.site(SITE)), 2)
    report = check_acted(m, SITE, ProjectOut(basis, Positions.last()),
                         forward=lambda: m.module(input_ids=ids, attention_mask=mask), masks={"blocks": mask})
    assert report.held, str(report)
    assert int(report.intended.sum()) == len(TEXTS)


def test_the_context_holds_the_real_mask_and_the_input_ids_only_when_a_kind_asks_for_them(m):
    ids, mask = pad_rows(m.tokenize(TEXTS), pad_id=m.pad_id)
    asks, plain = [], []
    with torch.no_grad(), intervene(m, {SITE: SeesIds(asks), "blocks.1.resid_post": SeesContext(plain)},
                                    masks={"blocks": mask}):
        m.module(input_ids=ids, attention_mask=mask)
    (a,), (b,) = asks, plain
    assert isinstance(a, Context) and torch.equal(a.real, mask.bool()) and torch.equal(a.input_ids, ids)
    # the stack's ids are watched for the whole stack once some site of it asks
    assert torch.equal(b.real, mask.bool())
    with torch.no_grad(), intervene(m, {SITE: SeesContext(plain)}, masks={"blocks": mask}):
        m.module(input_ids=ids, attention_mask=mask)
    assert plain[-1].input_ids is None   # nobody asked: no hooks watch the stack's ids


def test_a_kind_without_apply_cannot_be_made():
    class Half(Intervention):
        pass

    with pytest.raises(TypeError, match="apply"):
        Half()


def test_a_value_that_is_not_an_intervention_is_an_error_listing_the_kinds(m):
    ids, mask = pad_rows(m.tokenize(TEXTS), pad_id=m.pad_id)
    with pytest.raises(InterventionError, match=re.escape(
            "intervention at blocks.3.resid_post must be an Intervention, one of ['Record', 'Add'")):
        with intervene(m, {SITE: lambda act: act}, masks={"blocks": mask}):
            pass
