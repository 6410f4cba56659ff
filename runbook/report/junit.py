"""JUnit XML: one testcase per check/action (per host when fanned out), for CI dashboards.

CI systems already know how to show JUnit: a red test with its message. So a
run becomes one `<testsuite>` named after the runbook, each step execution a
`<testcase>` (classname `runbook.phase`), and a step that did not pass a
`<failure>` (its expectation messages, operands included) or `<error>` (it
could not run, timed out, or never finished). Skipped and dry-run steps are
`<skipped>`. Text is stripped of characters XML 1.0 cannot hold, so command
output with escape codes cannot make the file unparsable.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from runbook.log.records import StepStatus
from runbook.report.incident import Incident, StepReport, os_user

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ERRORS = frozenset(
    {StepStatus.ERROR, StepStatus.TIMEOUT, StepStatus.INCOMPLETE, StepStatus.DECLINED}
)
_SKIPS = frozenset({StepStatus.SKIPPED, StepStatus.PLANNED, StepStatus.UNKNOWN})


def _x(text: object) -> str:
    return _NOT_XML.sub("\ufffd", str(text))


def _outcome(case: ET.Element, status: str, message: str, detail: str) -> str:
    """Add failure/error/skipped to `case`; return which counter it bumps ('' if passed)."""
    if status == StepStatus.PASSED:
        return ""
    if status in _SKIPS:
        ET.SubElement(case, "skipped", message=_x(message or status))
        return "skipped"
    tag = "error" if status in _ERRORS else "failure"
    element = ET.SubElement(case, tag, message=_x(message or status), type=_x(status))
    element.text = _x(detail or message or status)
    return "errors" if tag == "error" else "failures"


def _detail(step: StepReport, host: str = "") -> str:
    lines = [
        f"seq {f.seq}: " + (f"{f.expr}: " if f.expr else "") + f.message
        for f in step.failures
        if not host or f.host in ("", host)
    ]
    if step.message:
        lines.append(f"step {step.status} (seq {step.seq}): {step.message}")
    return "\n".join(lines)


def _cases(suite: ET.Element, incident: Incident, step: StepReport, counts: dict[str, int]) -> None:
    classname = f"{incident.runbook}.{step.phase or 'run'}"
    runs = (
        [(f"{step.id} [{h.host}]", h.status, h.message, h.host) for h in step.hosts.values()]
        if step.hosts
        else [(step.id, step.status, step.message, "")]
    )
    for name, outcome, message, host in runs:
        case = ET.SubElement(suite, "testcase", classname=_x(classname), name=_x(name))
        case.set("time", f"{step.elapsed or 0.0:.3f}")
        bump = _outcome(case, outcome, message, _detail(step, host))
        counts["tests"] += 1
        if bump:
            counts[bump] += 1


def render(incident: Incident) -> str:
    """The JUnit XML document (UTF-8 declaration), deterministic for the same log."""
    root = ET.Element("testsuites", name=_x(f"runbook {incident.runbook}"))
    suite = ET.SubElement(
        root,
        "testsuite",
        name=_x(incident.title),
        timestamp=_x(incident.started.rstrip("Z")[:19]),
        hostname=_x(incident.host),
        id=_x(incident.run_id),
    )
    props = ET.SubElement(suite, "properties")
    for name, value in (
        ("severity", incident.severity),
        ("run_id", incident.run_id),
        ("status", incident.status),
        ("log_verified", "true" if incident.verification.ok else "false"),
        ("final_hash", incident.verification.final_hash),
        ("signing_key", incident.signing_key or "none (unsigned log)"),
        ("operator_claimed", incident.operator),
        ("os_user", os_user(incident.identity)),
    ):
        ET.SubElement(props, "property", name=name, value=_x(value))
    for key, param in incident.params.items():  # secrets are already *** in the log
        ET.SubElement(props, "property", name=_x(f"param.{key}"), value=_x(param))
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for step in incident.steps:
        _cases(suite, incident, step, counts)
    for key, count in counts.items():
        suite.set(key, str(count))
        root.set(key, str(count))
    suite.set("time", f"{incident.duration or 0.0:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"
