"""The outcome of one test, from what the plugin saw of its phases (pure functions).

`PhaseResult` is one phase (setup, call, teardown); `claim_outcome` turns the phases (and the
evidence the call recorded) into the claim's outcome and message, and a claim that passed
without recording evidence into an error (`NO_EVIDENCE`) unless it is a plain check;
`json_safe_params` makes parametrize values fit for report.json.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

NO_EVIDENCE = (
    "claim recorded no evidence: state the finding with expect(...), or mark it check=True if it is "
    "a plain check (@pytest.mark.claim(\"...\", check=True))"
)


@dataclass(frozen=True)
class PhaseResult:
    """One phase (setup, call, teardown) of one test, as the plugin saw it."""

    when: str
    outcome: str  # "passed" | "failed" | "skipped"
    duration_s: float
    message: str = ""
    xfail: bool = False


def claim_outcome(
    phases: Iterable[PhaseResult], *, evidence: Sequence[Any] | None = None, check: bool = False
) -> tuple[str, str]:
    """(outcome, message) of a test from its phases.

    "error" is a failure in setup or teardown, or (given the call's `evidence`) a claim that
    passed without recording any, unless `check` (a plain check): message `NO_EVIDENCE`.
    "failed" is a failure in the call; "xfailed" and "xpassed" are the xfail marker's
    outcomes. `evidence` None: not known, not checked.
    """
    by = {p.when: p for p in phases}
    setup, call, teardown = by.get("setup"), by.get("call"), by.get("teardown")
    outcome, message = "passed", ""
    if setup is not None and setup.outcome == "failed":
        outcome, message = "error", f"error in setup: {setup.message}"
    elif setup is not None and setup.outcome == "skipped":
        outcome, message = ("xfailed" if setup.xfail else "skipped"), setup.message
    elif call is not None:
        if call.outcome == "failed":
            outcome, message = "failed", call.message
        elif call.outcome == "skipped":
            outcome, message = ("xfailed" if call.xfail else "skipped"), call.message
        elif call.xfail:
            outcome, message = "xpassed", call.message
    if teardown is not None and teardown.outcome == "failed" and outcome in ("passed", "xpassed"):
        outcome, message = "error", f"error in teardown: {teardown.message}"
    if outcome == "passed" and evidence is not None and not evidence and not check:
        outcome, message = "error", NO_EVIDENCE
    return outcome, message


def json_safe_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parametrize values for JSON: str, int, finite float, bool and None as they are;
    anything else as its repr()."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None or isinstance(value, (str, bool, int)):
            out[str(key)] = value
        elif isinstance(value, float) and value == value and value not in (float("inf"), float("-inf")):
            out[str(key)] = value
        else:
            out[str(key)] = repr(value)
    return out


def _short_message(text: str, limit: int = 1000) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."
