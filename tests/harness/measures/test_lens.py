"""The logit lens and the per-layer residual stream (harness.measures.lens), and plot_layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness import stats
from harness.errors import DataError
from harness.measures.lens import layer_sites, logit_lens, residuals_at
from harness.reports.plots import plot_layers
from tests._support.tiny import tiny_model

DECODERS = ["gpt2", "qwen2.5-0.5b", "gemma-2-2b"]


def token_rows(n: int = 7, seed: int = 0) -> list[list[int]]:
    """Rows of different lengths (3..9 tokens), so a batch is padded."""
    rng = np.random.default_rng(seed)
    return [rng.integers(3, 300, size=int(rng.integers(3, 10))).tolist() for _ in range(n)]


def model_logits_at_last(model, rows) -> torch.Tensor:
    """The model's own next-token logits at each row's last token, one row at a time."""
    with torch.no_grad():
        return torch.stack([model.module(input_ids=torch.tensor([r])).logits[0, -1].float() for r in rows])


@pytest.mark.parametrize("arch", DECODERS)
def test_the_lens_after_the_last_block_reproduces_the_model_logits(arch):
    model, rows = tiny_model(arch), token_rows()
    targets = [r[0] for r in rows]
    lens = logit_lens(model, rows, targets, batch_size=4, keep_logits=True)
    own = model_logits_at_last(model, rows)
    torch.testing.assert_close(lens.logits[:, -1], own, atol=1e-4, rtol=0)
    torch.testing.assert_close(lens.prob[:, -1], torch.softmax(own, -1)[torch.arange(len(rows)), targets],
                               atol=1e-4, rtol=0)
    assert (lens.top1[:, -1] == own.argmax(-1)).all()


@pytest.mark.parametrize("arch", DECODERS)
def test_batched_equals_one_row_at_a_time(arch):
    model, rows = tiny_model(arch), token_rows()
    targets = [r[-1] for r in rows]
    batched = logit_lens(model, rows, targets, batch_size=5, keep_logits=True)
    single = logit_lens(model, rows, targets, batch_size=1, keep_logits=True)
    torch.testing.assert_close(batched.logits, single.logits, atol=1e-4, rtol=0)
    torch.testing.assert_close(batched.prob, single.prob, atol=1e-4, rtol=0)


def test_the_layers_are_the_hidden_states_before_the_final_norm():
    """Layer L < n is Hugging Face's hidden_states[L]; layer n is the last block's raw output."""
    model, rows = tiny_model("gpt2"), token_rows(3)
    got = residuals_at(model, rows)
    n = model.module.config.n_layer
    assert [str(s) for s in layer_sites(model)] == ["blocks.1.resid_pre"] + [f"blocks.{i}.block_out"
                                                                             for i in range(1, n + 1)]
    with torch.no_grad():
        for i, row in enumerate(rows):
            hidden = model.module(input_ids=torch.tensor([row]), output_hidden_states=True).hidden_states
            torch.testing.assert_close(got[i, :n], torch.stack(hidden[:n])[:, 0, -1], atol=1e-4, rtol=0)
            final = model.module.transformer.ln_f(got[i, n])
            torch.testing.assert_close(final, hidden[n][0, -1], atol=1e-4, rtol=0)


def test_a_position_reads_the_same_state_as_the_prompt_cut_there():
    """Causal: position p of a row is the last position of the row's first p + 1 tokens."""
    model, rows = tiny_model("gpt2"), token_rows(4)
    at_second = residuals_at(model, rows, position=1)
    cut = residuals_at(model, [r[:2] for r in rows])
    torch.testing.assert_close(at_second, cut, atol=1e-4, rtol=0)


def test_hits_are_top1_equal_to_the_target():
    model, rows = tiny_model("gpt2"), token_rows(5)
    lens = logit_lens(model, rows, [r[0] for r in rows])
    np.testing.assert_array_equal(lens.hits(), (lens.top1 == lens.targets[:, None]).numpy())
    assert lens.logits is None and lens.hits().shape == (5, model.module.config.n_layer + 1)


@pytest.mark.parametrize("kwargs, match", [
    (dict(rows=[], targets=[]), "`rows` is empty"),
    (dict(rows=[[5, 6], [7]], targets=[1, 2], position=-2), "outside row 1, which has 1 tokens"),
    (dict(rows=[[5, 6], [7]], targets=[1]), "one token id per row \\(2 rows\\)"),
    (dict(rows=[[5, 6]], targets=[999]), "token id 999, outside the vocabulary 0..383"),
    (dict(rows=[[5, 6]], targets=[1], batch_size=0), "`batch_size` must be a positive int"),
])
def test_bad_input_names_the_argument_and_the_fix(kwargs, match):
    with pytest.raises(DataError, match=match):
        logit_lens(tiny_model("gpt2"), **kwargs)


def test_an_encoder_decoder_model_is_refused():
    with pytest.raises(DataError, match="decoder-only"):
        residuals_at(tiny_model("byt5-small"), [[5, 6]])


def test_plot_layers_writes_a_png_and_leaves_no_temporary_file(tmp_path):
    rates = [stats.proportion(k, 100) for k in (10, 40, 90)]
    out = plot_layers({"probe": rates, "control": [stats.proportion(50, 100)] * 3}, tmp_path / "sub" / "p.png",
                      title="t", ylabel="accuracy", reference=0.5)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["p.png"]


@pytest.mark.parametrize("curves, layers, match", [
    ({}, None, "`curves` is empty"),
    ({"a": [stats.proportion(1, 2)], "b": [stats.proportion(1, 2)] * 2}, None, "as many as the others"),
    ({"a": [stats.proportion(1, 2)] * 2}, [0, 1, 2], "`layers` has 3 entries for curves of 2"),
])
def test_plot_layers_refuses_curves_it_cannot_draw(tmp_path, curves, layers, match):
    with pytest.raises(DataError, match=match):
        plot_layers(curves, tmp_path / "x.png", title="t", ylabel="y", layers=layers)
