"""Statistics for claims: each returns an `Estimate` (a value, a CI, and what it rests on;
`harness.stats.estimate`).

Contents, with the resampling unit each one uses:

==========================================  ==================================================
``bootstrap_ci(data, statistic=...)``       CI of the mean or median of per-example values.
                                            Resamples examples.
``bootstrap_mean(data)``                    `bootstrap_ci` with the statistic fixed to the mean.
                                            Resamples examples.
``slope_near_zero(alphas, scores)``         Mean per-example least-squares slope of score on
                                            alpha. Resamples examples (an example's scores at
                                            different alphas are correlated, so the alphas are
                                            never resampled on their own).
``paired_difference(x, y)``                 mean(x - y). Resamples examples, pairs kept together.
``paired_ratio(x, y)``                      mean(x) / mean(y). Resamples examples, pairs kept
                                            together.
``auroc(scores, labels)``                   Area under the ROC curve (Mann-Whitney U / n1 n0).
                                            Resamples examples within each class (positives
                                            and negatives separately), score and label kept
                                            together.
``auroc_difference(scores, controls, y)``   AUROC of scores minus the mean AUROC of k controls
                                            on the same examples. Resamples examples within
                                            each class, an example's scores kept together.
``bootstrap_statistic(data, statistic)``    CI of any statistic of the whole sample (a rank
                                            correlation of mean maps, a crossing layer).
                                            Resamples examples (the first axis of `data`).
``ratio_of(numerator, denominator)``        Ratio of two bootstrap estimates, resample by
                                            resample. Uses whatever unit the two inputs used.
``difference_of(first, second)``            Difference of two bootstrap estimates, resample by
                                            resample (different seeds: two independent samples).
``proportion(successes, n)``                Wilson or Clopper-Pearson interval. Unit: trials,
                                            no resampling.
``proportion_of(outcomes)``                 `proportion` from a 0/1 or boolean array. Trials.
``strongest_of(estimates)``                 Of a control's estimates on k random draws, the one
                                            whose CI reaches farthest from zero. Each draw's
                                            own unit.
``equivalent(estimate, margin=...)``        True when the whole CI lies in [-margin, +margin].
``bootstrap_pvalue(estimate, null=...)``    Two-sided p-value read off a bootstrap distribution.
``holm(pvalues)``                           Holm step-down adjustment (family-wise error).
``benjamini_hochberg(pvalues)``             Benjamini-Hochberg step-up adjustment (FDR).
``Adjusted``                                Adjusted p-values and reject flags from the two above.
==========================================  ==================================================

>>> import numpy as np
>>> from harness import stats
>>> est = stats.bootstrap_mean(np.array([0.2, 0.5, 0.4, 0.7, 0.3, 0.6]), seed=0, n_resamples=999)
>>> est.value, round(est.ci_low, 2), round(est.ci_high, 2), est.n, est.method
(0.45, 0.33, 0.6, 6, 'bootstrap BCa')
>>> est = stats.proportion(45, 50)
>>> est.value, round(est.ci_low, 4), round(est.ci_high, 4), est.method
(0.9, 0.7864, 0.9565, 'wilson')

Every bootstrap goes through `scipy.stats.bootstrap` (vectorized, in batches that bound the
memory, with ``rng=np.random.default_rng(seed)``). Equal seeds over the same number of
examples draw the same resample indices, so two estimates built that way are paired resample
by resample; `ratio_of` relies on that. (`auroc` and `auroc_difference` resample positives and
negatives separately: they pair with each other over the same labels, not with the others.)

Degenerate input (fewer than 2 examples, constant data, NaN or inf, fewer than 2 distinct
alphas in range, fewer than 2 examples of a class for an AUROC, a denominator whose interval
includes 0) does not raise: it returns an `Estimate` with ``status="degenerate"``, a `reason` a
person can read, CI bounds equal to the value (NaN only where the value itself is undefined),
and a ``RuntimeWarning``. Bad arguments
(a level outside (0, 1), an unknown method, mismatched shapes) raise `StatsError`.

Calibration (tests/harness/stats/test_stats_calibration.py): the 95% BCa slope CI over 100 examples x 21
alphas covered the true slope in 94.7% of 2,000 simulated replications, and a "CI excludes
zero" verdict on null data came up in 5.5%. Like any bootstrap interval it runs narrow on few
examples (about 92.5% coverage at 40 examples), so read a CI from a few dozen examples as
optimistic.
"""

from __future__ import annotations

from harness.stats._auroc import auroc, auroc_difference
from harness.stats._derived import difference_of, ratio_of
from harness.stats._draws import strongest_of
from harness.stats._family import (
    Adjusted,
    benjamini_hochberg,
    bootstrap_pvalue,
    equivalent,
    holm,
)
from harness.stats._paired import paired_difference, paired_ratio
from harness.stats._proportions import proportion, proportion_of
from harness.stats._resampling import bootstrap_ci, bootstrap_mean
from harness.stats._slopes import slope_near_zero
from harness.stats._statistic import bootstrap_statistic

__all__ = [
    "Adjusted",
    "auroc",
    "auroc_difference",
    "benjamini_hochberg",
    "bootstrap_ci",
    "bootstrap_mean",
    "bootstrap_pvalue",
    "bootstrap_statistic",
    "difference_of",
    "equivalent",
    "holm",
    "paired_difference",
    "paired_ratio",
    "proportion",
    "proportion_of",
    "ratio_of",
    "slope_near_zero",
    "strongest_of",
]
