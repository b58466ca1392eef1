"""Reports: what was measured, as JSON, in the terminal, as HTML with plots, against a baseline.

    report        the JSON report (schema, reading, writing, formatting)
    html          the self-contained HTML report
    plots         sweep curves, per-layer estimates, heatmaps (PNG)
    diff          a report against a baseline (``claims diff``, ``--claims-baseline``)
"""

from __future__ import annotations

from harness.reports.report import (  # noqa: F401
    SCHEMA_VERSION, SUPPORTED_SCHEMA_VERSIONS, REPORT_FILENAME, OUTCOMES, ReportError, GitInfo,
    RunInfo, ClaimResult, Report, Row, build_report, report_to_json, write_report,
    report_directory, read_report, format_number, format_ci, claim_from_dict, table_rows,
    column_widths, header_lines, render_terminal, collect_versions, git_state
)
from harness.reports.diff import (  # noqa: F401
    DEFAULT_TOLERANCE, DiffError, EvidenceDiff, ClaimDiff, ProvenanceChange, ReportDiff,
    check_tolerance, diff_reports, diff_files, render_diff, write_baseline
)
from harness.reports.html import (  # noqa: F401
    HTML_FILENAME, PLOT_SUFFIXES, plots_in, render_html, study_of, write_html
)

__all__ = [
    'SCHEMA_VERSION', 'SUPPORTED_SCHEMA_VERSIONS', 'REPORT_FILENAME', 'OUTCOMES', 'ReportError',
    'GitInfo', 'RunInfo', 'ClaimResult', 'Report', 'Row', 'build_report', 'report_to_json',
    'write_report', 'report_directory', 'read_report', 'format_number', 'format_ci',
    'claim_from_dict', 'table_rows', 'column_widths', 'header_lines', 'render_terminal',
    'collect_versions', 'git_state', 'DEFAULT_TOLERANCE', 'DiffError', 'EvidenceDiff',
    'ClaimDiff', 'ProvenanceChange', 'ReportDiff', 'check_tolerance', 'diff_reports',
    'diff_files', 'render_diff', 'write_baseline', 'HTML_FILENAME', 'PLOT_SUFFIXES', 'plots_in',
    'render_html', 'study_of', 'write_html',
]
