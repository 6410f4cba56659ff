"""Reports built from an incident log alone: post-mortem Markdown, JSON, JUnit XML, HTML.

Every format is a view of one `Incident` (see `incident.py`), built from the
records and nothing else, so the same log always gives the same bytes. The
built-in formats reach the CLI through the `runbook_report_formats` hook, via
the `runbook_plugins.reports` plugin, exactly as a third-party format would;
each renders the Incident (`ReportFormat.render_incident`), which `runbook
report` builds while it reads the log once, in bounded memory, and each also
takes a list of records (`render`). The SLA targets come from
`runbook.report.sla.load_targets()` (defaults, or the operator's config file),
and each report states the targets it used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from runbook.contract import ReportFormat

if TYPE_CHECKING:
    from runbook.report.incident import Incident, build_incident

__all__ = ["Incident", "build_incident", "builtin_formats", "incident_from"]


def __getattr__(name: str) -> Any:
    # `runbook run` reads `runbook.report.sla` for its last console line: the incident
    # model is imported only by what builds one.
    if name in ("Incident", "build_incident"):
        from runbook.report import incident

        return getattr(incident, name)
    raise AttributeError(f"module 'runbook.report' has no attribute {name!r}")


def incident_from(records: Sequence[Mapping[str, Any]]) -> Incident:
    """The Incident for `records` with the operator's SLA targets (config file or defaults)."""
    from runbook.report import sla
    from runbook.report.incident import build_incident

    return build_incident(records, sla.load_targets())


def _postmortem(incident: Incident) -> str:
    from runbook.report import postmortem

    return postmortem.render(incident)


def _json(incident: Incident) -> str:
    from runbook.report import json_report

    return json_report.render(incident)


def _junit(incident: Incident) -> str:
    from runbook.report import junit

    return junit.render(incident)


def _html(incident: Incident) -> str:
    from runbook.report import html

    return html.render(incident)


def _format(
    name: str, extension: str, description: str, render: Callable[[Incident], str]
) -> ReportFormat:
    def from_records(records: list[dict[str, Any]]) -> str:
        return render(incident_from(records))

    return ReportFormat(name, extension, description, from_records, render_incident=render)


def builtin_formats() -> list[ReportFormat]:
    """The four formats this package ships; renderers are imported only when used."""
    return [
        _format(
            "postmortem",
            "md",
            "post-mortem Markdown: the seeds' template filled from the log",
            _postmortem,
        ),
        _format("json", "json", "JSON following schemas/report.schema.json", _json),
        _format("junit", "xml", "JUnit XML: one testcase per check/action per host", _junit),
        _format("html", "html", "one self-contained HTML page with an SLA bar", _html),
    ]
