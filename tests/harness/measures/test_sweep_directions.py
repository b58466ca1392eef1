"""sweep_directions: k directions swept in one pass equal k separate sweeps (a control's random
draws batched), on the encoder-cached and the plain path; input errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness import DataError, Direction, Positions, ShapeError, random_direction, sweep, sweep_directions, symmetric
from tests._support.tiny import ARCHITECTURES, tiny_model
from tests.harness.measures.test_sweeps import ATOL, SPANS, TEXTS, direction_of, score_of, site_of

ALPHAS = symmetric(1.0, steps=3)
VARIANTS = {"add": {}, "rms_add": {"rms_scaled": True}, "add_at_spans": {"positions": Positions.of_spans(SPANS)}}


def draws(m, site: str, k: int = 3) -> list[torch.Tensor]:
    like = Direction(direction_of(m, site), site, "test")
    return [random_direction(like, seed=i).vector for i in range(k)]


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_each_curve_equals_the_sweep_of_its_direction_alone(arch, variant):
    m = tiny_model(arch)
    site = site_of(arch)
    vectors = draws(m, site)
    for batch_size in (4, 64):   # 4 splits an example's 9 rows (3 directions x 3 alphas) across chunks
        curves = sweep_directions(m, TEXTS, at=site, directions=vectors, alphas=ALPHAS, score=score_of(arch),
                                  batch_size=batch_size, **VARIANTS[variant])
        assert len(curves) == len(vectors)
        for v, curve in zip(vectors, curves):
            alone = sweep(m, TEXTS, at=site, direction=v, alphas=ALPHAS, score=score_of(arch), **VARIANTS[variant])
            assert curve.scores.shape == (len(TEXTS), ALPHAS.size)
            assert (curve.site, curve.kind) == (alone.site, alone.kind)
            np.testing.assert_allclose(curve.scores, alone.scores, atol=ATOL, rtol=0,
                                       err_msg=f"batch_size={batch_size}")


def test_the_curves_differ_by_direction_and_share_the_unedited_column():
    m = tiny_model("byt5-small")
    site = site_of("byt5-small")
    curves = sweep_directions(m, TEXTS, at=site, directions=draws(m, site), alphas=ALPHAS, score=score_of("byt5-small"))
    np.testing.assert_allclose(curves[0].at(0.0), curves[2].at(0.0), atol=ATOL, rtol=0)
    assert not np.allclose(curves[0].scores, curves[1].scores, atol=10 * ATOL)


def test_directions_sweep_at_the_site_they_carry():
    m = tiny_model("gpt2")
    site = site_of("gpt2")
    like = Direction(direction_of(m, site), site, "test")
    curves = sweep_directions(m, TEXTS, directions=[random_direction(like, seed=i) for i in range(2)],
                              alphas=ALPHAS, score=score_of("gpt2"))
    assert [c.site for c in curves] == [str(m.site(site))] * 2


def test_directions_at_different_sites_are_an_error():
    m = tiny_model("gpt2")
    a, b = (Direction(direction_of(m, s), s, "test") for s in ("blocks.1.resid_post", "blocks.2.resid_post"))
    with pytest.raises(DataError, match="different sites"):
        sweep_directions(m, TEXTS, directions=[a, b], alphas=ALPHAS, score=score_of("gpt2"))


@pytest.mark.parametrize("bad, message", [([], "`directions` is empty"),
                                          (torch.zeros(4), "must be a list of")])
def test_no_directions_or_a_bare_tensor_is_an_error(bad, message):
    m = tiny_model("gpt2")
    with pytest.raises(DataError, match=message):
        sweep_directions(m, TEXTS, at=site_of("gpt2"), directions=bad, alphas=ALPHAS, score=score_of("gpt2"))


def test_a_direction_of_the_wrong_width_is_an_error_naming_the_site():
    m = tiny_model("gpt2")
    site = site_of("gpt2")
    with pytest.raises(ShapeError, match=site.replace(".", r"\.")):
        sweep_directions(m, TEXTS, at=site, directions=[direction_of(m, site), torch.zeros(3)], alphas=ALPHAS,
                         score=score_of("gpt2"))
