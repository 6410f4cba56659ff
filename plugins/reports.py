"""The built-in report formats, contributed through the same hook a plugin would use.

`runbook report --format NAME` finds formats only through
`runbook_report_formats`; registering ours here (entry point `reports`) keeps
them on an equal footing with third-party formats and lets a name clash be
reported like any other.
"""

from __future__ import annotations

from runbook.contract import ReportFormat, builtin_report_formats, hookimpl


@hookimpl
def runbook_report_formats() -> list[ReportFormat]:
    """postmortem, json, junit and html (see `runbook.report`)."""
    return builtin_report_formats()
