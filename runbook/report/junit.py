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

import heapq
import itertools
import re
import xml.etree.ElementTree as ET

from runbook.log.records import StepStatus
from runbook.report.incident import SHOW_ALL, Incident, StepReport, os_user

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


_MAX_DETAIL = 100


class _Details:
    """A step's failure lines, for a test case of the whole step or of one host.

    Worked out once per step: a fanned-out step has a test case per host, each
    showing the failures of its host and those of no host in particular, in log order.
    """

    def __init__(self, step: StepReport) -> None:
        self.step = step
        self.shared: list[tuple[int, str]] = []
        self.by_host: dict[str, list[tuple[int, str]]] = {}
        for index, f in enumerate(step.failures):
            line = f"seq {f.seq}: " + (f"{f.expr}: " if f.expr else "") + f.message
            found = self.by_host.setdefault(f.host, []) if f.host else self.shared
            found.append((index, line))

    def text(self, host: str = "") -> str:
        step = self.step
        if host:
            mine = self.by_host.get(host, [])
            picked = heapq.merge(self.shared, mine)
            total = len(self.shared) + len(mine)
        else:
            picked = heapq.merge(self.shared, *self.by_host.values())
            total = len(step.failures)
        lines = [line for _, line in itertools.islice(picked, _MAX_DETAIL)]
        if total > _MAX_DETAIL:
            lines.append(f"… {total - _MAX_DETAIL:,} more failures of this test case not listed")
        if step.failures_omitted:
            lines.append(f"… {step.failures_omitted:,} more failures not listed (report limit)")
        if step.message:
            lines.append(f"step {step.status} (seq {step.seq}): {step.message}")
        return "\n".join(lines)


def _cases(suite: ET.Element, incident: Incident, step: StepReport, counts: dict[str, int]) -> None:
    classname = f"{incident.runbook}.{step.phase or 'run'}"
    runs = (
        [(f"{step.id} [{h.host}]", h.status, h.message, h.host) for h in step.hosts.values()]
        if step.hosts or step.hosts_omitted
        else [(step.id, step.status, step.message, "")]
    )
    if step.hosts_omitted:
        more = f"{step.hosts_omitted:,} more hosts"
        note = f"{more} not listed (report limit); the step {step.status}"
        runs.append((f"{step.id} [{more}]", step.status, note, ""))
    details = _Details(step)
    for name, outcome, message, host in runs:
        case = ET.SubElement(suite, "testcase", classname=_x(classname), name=_x(name))
        case.set("time", f"{step.elapsed or 0.0:.3f}")
        detail = details.text(host) if outcome != StepStatus.PASSED else ""
        bump = _outcome(case, outcome, message, detail)
        counts["tests"] += 1
        if bump:
            counts[bump] += 1


def _omitted_case(suite: ET.Element, incident: Incident, counts: dict[str, int]) -> None:
    """One testcase for the step executions past the report's limit, failing if any failed."""
    omitted = incident.omitted
    totals: dict[str, int] = {}
    for by_status in omitted.step_counts.values():
        for status, n in by_status.items():
            totals[status] = totals.get(status, 0) + n
    tally = ", ".join(f"{n:,} {status}" for status, n in sorted(totals.items()))
    failing = sorted(s for s in totals if s != StepStatus.PASSED and s not in _ERRORS | _SKIPS)
    errors = sorted(s for s in totals if s in _ERRORS)
    passed = StepStatus.PASSED if totals.get(StepStatus.PASSED) else StepStatus.SKIPPED
    worst = (failing or errors or [passed])[0]
    message = (
        f"{omitted.steps:,} more step executions from seq {omitted.steps_first_seq} on, not "
        f"listed: the report keeps the first {omitted.limits.steps:,} ({tally}); {SHOW_ALL}"
    )
    name = f"{omitted.steps:,} more step executions"
    case = ET.SubElement(suite, "testcase", classname=_x(f"{incident.runbook}.omitted"), name=name)
    case.set("time", "0.000")
    bump = _outcome(case, worst, message, "\n".join([message, *omitted.per_step()]))
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
        *([("abridged", incident.omitted.summary())] if incident.omitted else []),
    ):
        ET.SubElement(props, "property", name=name, value=_x(value))
    for key, param in incident.params.items():  # secrets are already *** in the log
        ET.SubElement(props, "property", name=_x(f"param.{key}"), value=_x(param))
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for step in incident.steps:
        _cases(suite, incident, step, counts)
    if incident.omitted.steps:
        _omitted_case(suite, incident, counts)
    for key, count in counts.items():
        suite.set(key, str(count))
        root.set(key, str(count))
    suite.set("time", f"{incident.duration or 0.0:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"
