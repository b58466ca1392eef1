"""Verdicts: the expectation an estimate (`harness.stats.estimate.Estimate`) is judged against,
and the evidence recorded.

    expect        expect(estimate).ci_excludes(0) ... (judged at the family's level)
    exact         expect(values).equals(x, tol=...): findings computed exactly
    judging       how an estimate is judged: level, minimum n, degenerate and zero-width CIs, the message
    evidence      what a running claim records for the report
    families      families of claims and the multiple-comparison correction
    context       the seed and resamples in force inside a claim (run_context, default_seed)
"""
