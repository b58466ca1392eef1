"""Conformance: every supported decoder architecture, each operation against the oracle.

For each model type of `tests._support.architectures`, and the variants whose blocks a config
lays out differently (Falcon multi-query and ALiBi, GPT-NeoX sequential, StableLM parallel), a
tiny random-weight model saved with ``save_pretrained`` and loaded with ``load_model``, under the
``eager`` and ``sdpa`` attention implementations, in float32, the harness's numbers are compared
with `tests._support.oracle`, plain loops of full forwards of one unpadded example with raw torch
hooks on the Hugging Face modules (no harness code):

    loading                 a checkpoint saved with the ByT5 tokenizer loads with it (not yet for
                            13 types whose tokenizer class transformers forces)
    recorded sites          resid_pre/resid_post/attn_out/mlp_out/block_out/heads of a padded batch
                            vs the modules' own outputs and ``output_hidden_states``
    finer sites             resid_mid, MLP neurons (pre, pre_linear, post) and q/k/v vs the modules
                            (fused projections split as the modelling code splits them); a point
                            the type has no module for is refused
    steering sweep          `sweep` of a logit difference vs full forwards with the vector added (to
                            the residual, and to the values and the MLP neurons, fused or not)
    patching maps           `patch_resid_map`, `patch_head_map` and `patch_layer_map` (at every position
                            and at the last) vs per-cell full-forward patching
    logit lens              `logit_lens` vs the model's own logits with its final norm re-fed
    attention weights       `attention_weights` of a padded batch vs the model's ``output_attentions``
    steered generation      `generate` with the key/value cache vs greedy decoding without one

The prompt pairs are of equal and of different lengths, so the batched runs are right-padded, and
longer than the sliding windows of the types that have them.
"""

from __future__ import annotations

import pytest
import torch

from harness.errors import SiteError
from harness.interventions import Add, Record, intervene
from harness.measures.attention import attention_weights
from harness.measures.generate import generate
from harness.measures.lens import logit_lens
from harness.measures.patching import answer_logit_diff, patch_head_map, patch_resid_map
from harness.measures.patching_outputs import patch_layer_map
from harness.measures.scores import logit_diff
from harness.measures.sweeps import scorer, sweep
from harness.models.load import load_model
from harness.models.loaded import pad_rows
from harness.models.logits import unembed
from harness.models.sites import Site
from tests._support import oracle
from tests._support.architectures import MODEL_TYPES, VARIANTS, build, loaded, sdpa_refusal

IMPLEMENTATIONS = ("eager", "sdpa")
ATOL = 1e-5   # every activation, score, map value and logit (the largest error seen elsewhere: 5e-6) ...
ATOL_OF = {"nemotron": 1e-4}   # ... but Nemotron's relu-squared MLP makes residuals near 40: ~2e-5 of float32 rounding

CLEAN = ["ab=1+2;", "xy", "no: 4-3"]
CORRUPT = ["ab=3+2;", "xz", "no: 7-3"]   # pair i has the length of CLEAN[i]; the pairs differ in length
A, B = "a", "b"                           # the logit difference read at the last token
ALPHAS = (-2.0, 0.0, 3.0)
STEER_BLOCK = 0                           # the vector goes on the output of block 1: blocks.1.resid_post

# (model type, operation) -> why the harness gets it wrong today: a strict xfail under both
# implementations, so the entry must go when it is fixed.
KNOWN_FAILURES: dict[tuple[str, str], str] = {}


# variants the table cannot describe at all: name -> why
UNSUPPORTED = {
    "opt-post_norm": "OPT-350m's layout (do_layer_norm_before=False) has no final norm (final_layer_norm is None; "
                     "project_out maps to the embedding width): StackLayout.final_norm is required, so load_model "
                     "raises SiteError naming model.decoder.final_layer_norm",
}


def cases(operation: str) -> list:
    """``(model_type, impl)`` parameters of every type under each implementation, with the strict
    xfail of `KNOWN_FAILURES` where listed."""
    out = []
    for model_type in [t for t in MODEL_TYPES + VARIANTS if t not in UNSUPPORTED]:
        reason = KNOWN_FAILURES.get((model_type, operation))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        out.extend(pytest.param(model_type, impl, marks=marks, id=f"{model_type}-{impl}") for impl in IMPLEMENTATIONS)
    return out


def model_for(model_type: str, impl: str):
    if impl == "sdpa" and (why := sdpa_refusal(model_type)):
        pytest.skip(why)
    return loaded(model_type, impl)


def rows_of(m, texts):
    return [m.tokenizer(t)["input_ids"] for t in texts]


def token(m, text: str) -> int:
    ids = m.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == 1
    return ids[0]


def vector(m) -> torch.Tensor:
    d = m.sites.stack(m.main_stack).d_model
    return torch.randn(d, generator=torch.Generator().manual_seed(7))


def paths(model_type: str) -> oracle.Paths:
    return oracle.PATHS[model_type]


def _metric_value(logits: torch.Tensor, a: int, b: int) -> float:
    """The logit difference ``a - b`` at the last position of ``logits [pos, vocab]``."""
    return float(logits[-1, a] - logits[-1, b])


def tolerance(model_type: str) -> float:
    return ATOL_OF.get(model_type, ATOL)


def close(got: torch.Tensor, want: torch.Tensor, atol: float, what: str) -> None:
    got, want = got.float(), want.float()
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} vs the oracle's {tuple(want.shape)}"
    err = (got - want).abs().max().item() if got.numel() else 0.0
    assert err <= atol, f"{what}: max |harness - oracle| = {err:.3g} > {atol}"


# --------------------------------------------------------------------------- coverage


def test_every_built_in_decoder_entry_of_the_table_is_checked_here():
    from harness.models import architectures, layouts

    built_in = {t for t, layout in {**architectures.LAYOUTS, **layouts.LAYOUTS}.items() if len(layout.stacks) == 1}
    here = set(MODEL_TYPES)
    assert built_in == here, (f"built-in entries without a tiny model: {sorted(built_in - here)}; "
                              f"tiny models without an entry: {sorted(here - built_in)}")


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_a_checkpoint_saved_with_the_byt5_tokenizer_loads_with_it(model_type, tmp_path):
    """transformers 5 forces its own tokenizer class for some model types (mistral, phi3, glm, ...)
    and cannot build it from a ByT5 checkpoint's files: load_model loads the declared class."""
    from transformers import ByT5Tokenizer

    build(model_type).save_pretrained(tmp_path)
    ByT5Tokenizer().save_pretrained(tmp_path)
    m = load_model(str(tmp_path), name=f"tiny:{model_type}:byt5")
    assert m.tokenize(["ab"]) == [[100, 101, 1]]


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.xfail(strict=True, raises=SiteError,
                                                                             reason=why))
                                  for name, why in UNSUPPORTED.items()])
def test_a_layout_the_table_cannot_describe_loads_and_conforms(name):
    test_recorded_sites_are_the_modules_activations(name, "eager")


# --------------------------------------------------------------------------- recorded sites


@pytest.mark.parametrize("model_type, impl", cases("record"))
def test_recorded_sites_are_the_modules_activations(model_type, impl):
    m, atol = model_for(model_type, impl), tolerance(model_type)
    rows = rows_of(m, CLEAN + CORRUPT)
    ids, mask = pad_rows(rows, pad_id=m.pad_id)
    shape = m.sites.stack(m.main_stack)
    n = shape.n_layers
    plan = {}
    for point in ("resid_pre", "resid_post", "attn_out", "mlp_out", "block_out", "head"):
        plan.update((site, Record()) for site in m.sites.all_sites(point, m.main_stack))
    with torch.no_grad(), intervene(m, plan, masks={m.main_stack: mask}) as run:
        m.module(input_ids=ids, attention_mask=mask)
    p = paths(model_type)
    d_head = shape.d_head
    for i, row in enumerate(rows):
        t = oracle.trace(m.module, p, row)
        real = len(row)

        def at(site: Site) -> torch.Tensor:
            return run.recorded[site][i, :real]

        for layer in range(n + 1):
            close(at(Site(m.main_stack, layer, "resid_post")), t.hidden_states[layer], atol,
                  f"row {i} resid_post {layer} vs output_hidden_states")
        for layer in range(1, n + 1):
            b = layer - 1
            close(at(Site(m.main_stack, layer, "resid_pre")), t.block_in[b], atol, f"row {i} resid_pre {layer}")
            close(at(Site(m.main_stack, layer, "block_out")), t.block_out[b], atol, f"row {i} block_out {layer}")
            close(at(Site(m.main_stack, layer, "attn_out")), t.attn[b], atol, f"row {i} attn_out {layer}")
            close(at(Site(m.main_stack, layer, "mlp_out")), t.mlp[b], atol, f"row {i} mlp_out {layer}")
            for h in range(shape.n_heads):
                close(at(Site(m.main_stack, layer, "head", head=h)), t.heads[b][:, h * d_head:(h + 1) * d_head],
                      atol, f"row {i} head {h} of block {layer}")
        # resid_pre of block 1 is the embeddings the model reports; block L's output is resid_post L
        close(t.block_in[0], t.hidden_states[0], atol, f"row {i}: block 1 input vs hidden_states[0]")
        for b in range(n - 1):
            close(t.block_out[b], t.hidden_states[b + 1], atol, f"row {i}: block {b + 1} output")


FINER = ("resid_mid", "mlp_pre", "mlp_pre_linear", "mlp_post", "attn.q", "attn.k", "attn.v")


@pytest.mark.parametrize("model_type, impl", cases("finer"))
def test_the_finer_sites_are_the_modules_activations_and_absent_ones_are_refused(model_type, impl):
    m, atol = model_for(model_type, impl), tolerance(model_type)
    rows = rows_of(m, CLEAN + CORRUPT)
    ids, mask = pad_rows(rows, pad_id=m.pad_id)
    n = m.sites.stack(m.main_stack).n_layers
    want = [oracle.finer(m.module, paths(model_type), row) for row in rows]
    present = [point for point in FINER if point in want[0]]
    for point in FINER:
        if point not in present:
            with pytest.raises(SiteError):
                m.site(m.main_stack, 1, point)
    plan = {Site(m.main_stack, layer, point): Record() for point in present for layer in range(1, n + 1)}
    with torch.no_grad(), intervene(m, plan, masks={m.main_stack: mask}) as run:
        m.module(input_ids=ids, attention_mask=mask)
    for i, row in enumerate(rows):
        for site in plan:
            close(run.recorded[site][i, :len(row)], want[i][site.point][site.layer - 1], atol, f"row {i} {site}")


# --------------------------------------------------------------------------- steering sweep


@pytest.mark.parametrize("model_type, impl", cases("sweep"))
def test_a_steering_sweep_equals_full_forwards_with_the_vector_added(model_type, impl):
    m, atol = model_for(model_type, impl), tolerance(model_type)
    v = vector(m)
    curve = sweep(m, CLEAN, at=f"{m.main_stack}.{STEER_BLOCK + 1}.resid_post", direction=v, alphas=ALPHAS,
                  score=scorer(logit_diff, A, B))
    a, b = token(m, A), token(m, B)
    want = torch.tensor([[float(logits[-1, a] - logits[-1, b])
                          for alpha in ALPHAS
                          for logits in [oracle.steered(m.module, paths(model_type), row, block=STEER_BLOCK,
                                                        vector=v, alpha=alpha)]]
                         for row in rows_of(m, CLEAN)])
    close(torch.as_tensor(curve.scores), want, atol, "sweep scores [example, alpha]")
    assert want[:, 0].sub(want[:, 1]).abs().max() > 1e-3  # the vector moves the score


@pytest.mark.parametrize("model_type, impl", cases("finer_sweep"))
def test_a_sweep_at_the_values_or_the_mlp_neurons_equals_full_forwards_with_the_module_edited(model_type, impl):
    m, atol = model_for(model_type, impl), tolerance(model_type)
    p = paths(model_type)
    rows = rows_of(m, CLEAN)
    present = oracle.finer(m.module, p, rows[0])
    a, b = token(m, A), token(m, B)
    points = [point for point in ("attn.v", "mlp_post") if point in present]
    for point in points:
        site = Site(m.main_stack, STEER_BLOCK + 1, point)
        v = torch.randn(m.width(site), generator=torch.Generator().manual_seed(11))
        curve = sweep(m, CLEAN, at=site, direction=v, alphas=ALPHAS, score=scorer(logit_diff, A, B))
        want = torch.tensor([[_metric_value(oracle.edited(m.module, p, row, block=STEER_BLOCK, point=point,
                                                          vector=alpha * v), a, b) for alpha in ALPHAS]
                             for row in rows])
        close(torch.as_tensor(curve.scores), want, atol, f"sweep at {site} [example, alpha]")
        assert want[:, 0].sub(want[:, 1]).abs().max() > 1e-3  # the edit moves the score


# --------------------------------------------------------------------------- patching maps


@pytest.mark.parametrize("model_type, impl", cases("resid_map"))
def test_the_resid_patching_map_equals_per_cell_full_forward_patching(model_type, impl):
    m, atol = model_for(model_type, impl), tolerance(model_type)
    a, b = token(m, A), token(m, B)
    got = patch_resid_map(m, CLEAN, CORRUPT, answer_logit_diff(a, b))
    p = paths(model_type)
    n = m.sites.stack(m.main_stack).n_layers
    want = torch.full_like(got.values, float("nan"))
    for i, (clean, corrupt) in enumerate(zip(rows_of(m, CLEAN), rows_of(m, CORRUPT))):
        t = oracle.trace(m.module, p, clean)
        corrupt_logits = oracle.run(m.module, corrupt)
        close(got.clean[i:i + 1], torch.tensor([_metric_value(t.logits, a, b)]), atol, f"pair {i} clean metric")
        close(got.corrupt[i:i + 1], torch.tensor([_metric_value(corrupt_logits, a, b)]), atol,
              f"pair {i} corrupt metric")
        for block in range(n):
            for pos in range(len(clean)):
                logits = oracle.patched_resid(m.module, p, corrupt, t.block_in[block], block=block, pos=pos)
                want[i, block, pos] = _metric_value(logits, a, b)
    assert torch.equal(got.values.isnan(), want.isnan()), "NaN only past each pair's length"
    close(got.values.nan_to_num(), want.nan_to_num(), atol, "patch_resid_map values [pair, layer, position]")


@pytest.mark.parametrize("model_type, impl", cases("head_map"))
@pytest.mark.parametrize("at", ["all", "last"])
def test_the_head_patching_map_equals_per_cell_full_forward_patching(model_type, impl, at):
    m, atol = model_for(model_type, impl), tolerance(model_type)
    a, b = token(m, A), token(m, B)
    got = patch_head_map(m, CLEAN, CORRUPT, answer_logit_diff(a, b), at=at)
    p = paths(model_type)
    shape = m.sites.stack(m.main_stack)
    want = torch.empty_like(got.values)
    for i, (clean, corrupt) in enumerate(zip(rows_of(m, CLEAN), rows_of(m, CORRUPT))):
        t = oracle.trace(m.module, p, clean)
        for block in range(shape.n_layers):
            for h in range(shape.n_heads):
                heads = t.heads[block]
                if at == "last":  # the clean head at the last token only, the corrupt one elsewhere
                    heads = oracle.trace(m.module, p, corrupt).heads[block].clone()
                    heads[-1] = t.heads[block][-1]
                logits = oracle.patched_head(m.module, p, corrupt, heads, block=block, head=h, d_head=shape.d_head)
                want[i, block, h] = _metric_value(logits, a, b)
    close(got.values, want, atol, f"patch_head_map(at={at!r}) values [pair, layer, head]")
    assert (want - got.corrupt[:, None, None]).abs().max() > 1e-3  # some head matters


@pytest.mark.parametrize("model_type, impl", cases("layer_map"))
@pytest.mark.parametrize("at", ["all", "last"])
def test_the_layer_patching_map_equals_per_cell_full_forward_patching(model_type, impl, at):
    m, atol = model_for(model_type, impl), tolerance(model_type)
    a, b = token(m, A), token(m, B)
    got = patch_layer_map(m, CLEAN, CORRUPT, answer_logit_diff(a, b), points=("attn_out", "mlp_out"), at=at)
    p = paths(model_type)
    n = m.sites.stack(m.main_stack).n_layers
    want = torch.empty_like(got.values)
    for i, (clean, corrupt) in enumerate(zip(rows_of(m, CLEAN), rows_of(m, CORRUPT))):
        t = oracle.trace(m.module, p, clean)
        positions = range(len(clean)) if at == "all" else [len(clean) - 1]
        for block in range(n):
            for col, (module, acts) in enumerate((("attn_add", t.attn), ("mlp_add", t.mlp))):
                logits = oracle.patched_output(m.module, p, corrupt, acts[block], block=block, module=module,
                                               positions=positions)
                want[i, block, col] = _metric_value(logits, a, b)
    close(got.values, want, atol, f"patch_layer_map(at={at!r}) values [pair, layer, attn_out | mlp_out]")
    assert (want - got.corrupt[:, None, None]).abs().max() > 1e-3  # some layer matters


# --------------------------------------------------------------------------- logit lens


@pytest.mark.parametrize("model_type, impl", cases("lens"))
def test_the_logit_lens_is_the_models_own_logit_rule_at_every_layer(model_type, impl):
    m, atol = model_for(model_type, impl), tolerance(model_type)
    rows = rows_of(m, CLEAN)
    got = logit_lens(m, rows, targets=[token(m, A)] * len(rows), keep_logits=True)
    p = paths(model_type)
    for i, row in enumerate(rows):
        t = oracle.trace(m.module, p, row)
        residuals = [t.block_in[0]] + t.block_out
        for layer, residual in enumerate(residuals):
            want = oracle.lens(m.module, p, row, residual)[-1]
            close(got.logits[i, layer], want, atol, f"row {i} lens at layer {layer}")
        close(got.logits[i, -1], t.logits[-1], atol, f"row {i}: the last layer's lens vs the model's logits")
        final_norm = m.module.get_submodule(p.final_norm)
        with torch.no_grad():
            own = unembed(m, final_norm(t.block_out[-1][None]))[0]
        close(own, t.logits, atol, f"row {i}: unembed of the final norm's output vs the model's logits")


# --------------------------------------------------------------------------- attention weights


@pytest.mark.parametrize("model_type, impl", cases("attention"))
def test_attention_weights_are_the_models_own(model_type, impl):
    m, atol = model_for(model_type, impl), tolerance(model_type)
    rows = rows_of(m, CLEAN + CORRUPT)
    got = attention_weights(m, rows)
    assert m.module.config._attn_implementation == impl  # put back
    for i, row in enumerate(rows):
        close(torch.as_tensor(got[i]), oracle.attention_pattern(m.module, row), atol, f"row {i} attention weights")


# --------------------------------------------------------------------------- steered generation


@pytest.mark.parametrize("model_type, impl", cases("generate"))
def test_steered_generation_with_the_cache_equals_greedy_decoding_without_one(model_type, impl):
    m, atol = model_for(model_type, impl), tolerance(model_type)
    v = vector(m)
    prompts, alphas = CLEAN[:2] * 2, [0.0, 0.0, 2.0, 2.0]
    got = generate(m, prompts, max_new_tokens=4, cache=True, return_logits=True,
                   interventions={f"{m.main_stack}.{STEER_BLOCK + 1}.resid_post":
                                  Add(v, alpha=torch.tensor(alphas))})
    eos = m.tokenizer.eos_token_id
    for j, (prompt, alpha) in enumerate(zip(prompts, alphas)):
        ids, logits = oracle.greedy(m.module, paths(model_type), rows_of(m, [prompt])[0], steps=4, eos=eos,
                                    block=STEER_BLOCK, vector=v, alpha=alpha)
        assert got[j].ids == ids, f"row {j} (alpha {alpha}): {got[j].ids} vs the uncached {ids}"
        close(got[j].logits, logits, atol, f"row {j} (alpha {alpha}) logits")
