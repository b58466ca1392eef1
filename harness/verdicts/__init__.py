"""Verdicts: an estimate, the expectation it is judged against, and the evidence recorded.

    estimate      Estimate: a value, its CI and what it rests on
    expect        expect(estimate).ci_excludes(0) ... (judged at the family's level)
    evidence      what a running claim records for the report
    families      families of claims and the multiple-comparison correction
    context       the seed and resamples in force inside a claim (run_context, default_seed)
"""
