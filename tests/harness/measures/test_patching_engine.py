"""The patching engine: a new map family is one short entry point over `patch_cells`, and a
column may patch with an intervention kind written outside the library; each equals a per-cell
loop of full forwards with raw torch hooks on the Hugging Face modules (no harness code)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
import torch

from harness.errors import ShapeError
from harness.interventions import Intervention, Positions
from harness.measures.patching import answer_logit_diff
from harness.measures.patching_engine import Block, Column, each_position, every_column, pair_runs, patch_cells
from harness.models.loaded import LoadedModel
from tests._support.tiny import tiny_model

CLEAN = ["hello world, this is long", "hi", "abcdef"]
CORRUPT = ["hello WORLD, this is long", "ho", "abcxef"]  # same lengths, pair by pair
METRIC = answer_logit_diff([104, 105, 106], [50, 60, 70])


@pytest.fixture(scope="module")
def m() -> LoadedModel:
    return tiny_model("gpt2")


def mlp_out_position_map(model: LoadedModel, clean, corrupt, metric, *, batch_size: int = 256) -> torch.Tensor:
    """A family the library does not ship: ``blocks.L.mlp_out`` at each position, [n, layers, pos]."""
    stack, n_layers = model.main_stack, model.sites.stack(model.main_stack).n_layers
    sites = [model.site(stack, L, "mlp_out") for L in range(1, n_layers + 1)]
    runs = pair_runs(model, clean, corrupt, metric, batch_size=batch_size, record=sites)
    where = each_position(runs.mask)
    width = runs.mask.shape[1]
    return patch_cells(model, runs.corrupt, runs.mask, metric, n_blocks=n_layers, batch_size=batch_size,
                       valid=runs.mask.bool(),
                       blocks=lambda j: Block([Column(sites[j], runs.clean_at[sites[j]], runs.corrupt_at[sites[j]])]
                                              * width, where))


def raw_last_logits(m: LoadedModel, text: str, module: torch.nn.Module, edit=None) -> tuple[torch.Tensor, list]:
    """One full forward of `text` with a raw forward hook on `module` that records its output
    and, with `edit`, replaces it by ``edit(output)``; the logits at the last token."""
    seen: list = []

    def hook(mod, args, out):
        seen.append(out.detach().clone())
        return None if edit is None else edit(out)

    ids = torch.tensor([m.tokenize([text])[0]])
    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            logits = m.module(input_ids=ids).logits[0, -1]
    finally:
        handle.remove()
    return logits, seen


def test_a_new_family_is_one_short_entry_point_and_equals_the_per_cell_oracle(m):
    values = mlp_out_position_map(m, CLEAN, CORRUPT, METRIC, batch_size=7)
    assert values.shape == (3, 12, 26)
    right = [(104, 50), (105, 60), (106, 70)]
    for i, (c, x) in enumerate(zip(CLEAN, CORRUPT)):
        n = len(m.tokenize([c])[0])
        assert torch.isnan(values[i, :, n:]).all()
        for L in (1, 6, 12):
            mlp = m.module.transformer.h[L - 1].mlp
            _, (source,) = raw_last_logits(m, c, mlp)
            for p in range(n):
                def put(out, p=p):
                    out = out.clone()
                    out[:, p] = source[:, p]
                    return out
                logits, _ = raw_last_logits(m, x, mlp, put)
                want = float(logits[right[i][0]] - logits[right[i][1]])
                assert abs(float(values[i, L - 1, p]) - want) < 1e-4, (i, L, p)


@dataclass(frozen=True)
class PatchAlong(Intervention):
    """Written outside the library: take the source's component along the unit vector ``u``."""

    source: torch.Tensor
    u: torch.Tensor
    positions: Positions = Positions.all()

    def apply(self, act, where, site, run, context=None):
        u = self.u.to(act.device, act.dtype)
        edited = act + ((self.source - act) @ u)[..., None] * u
        return torch.where(where[..., None], edited, act)


def test_a_column_patches_with_a_kind_written_outside_the_library(m):
    """A resid map at the last token that swaps only the component along ``u``."""
    d = m.width(m.site("blocks.1.resid_pre"))
    u = torch.randn(d, generator=torch.Generator().manual_seed(0))
    u = u / u.norm()
    runs = pair_runs(m, CLEAN, CORRUPT, METRIC, batch_size=256)
    last = Positions.last().resolve(runs.mask)
    n_layers = len(runs.corrupt.inputs)

    def block(j: int) -> Block:
        site = m.site("blocks", j + 1, "resid_pre")
        column = Column(site, runs.clean.inputs[j], runs.corrupt.inputs[j],
                        edit=lambda source, positions: PatchAlong(source, u, positions))
        return Block([column], every_column(last, 1))

    values = patch_cells(m, runs.corrupt, runs.mask, METRIC, blocks=block, n_blocks=n_layers, batch_size=256)
    right = [(104, 50), (105, 60), (106, 70)]
    for i, (c, x) in enumerate(zip(CLEAN, CORRUPT)):
        for L in (1, 5, 12):
            block_module = m.module.transformer.h[L - 1]
            clean_in: list = []
            h = block_module.register_forward_pre_hook(lambda mod, args: clean_in.append(args[0].detach().clone()))
            try:
                with torch.no_grad():
                    m.module(input_ids=torch.tensor([m.tokenize([c])[0]]))
            finally:
                h.remove()

            def swap(mod, args):
                x_in = args[0].clone()
                x_in[:, -1] += ((clean_in[0][:, -1] - x_in[:, -1]) @ u)[..., None] * u
                return (x_in,) + tuple(args[1:])

            h = block_module.register_forward_pre_hook(swap)
            try:
                with torch.no_grad():
                    logits = m.module(input_ids=torch.tensor([m.tokenize([x])[0]])).logits[0, -1]
            finally:
                h.remove()
            want = float(logits[right[i][0]] - logits[right[i][1]])
            assert abs(float(values[i, L - 1, 0]) - want) < 1e-4, (i, L)


def test_a_block_whose_where_has_another_shape_is_a_shape_error(m):
    runs = pair_runs(m, CLEAN, CORRUPT, METRIC, batch_size=256)
    site = m.site("blocks.1.resid_pre")
    with pytest.raises(ShapeError, match=re.escape("`where` of block 0 is (3, 1, 5), expected [3, 1, 26] "
                                                   "(rows, columns, positions)")):
        patch_cells(m, runs.corrupt, runs.mask, METRIC, n_blocks=1, batch_size=8,
                    blocks=lambda j: Block([Column(site, runs.clean.inputs[0], runs.corrupt.inputs[0])],
                                           torch.ones(3, 1, 5, dtype=torch.bool)))


def test_the_engine_leaves_no_hook_behind(m):
    before = sum(len(mod._forward_hooks) + len(mod._forward_pre_hooks) for mod in m.module.modules())
    mlp_out_position_map(m, CLEAN[:1], CORRUPT[:1], METRIC)
    after = sum(len(mod._forward_hooks) + len(mod._forward_pre_hooks) for mod in m.module.modules())
    assert after == before
