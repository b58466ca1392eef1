"""Patching maps on architectures whose suffix replay cannot apply (ALiBi: BLOOM, MPT; a sliding
window shorter than the prompt: Mistral) or whose logits are not the output embedding alone
(Cohere's logit scale, Granite's division): each map equals a per-cell loop of full forwards
written with raw torch hooks on the Hugging Face modules, within 1e-4 (float32)."""

from __future__ import annotations

import pytest
import torch

from harness.measures import replay
from harness.measures.patching import answer_logit_diff, patch_head_map, patch_resid_map
from harness.models import architectures as arch
from harness.models.load import from_module
from tests.harness.models import _families

CLEAN = ["hello world, this is long", "hi", "abcdef"]
CORRUPT = ["hello WORLD, this is long", "ho", "abcxef"]  # same byte lengths, pair by pair
CORRECT, WRONG = [104, 105, 106, 107], [50, 60, 70, 80]


@pytest.fixture
def registry(monkeypatch):
    arch.architectures()
    monkeypatch.setattr(arch, "_REGISTRY", dict(arch._REGISTRY))
    monkeypatch.setattr(arch, "_SOURCES", dict(arch._SOURCES))


def loaded(name: str, **overrides):
    import transformers as tf

    arch.register_architecture(name, _families.LAYOUTS[name], replace=True)
    return from_module(_families.module(name, **overrides), tf.ByT5Tokenizer(), name=f"tiny:{name}")


# ----------------------------------------------------------------------------- the oracle (no harness code)

def _ids(tokenizer, text: str) -> torch.Tensor:
    return torch.tensor([tokenizer(text)["input_ids"]])


def _hidden(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def _with_hidden(args: tuple, kwargs: dict, h: torch.Tensor):
    return ((h,) + tuple(args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": h})


@torch.no_grad()
def _metric(module, ids: torch.Tensor, pair: int) -> float:
    logits = module(input_ids=ids).logits[0, -1].float()
    return float(logits[CORRECT[pair]] - logits[WRONG[pair]])


@torch.no_grad()
def oracle_resid(module, tokenizer, blocks_path: str, clean=CLEAN, corrupt=CORRUPT) -> dict:
    """(pair, layer, position) -> metric of the corrupt run with block `layer`'s input at
    `position` taken from the clean run; one full forward per cell."""
    blocks = module.get_submodule(blocks_path)
    out = {}
    for i, (c, x) in enumerate(zip(clean, corrupt)):
        for layer, block in enumerate(blocks, start=1):
            seen = {}

            def keep(mod, a, kw):
                seen["h"] = _hidden(a, kw).clone()
            handle = block.register_forward_pre_hook(keep, with_kwargs=True)
            try:
                module(input_ids=_ids(tokenizer, c))
            finally:
                handle.remove()
            for p in range(seen["h"].shape[1]):
                def patch(mod, a, kw, p=p):
                    h = _hidden(a, kw).clone()
                    h[:, p] = seen["h"][:, p]
                    return _with_hidden(a, kw, h)
                handle = block.register_forward_pre_hook(patch, with_kwargs=True)
                try:
                    out[i, layer, p] = _metric(module, _ids(tokenizer, x), i)
                finally:
                    handle.remove()
    return out


@torch.no_grad()
def oracle_heads(module, tokenizer, blocks_path: str, head_in: str, n_heads: int) -> dict:
    """(pair, layer, head) -> metric with the head's slice of the output projection's input taken
    from the clean run at every position."""
    blocks = module.get_submodule(blocks_path)
    out = {}
    for i, (c, x) in enumerate(zip(CLEAN, CORRUPT)):
        for layer, block in enumerate(blocks, start=1):
            proj = block.get_submodule(head_in)
            seen = {}

            def keep(mod, a):
                seen["z"] = a[0].clone()
            handle = proj.register_forward_pre_hook(keep)
            try:
                module(input_ids=_ids(tokenizer, c))
            finally:
                handle.remove()
            d_head = seen["z"].shape[-1] // n_heads
            for h in range(n_heads):
                cols = slice(h * d_head, (h + 1) * d_head)

                def patch(mod, a, cols=cols):
                    z = a[0].clone()
                    z[..., cols] = seen["z"][..., cols]
                    return (z,) + tuple(a[1:])
                handle = proj.register_forward_pre_hook(patch)
                try:
                    out[i, layer, h] = _metric(module, _ids(tokenizer, x), i)
                finally:
                    handle.remove()
    return out


def _assert_equal(values: torch.Tensor, want: dict, tol: float = 1e-4) -> None:
    assert want
    for (i, layer, col), expected in want.items():
        got = float(values[i, layer - 1, col])
        assert abs(got - expected) <= tol * max(1.0, abs(expected)), (i, layer, col, got, expected)


# ----------------------------------------------------------------------------- the maps

FAMILIES = ["bloom", "mpt", "mistral", "cohere", "granite"]


@pytest.mark.parametrize("name", FAMILIES)
def test_the_resid_map_equals_a_loop_of_full_forwards(registry, name):
    m = loaded(name)
    stack = m.layout.stack("blocks")
    pm = patch_resid_map(m, CLEAN, CORRUPT, answer_logit_diff(CORRECT[:3], WRONG[:3]), batch_size=7)
    _assert_equal(pm.values, oracle_resid(m.module, m.tokenizer, stack.blocks))
    assert torch.isnan(pm.values[1, :, 3:]).all()  # positions past the short pair's end


@pytest.mark.parametrize("name", FAMILIES)
def test_the_head_map_equals_a_loop_of_full_forwards(registry, name):
    m = loaded(name)
    stack = m.layout.stack("blocks")
    hm = patch_head_map(m, CLEAN, CORRUPT, answer_logit_diff(CORRECT[:3], WRONG[:3]), batch_size=5)
    n_heads = m.sites.stack("blocks").n_heads
    _assert_equal(hm.values, oracle_heads(m.module, m.tokenizer, stack.blocks, stack.head_in, n_heads))


@pytest.mark.parametrize("name", ["cohere", "granite"])
def test_the_maps_baselines_are_the_models_own_logits(registry, name):
    """The map's clean and corrupt metrics are the model's own forward's (the logit scale applied)."""
    m = loaded(name)
    pm = patch_resid_map(m, CLEAN, CORRUPT, answer_logit_diff(CORRECT[:3], WRONG[:3]))
    for i, (c, x) in enumerate(zip(CLEAN, CORRUPT)):
        assert float(pm.clean[i]) == pytest.approx(_metric(m.module, _ids(m.tokenizer, c), i), rel=1e-5, abs=1e-6)
        assert float(pm.corrupt[i]) == pytest.approx(_metric(m.module, _ids(m.tokenizer, x), i), rel=1e-5, abs=1e-6)


def test_alibi_and_a_short_window_take_the_full_replay(registry):
    """The replay path each model gets: the table says ALiBi models replay all positions; a
    window shorter than the prompt does too, and one at least as long keeps the suffix path."""
    assert not replay._suffix_ok(loaded("bloom"))
    assert not replay._suffix_ok(loaded("mpt"))
    short = loaded("mistral")
    assert replay._suffix_ok(short, width=4) and not replay._suffix_ok(short, width=5)
    assert replay._suffix_ok(loaded("granite"), width=1000)


def test_a_window_as_long_as_the_prompt_keeps_the_suffix_path_and_the_numbers(registry):
    m = loaded("mistral", sliding_window=64)
    assert replay._suffix_ok(m, width=26)
    pm = patch_resid_map(m, CLEAN, CORRUPT, answer_logit_diff(CORRECT[:3], WRONG[:3]), batch_size=7)
    _assert_equal(pm.values, oracle_resid(m.module, m.tokenizer, "model.layers"))
    corrupt = replay._plain(m, *replay_inputs(m), answer_logit_diff(CORRECT[:3], WRONG[:3]), heads=False, kv=True)
    assert corrupt.kv and corrupt.attend is not None  # the suffix path was taken


def replay_inputs(m):
    from harness.models.loaded import pad_rows

    return pad_rows([m.tokenizer(t)["input_ids"] for t in CORRUPT], pad_id=m.pad_id)


@pytest.mark.parametrize("name", ["mpt", "bloom"])
def test_as_many_pairs_as_heads_do_not_confuse_per_head_arguments(registry, name):
    """MPT's position bias [n_heads, 1, pos] and BLOOM's alibi [batch * n_heads, 1, pos] with
    4 pairs on 4 heads: the table says how each is laid out, so no head is taken for a row."""
    m = loaded(name)
    clean, corrupt = CLEAN + ["xyz!"], CORRUPT + ["xyq!"]
    assert m.sites.stack("blocks").n_heads == len(clean)
    pm = patch_resid_map(m, clean, corrupt, answer_logit_diff(CORRECT, WRONG), batch_size=3)
    _assert_equal(pm.values, oracle_resid(m.module, m.tokenizer, m.layout.stack("blocks").blocks, clean, corrupt))
