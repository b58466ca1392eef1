"""Reports: what was measured, as JSON, in the terminal, as HTML with plots, against a baseline.

    schema         the report's dataclasses (Report, RunInfo, GitInfo, ClaimResult), schema version
    report         building, writing and reading report.json
    provenance     package versions and git state for RunInfo
    formatting     numbers, CIs, the terminal table's rows and column widths
    terminal       the report in the terminal (Rich)
    html           the self-contained HTML report: the page and writing it
    html_sections  the page's sections: provenance, summary, studies, claims
    html_plots     studies and their plots, inlined as data URIs
    plots          sweep curves, per-layer estimates, heatmaps (PNG)
    diff           a report against a baseline (``claims diff``, ``--claims-baseline``)
    diff_evidence  pairing a claim's evidence in two runs, how far an effect moved
    diff_text      a diff as plain text
"""

from __future__ import annotations

from harness.reports.schema import (  # noqa: F401
    SCHEMA_VERSION, SUPPORTED_SCHEMA_VERSIONS, REPORT_FILENAME, OUTCOMES, ReportError, GitInfo,
    RunInfo, ClaimResult, Report, StudyRow
)
from harness.reports.report import (  # noqa: F401
    build_report, report_to_json, write_report, report_directory, read_report, claim_from_dict
)
from harness.reports.formatting import (  # noqa: F401
    Row, format_number, format_ci, table_rows, column_widths
)
from harness.reports.terminal import header_lines, render_terminal  # noqa: F401
from harness.reports.provenance import collect_versions, git_state  # noqa: F401
from harness.reports.diff import (  # noqa: F401
    DEFAULT_TOLERANCE, DiffError, ClaimDiff, ProvenanceChange, ReportDiff, check_tolerance,
    diff_reports, diff_files, write_baseline
)
from harness.reports.diff_evidence import EvidenceDiff  # noqa: F401
from harness.reports.diff_text import render_diff  # noqa: F401
from harness.reports.html import HTML_FILENAME, render_html, write_html  # noqa: F401
from harness.reports.html_plots import PLOT_SUFFIXES, plots_in, study_of  # noqa: F401

__all__ = [
    'SCHEMA_VERSION', 'SUPPORTED_SCHEMA_VERSIONS', 'REPORT_FILENAME', 'OUTCOMES', 'ReportError',
    'GitInfo', 'RunInfo', 'ClaimResult', 'Report', 'StudyRow', 'Row', 'build_report', 'report_to_json',
    'write_report', 'report_directory', 'read_report', 'format_number', 'format_ci',
    'claim_from_dict', 'table_rows', 'column_widths', 'header_lines', 'render_terminal',
    'collect_versions', 'git_state', 'DEFAULT_TOLERANCE', 'DiffError', 'EvidenceDiff',
    'ClaimDiff', 'ProvenanceChange', 'ReportDiff', 'check_tolerance', 'diff_reports',
    'diff_files', 'render_diff', 'write_baseline', 'HTML_FILENAME', 'PLOT_SUFFIXES', 'plots_in',
    'render_html', 'study_of', 'write_html',
]
