"""Reports: what was measured, as JSON, in the terminal, as HTML with plots, against a baseline.

    report        the JSON report (schema, reading, writing, formatting)
    html          the self-contained HTML report
    plots         sweep curves, per-layer estimates, heatmaps (PNG)
    diff          a report against a baseline (``claims diff``, ``--claims-baseline``)
"""
