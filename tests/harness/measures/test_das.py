"""Distributed alignment search: the `Interchange` edit, and `das` finding a planted subspace
with the model left exactly as it was."""

from __future__ import annotations

import copy
import dataclasses
import re

import pytest
import torch

from harness.errors import DataError, ShapeError
from harness.interventions import Interchange, Patch, Positions, Record, intervene
from harness.measures.das import Subspace, das, interchange_logits, random_basis
from harness.models.load import fingerprint, from_module
from harness.models.loaded import LoadedModel, pad_rows
from tests._support.tiny import tiny_model

TEXTS = ["hello world, this is long", "hi", "abcdef"]
OTHER = ["HELLO WORLD, THIS IS LONG", "HI", "ABCDEF"]  # the same token lengths, other tokens
SITE = "blocks.3.resid_post"


@pytest.fixture(scope="module")
def m() -> LoadedModel:
    return tiny_model("gpt2")


@pytest.fixture(scope="module")
def qwen() -> LoadedModel:
    return tiny_model("qwen2.5-0.5b")


def _record(m: LoadedModel, site: str, texts, chain=()):
    """The activation at `site` (after `chain` acted there) and the logits, for `texts`."""
    ids, mask = pad_rows(m.tokenize(texts), pad_id=m.pad_id)
    with torch.no_grad(), intervene(m, {site: [*chain, Record()]}, masks={m.main_stack: mask}) as run:
        logits = m.module(input_ids=ids, attention_mask=mask).logits
    return run.recorded[m.site(site)], logits


def n_hooks(m: LoadedModel) -> int:
    return sum(len(getattr(mod, d, {})) for mod in m.module.modules()
               for d in ("_forward_hooks", "_forward_pre_hooks"))


# --------------------------------------------------------------------------- the Interchange edit


@pytest.mark.parametrize("arch", ["gpt2", "qwen2.5-0.5b"])
def test_interchange_along_the_identity_is_a_patch_at_the_chosen_positions(arch):
    m = tiny_model(arch)
    source, _ = _record(m, SITE, OTHER)
    plain, _ = _record(m, SITE, TEXTS)
    d = m.width(m.site(SITE))
    for where in (Positions.last(), Positions.of_spans([[(0, 2)], [(1, 3)], [(2, 5)]])):
        patched, logits_p = _record(m, SITE, TEXTS, [Patch(source, where)])
        swapped, logits_s = _record(m, SITE, TEXTS, [Interchange(source, torch.eye(d), where)])
        assert torch.equal(swapped, patched)
        assert torch.equal(logits_s, logits_p)
        ids, mask = pad_rows(m.tokenize(TEXTS), pad_id=m.pad_id)
        off = ~where.resolve(mask)
        assert torch.equal(swapped[off], plain[off])


def test_interchange_along_no_direction_or_a_zero_basis_changes_nothing(m):
    source, _ = _record(m, SITE, OTHER)
    plain, logits = _record(m, SITE, TEXTS)
    for basis in (torch.zeros(48, 0), torch.zeros(48, 3)):
        got, got_logits = _record(m, SITE, TEXTS, [Interchange(source, basis)])
        assert torch.equal(got, plain) and torch.equal(got_logits, logits)


def test_interchange_replaces_only_the_projection_onto_the_basis(m):
    source, _ = _record(m, SITE, OTHER)
    plain, _ = _record(m, SITE, TEXTS)
    u = random_basis(48, 5, seed=3)
    got, _ = _record(m, SITE, TEXTS, [Interchange(source, u, Positions.last())])
    last = Positions.last().resolve(pad_rows(m.tokenize(TEXTS), pad_id=m.pad_id)[1])
    proj = u @ u.T
    torch.testing.assert_close(got[last] @ proj, source[last] @ proj, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[last] - got[last] @ proj, plain[last] - plain[last] @ proj,
                               atol=1e-5, rtol=1e-5)


def test_the_gradient_flows_to_the_basis_and_not_into_the_weights(m):
    source, _ = _record(m, SITE, OTHER)
    basis = random_basis(48, 2, seed=1).requires_grad_(True)
    ids, mask = pad_rows(m.tokenize(TEXTS), pad_id=m.pad_id)
    with intervene(m, {SITE: Interchange(source, basis, Positions.last())}, masks={"blocks": mask}):
        loss = m.module(input_ids=ids, attention_mask=mask).logits[:, -1].logsumexp(-1).sum()
    (grad,) = torch.autograd.grad(loss, basis)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert all(p.grad is None for p in m.module.parameters())


def test_interchange_at_a_head_takes_a_basis_of_the_head_width(m):
    head = "blocks.3.attn.head2"
    source, _ = _record(m, head, OTHER)
    patched, _ = _record(m, head, TEXTS, [Patch(source)])
    swapped, _ = _record(m, head, TEXTS, [Interchange(source, torch.eye(4))])
    assert torch.equal(swapped, patched)
    with pytest.raises(ShapeError, match=re.escape("interchange `basis` must have shape [4, k]")):
        _record(m, head, TEXTS, [Interchange(source, torch.eye(48))])


def test_an_interchange_source_or_basis_of_the_wrong_shape_is_a_shape_error(m):
    source, _ = _record(m, SITE, OTHER)
    with pytest.raises(ShapeError, match=re.escape(
            "interchange `source` has shape (3, 25, 48) but the activation at blocks.3.resid_post is "
            "(3, 26, 48) [batch, pos, d]; record the source on inputs of the same batch size")):
        _record(m, SITE, TEXTS, [Interchange(source[:, :25], torch.eye(48))])
    for basis in (torch.ones(48), torch.ones(2, 48)):
        with pytest.raises(ShapeError, match=r"`basis` must have shape \[48, k\].*transpose a \[k, d\] basis"):
            _record(m, SITE, TEXTS, [Interchange(source, basis)])


# --------------------------------------------------------------------------- das


def _pairs(n: int, length: int, seed: int) -> tuple[list[list[int]], list[list[int]]]:
    """Byte-token pairs that differ only in their last token."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(3, 259, (n, length), generator=g)
    source = base.clone()
    source[:, -1] = torch.randint(3, 259, (n,), generator=g)
    return base.tolist(), source.tolist()


def _small(n: int = 12):
    base, source = _pairs(n, 5, seed=2)
    return base, source, [-1] * n, [7 + i for i in range(n)]


@pytest.fixture(scope="module")
def sharp() -> LoadedModel:
    """The tiny GPT-2 with its final norm scaled x30: confident next-token predictions, so the
    argmax tokens a planted interchange produces are targets a cross-entropy can pin down."""
    m = tiny_model("gpt2")
    module = copy.deepcopy(m.module)
    with torch.no_grad():
        for p in module.get_submodule(m.layout.stack("blocks").final_norm).parameters():
            p.mul_(30.0)
    return from_module(module, m.tokenizer, name="tiny:gpt2-sharp")


def test_das_finds_a_planted_direction_that_a_random_one_does_not(sharp):
    site, length, n = "blocks.8.resid_pre", 4, 1500
    base, source = _pairs(n, length, seed=1)
    positions = [length - 1] * n
    # the planted direction v: the one along which sources and bases differ most at the site
    # (an interchange along a random direction changes ~10% of answers; this one ~35%)
    ids_b, mask = pad_rows(base, pad_id=sharp.pad_id)
    ids_s, _ = pad_rows(source, pad_id=sharp.pad_id)
    acts = []
    for ids in (ids_b, ids_s):
        with torch.no_grad(), intervene(sharp, {site: Record()}, masks={"blocks": mask}) as run:
            sharp.module(input_ids=ids, attention_mask=mask)
        acts.append(run.recorded[sharp.site(site)][:, -1])
    v = torch.linalg.svd(acts[1] - acts[0], full_matrices=False).Vh[0]
    d = v.shape[0]
    plain = interchange_logits(sharp, base, source, site, positions, torch.zeros(d, 0)).argmax(-1)
    planted = interchange_logits(sharp, base, source, site, positions, v[:, None]).argmax(-1)
    changed = (planted != plain).nonzero()[:, 0].tolist()  # pairs where the planted variable matters
    assert len(changed) >= 300
    split = int(0.6 * len(changed))
    rows = {"train": changed[:split], "test": changed[split:]}
    pick = {name: ([base[i] for i in r], [source[i] for i in r], [positions[i] for i in r], planted[r])
            for name, r in rows.items()}
    b, s, p, t = pick["train"]
    sub = das(sharp, b, s, site, p, t.tolist(), k=1, steps=200, lr=0.05, batch_size=32, seed=0)
    assert sub.losses[-1] < 0.3 * sub.losses[0]

    b, s, p, t = pick["test"]
    learned = (interchange_logits(sharp, b, s, site, p, sub.basis).argmax(-1) == t).float().mean()
    random = [(interchange_logits(sharp, b, s, site, p, random_basis(d, 1, seed)).argmax(-1) == t).float().mean()
              for seed in range(1, 6)]
    assert learned >= 0.85, (float(learned), [float(r) for r in random])
    assert max(random) <= 0.25, [float(r) for r in random]
    assert sub.overlap(v) >= 0.95


@pytest.mark.parametrize("arch", ["gpt2", "qwen2.5-0.5b"])
def test_das_leaves_the_weights_the_flags_and_the_hooks_as_they_were(arch):
    m = tiny_model(arch)
    flags = [p.requires_grad for p in m.module.parameters()]
    hooks = n_hooks(m)
    base, source, positions, target = _small()
    sub = das(m, base, source, "blocks.2.resid_pre", positions, target, k=2, steps=3, batch_size=8, seed=0)
    assert fingerprint(m.module) == m.fingerprint
    assert all(p.grad is None for p in m.module.parameters())
    assert [p.requires_grad for p in m.module.parameters()] == flags
    assert not m.module.training and n_hooks(m) == hooks
    assert isinstance(sub, Subspace) and sub.k == 2 and len(sub.losses) == 3 and sub.seed == 0
    assert sub.site == m.site("blocks.2.resid_pre")
    torch.testing.assert_close(sub.basis.T @ sub.basis, torch.eye(2), atol=1e-5, rtol=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sub.seed = 1  # type: ignore[misc]


def test_das_removes_its_hooks_and_restores_the_flags_when_the_forward_raises(m, monkeypatch):
    hooks = n_hooks(m)
    flags = [p.requires_grad for p in m.module.parameters()]
    calls = {"n": 0}
    head = m.module.get_output_embeddings()
    forward = head.forward

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 1:  # the source recording passes; the first training forward fails
            raise RuntimeError("boom")
        return forward(*args, **kwargs)

    monkeypatch.setattr(head, "forward", failing)
    base, source, positions, target = _small()
    with pytest.raises(RuntimeError, match="boom"):
        das(m, base, source, SITE, positions, target, steps=2, batch_size=64, seed=0)
    monkeypatch.undo()
    assert calls["n"] == 2
    assert n_hooks(m) == hooks
    assert [p.requires_grad for p in m.module.parameters()] == flags
    assert fingerprint(m.module) == m.fingerprint


def test_das_is_seeded_and_runs_inside_no_grad(m):
    base, source, positions, target = _small()
    kw = dict(k=1, steps=4, batch_size=5)
    a = das(m, base, source, SITE, positions, target, seed=3, **kw)
    with torch.no_grad():
        b = das(m, base, source, SITE, positions, target, seed=3, **kw)
    c = das(m, base, source, SITE, positions, target, seed=4, **kw)
    assert torch.equal(a.basis, b.basis) and a.losses == b.losses
    assert not torch.equal(a.basis, c.basis)


def test_random_basis_is_seeded_and_orthonormal():
    u = random_basis(48, 6, seed=2)
    assert u.shape == (48, 6) and u.dtype == torch.float32
    torch.testing.assert_close(u.T @ u, torch.eye(6), atol=1e-5, rtol=0)
    assert torch.equal(u, random_basis(48, 6, seed=2)) and not torch.equal(u, random_basis(48, 6, seed=3))
    for k in (0, 49):
        with pytest.raises(DataError, match=r"`k` must be between 1 and d=48"):
            random_basis(48, k, seed=0)


def test_interchange_logits_along_no_direction_are_the_plain_runs_logits(m):
    base, source, positions, _ = _small(6)
    got = interchange_logits(m, base, source, SITE, positions, torch.zeros(48, 0), batch_size=4)
    ids, mask = pad_rows(base, pad_id=m.pad_id)
    with torch.no_grad():
        plain = m.module(input_ids=ids, attention_mask=mask).logits[:, -1]
    torch.testing.assert_close(got, plain.float(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("change, error, message", [
    (dict(source="drop"), DataError, "`base` has 12 prompts but `source` has 11; give one source prompt per base"),
    (dict(source="short"), ShapeError, "pair 0: the base prompt is 5 tokens but the source prompt is 4"),
    (dict(positions=[5] * 12), DataError, "`positions[0]` is 5 but pair 0 has 5 tokens; give an index in [-5, 4]"),
    (dict(positions=[-6] * 12), DataError, "`positions[0]` is -6 but pair 0 has 5 tokens"),
    (dict(positions=[0] * 11), DataError, "`positions` has 11 entries but there are 12 pairs; give one"),
    (dict(target=[7] * 11), DataError, "`target` has 11 token ids but there are 12 pairs; give one per pair"),
    (dict(target=7), DataError, "`target` must hold one token id per pair (12)"),
    (dict(target=[7] * 11 + [10_000]), DataError, "`target[11]` is 10000, not a token id"),
    (dict(k=0), DataError, "`k` must be between 1 and 48 (the width of blocks.3.resid_post), got 0"),
    (dict(k=49), DataError, "`k` must be between 1 and 48"),
    (dict(steps=0), DataError, "`steps` and `batch_size` must be positive integers"),
    (dict(lr=0.0), DataError, "`lr` must be a positive learning rate"),
    (dict(base=[]), DataError, "`base` and `source` are empty"),
])
def test_bad_das_input_is_an_error_naming_the_argument_and_the_fix(m, change, error, message):
    base, source, positions, target = _small()
    kw = dict(base=base, source=source, positions=positions, target=target, steps=1, seed=0)
    kw.update({key: value for key, value in change.items() if key != "source"})
    if change.get("source") == "drop":
        kw["source"] = source[:-1]
    elif change.get("source") == "short":
        kw["source"] = [row[:-1] for row in source]
    hooks = n_hooks(m)
    with pytest.raises(error, match=re.escape(message)):
        das(m, kw.pop("base"), kw.pop("source"), SITE, kw.pop("positions"), kw.pop("target"), **kw)
    assert n_hooks(m) == hooks


def test_interchange_logits_needs_a_basis_of_the_sites_width(m):
    base, source, positions, _ = _small()
    with pytest.raises(ShapeError, match=re.escape("`basis` must be a tensor [48, k] for blocks.3.resid_post")):
        interchange_logits(m, base, source, SITE, positions, torch.eye(4))
