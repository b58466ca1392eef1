"""The resample batch changes speed, never numbers: with one sample or paired samples scipy draws
one stream of indices whatever the batch, so each estimate equals the one built with the batch of
2**20 elements bit for bit; the AUROC's unpaired classes, drawn batch by batch, keep that batch."""

from __future__ import annotations

import numpy as np
import pytest

from harness import stats
from harness.stats import _checks, _resampling

OLD_BATCH = 2**20   # the batch every interval was built with


def _estimates() -> dict:
    rng = np.random.default_rng(11)
    x, y = rng.normal(0.3, 1.0, 500), rng.normal(0.1, 1.0, 500)
    labels = np.arange(300) % 3 == 0
    return {
        "mean, BCa": stats.bootstrap_mean(x, seed=5, n_resamples=9999),
        "mean at 99.5% from the 95% resamples": stats.bootstrap_mean(x, seed=5, n_resamples=9999).at_level(0.995),
        "median, percentile": stats.bootstrap_ci(x[:60], statistic="median", method="percentile", seed=6,
                                                 n_resamples=1999),
        "paired difference": stats.paired_difference(x, y, seed=7, n_resamples=9999),
        "paired ratio": stats.paired_ratio(x + 3, y + 3, seed=8, n_resamples=4999),
        "statistic": stats.bootstrap_statistic(x[:80], lambda s: float(np.std(s)), name="sd", seed=9,
                                               n_resamples=999),
        "auroc": stats.auroc(x[:300] + labels, labels, seed=10, n_resamples=9999),
    }


def _numbers(est) -> tuple:
    return est.value, est.ci_low, est.ci_high, est.bootstrap_distribution.tobytes()


def test_every_estimate_is_bit_for_bit_the_one_built_with_the_old_batch(monkeypatch):
    now = {name: _numbers(est) for name, est in _estimates().items()}
    monkeypatch.setattr(_resampling, "_STREAM_BATCH_ELEMENTS", OLD_BATCH)
    monkeypatch.setattr(_resampling, "_BATCH_ELEMENTS", OLD_BATCH)
    before = {name: _numbers(est) for name, est in _estimates().items()}
    assert now.keys() == before.keys()
    for name in now:
        assert now[name] == before[name], name


def test_the_stream_batch_is_several_batches_at_the_study_size():
    # the equality above must compare different batchings: 9999 x 500 takes several batches now
    assert _checks._STREAM_BATCH_ELEMENTS // 500 < 9999 // 4
    assert _checks._BATCH_ELEMENTS == OLD_BATCH


def test_unpaired_samples_would_draw_other_resamples_with_another_batch():
    # why the AUROC keeps the old batch: scipy draws each batch sample after sample
    from scipy import stats as scipy_stats

    a, b = np.random.default_rng(0).normal(size=(2, 200))

    def dist(batch: int | None) -> np.ndarray:
        return scipy_stats.bootstrap((a, b), lambda u, v, axis=-1: u.mean(axis) - v.mean(axis), n_resamples=999,
                                     batch=batch, method="percentile", rng=np.random.default_rng(1)
                                     ).bootstrap_distribution

    assert not np.array_equal(dist(None), dist(100))
    assert np.array_equal(dist(None), dist(999))


@pytest.mark.parametrize("batch", [1, 7, 262, None])
def test_one_sample_draws_the_same_resamples_with_any_batch(batch):
    from scipy import stats as scipy_stats

    x = np.random.default_rng(2).normal(size=50)
    got = scipy_stats.bootstrap((x,), np.mean, n_resamples=999, batch=batch, method="BCa",
                                rng=np.random.default_rng(3))
    ref = scipy_stats.bootstrap((x,), np.mean, n_resamples=999, batch=20, method="BCa", rng=np.random.default_rng(3))
    assert np.array_equal(got.bootstrap_distribution, ref.bootstrap_distribution)
    assert (got.confidence_interval.low, got.confidence_interval.high) == (
        ref.confidence_interval.low, ref.confidence_interval.high)
