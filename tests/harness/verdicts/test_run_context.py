"""Run settings travel with the claim (`harness.verdicts.context`): inside a claim every harness
bootstrap and seeded draw takes the claim's seed and ``--claims-resamples`` unless given its own,
and each evidence record says what was used."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from harness import stats
from harness.errors import StatsError
from harness.measures.directions import Direction, random_direction
from harness.verdicts.context import current_context, default_resamples, default_seed, run_context
from harness.verdicts.evidence import Evidence

X = np.random.default_rng(0).normal(size=40)


def test_outside_any_run_a_seed_is_required_and_resamples_default_to_9999():
    assert current_context() is None
    with pytest.raises(StatsError, match="slope_near_zero: `seed` is required outside a claim"):
        stats.slope_near_zero(np.array([-1.0, 0.0, 1.0]), np.ones((5, 3)))
    assert default_resamples(None) == 9999
    assert stats.bootstrap_mean(X, seed=0).resamples == 9999


def test_inside_a_run_the_seed_and_resamples_in_force_are_used_and_explicit_arguments_win():
    with run_context(seed=7, resamples=99):
        est = stats.bootstrap_mean(X)
        assert (est.seed, est.resamples, est.bootstrap_distribution.shape) == (7, 99, (99,))
        assert est == stats.bootstrap_mean(X, seed=7, n_resamples=99)
        own = stats.bootstrap_mean(X, seed=3, n_resamples=199)
        assert (own.seed, own.resamples) == (3, 199)
        with run_context(seed=8, resamples=49):   # nested: the inner one, then the outer again
            assert (stats.bootstrap_mean(X).seed, stats.bootstrap_mean(X).resamples) == (8, 49)
        assert default_seed(None, owner="x") == 7
    assert current_context() is None


def test_seeded_draws_take_the_seed_in_force():
    like = Direction(torch.ones(16), "blocks.1.resid_post", "class-mean")
    with run_context(seed=5, resamples=10):
        drawn = random_direction(like)
    assert torch.equal(drawn.vector, random_direction(like, seed=5).vector)
    with pytest.raises(StatsError, match="random_direction: `seed` is required outside a claim"):
        random_direction(like)


def test_evidence_records_the_seed_and_resamples_used():
    with run_context(seed=11, resamples=59):
        est = stats.bootstrap_mean(X)
    ev = Evidence.from_estimate(est, expectation="positive()", held=False)
    assert (ev.seed, ev.resamples) == (11, 59)
    assert Evidence.from_estimate(stats.proportion(3, 10), expectation="at_least(0.1)", held=True).resamples is None


@pytest.mark.parametrize("seed, resamples", [(-1, 10), (0, 0), (0, True)])
def test_bad_run_settings_are_refused(seed, resamples):
    with pytest.raises(StatsError, match="must be an integer >="):
        with run_context(seed=seed, resamples=resamples):
            pass


def test_a_claim_that_never_mentions_them_follows_claims_seed_and_claims_resamples(pytester):
    pytester.makepyfile(test_follow='''
        import numpy as np
        import pytest
        from harness import expect, stats
        from harness.plugin import derive_seed

        X = np.random.default_rng(1).normal(loc=1.0, size=50)

        @pytest.fixture(scope="session")
        def fixture_estimate():
            return stats.bootstrap_mean(X)   # a session fixture: the run's base seed

        @pytest.mark.claim("The mean is positive")
        def test_mean(fixture_estimate, request, claim_seed):
            est = stats.bootstrap_mean(X)
            assert est.bootstrap_distribution.shape == (99,)
            assert est.seed == claim_seed
            assert fixture_estimate.seed == 4 and fixture_estimate.resamples == 99
            expect(est).positive()
    ''')
    result = pytester.runpytest("-p", "no:cacheprovider", "--claims-seed", "4", "--claims-resamples", "99")
    result.assert_outcomes(passed=1)
    report = json.loads((pytester.path / "reports/latest/report.json").read_text())
    (evidence,) = report["claims"][0]["evidence"]
    assert (evidence["seed"], evidence["resamples"]) == (report["claims"][0]["seed"], 99)
