"""The post-mortem as Markdown: the seeds' template, filled in from the log.

The sections follow the seeds' post-mortem templates (summary, timeline, root
cause, impact, resolution, lessons learned, action items). What the log can
prove is filled in, every timeline line citing its `seq`; what only people
know (root cause, impact, lessons) is left as a clearly marked placeholder,
never guessed. No "now" appears anywhere: the same log gives the same bytes.
"""

from __future__ import annotations

import re

from runbook.log.records import StepStatus
from runbook.report.incident import (
    SHOW_ALL,
    Incident,
    StepReport,
    TimelineEntry,
    TimelineGap,
    os_user,
)
from runbook.report.sla import format_duration

PLACEHOLDER = "> **TO BE WRITTEN BY THE RESPONDERS:**"
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _md(text: object) -> str:
    """One line of Markdown-safe text: no raw HTML, no table breaks, no control chars."""
    flat = " ".join(_UNSAFE.sub(" ", str(text)).split())
    return flat.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _code(text: object) -> str:
    flat = " ".join(_UNSAFE.sub(" ", str(text)).split())
    fence = "``" if "`" in flat else "`"
    return f"{fence} {flat} {fence}" if fence == "``" else f"`{flat}`"


def _when(ts: str) -> str:
    """`2026-11-25 12:20:51Z` out of the stored ISO timestamp (UTC)."""
    return f"{ts[:10]} {ts[11:19]}Z" if len(ts) >= 19 else ts or "—"


def _clock(ts: str, day: str) -> str:
    """HH:MM:SS.mmm, with the date when it is not the incident's first day."""
    time = ts[11:23] if len(ts) >= 23 else ts
    return time if ts[:10] == day else f"{ts[:10]} {time}"


def _banner(incident: Incident) -> list[str]:
    check = incident.verification
    if check.ok:
        return []
    kind = "TAMPERED" if check.tampered else "TRUNCATED"
    return [
        f"> **WARNING — UNVERIFIED LOG ({kind}):** {_md(check.reason)}. "
        "Facts below come from a log that failed `runbook log verify`; "
        "do not rely on them without checking the original.",
        "",
    ]


def _abridged(incident: Incident) -> list[str]:
    summary = incident.omitted.summary()
    return [f"> **Abridged:** {_md(summary)}", ""] if summary else []


def _params(incident: Incident) -> str:
    """As logged (secrets already `***`); JSON values so types stay visible."""
    if not incident.params:
        return "none"
    import json

    shown = (f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in incident.params.items())
    return _md(", ".join(shown))


def _header(incident: Incident) -> list[str]:
    duration = incident.duration
    took = f" ({format_duration(duration)})" if duration is not None else " (not finished)"
    exit_note = f", exit {incident.exit_code}" if incident.exit_code is not None else ""
    dry = " — **dry-run: nothing was changed**" if incident.dry_run else ""
    return [
        f"# Incident Post-Mortem: {_md(incident.title)}",
        "",
        *_banner(incident),
        *_abridged(incident),
        f"- **Severity**: {_md(incident.severity or 'unknown')}",
        f"- **Date**: {incident.started[:10]} (all times UTC)",
        f"- **Duration**: {_when(incident.started)} – {_when(incident.ended)}{took}",
        f"- **Outcome**: {_md(incident.status)}{exit_note}{dry}",
        f"- **Runbook**: {_md(incident.runbook)} (sha256 `{incident.runbook_sha256[:16]}`)",
        f"- **Run**: `{_md(incident.run_id)}` by {_md(incident.operator)} on {_md(incident.host)}",
        *_who(incident),
        f"- **Params**: {_params(incident)}",
        "- **Impact**: _to be written: users and services affected_",
        "",
    ]


def _who(incident: Incident) -> list[str]:
    """The operator name as claimed, and the OS user the kernel reported beside it."""
    source = incident.identity.get("claimed_from")
    how = f"from {_md(source)}, " if source else ""
    return [
        f"- **Operator (claimed)**: {_md(incident.operator)} ({how}not authenticated)",
        f"- **OS user**: {_md(os_user(incident.identity))}",
    ]


def _summary(incident: Incident) -> list[str]:
    lines = [
        "## Summary",
        "",
        "| Milestone | Time (UTC) | Since start | Log |",
        "|---|---|---|---|",
    ]
    for name in ("started", "detected", "acknowledged", "mitigated", "resolved"):
        mark = incident.clocks.get(name)
        if mark is None:
            lines.append(f"| {name} | — | — | not in the log |")
        else:
            since = "time unreadable" if mark.elapsed is None else format_duration(mark.elapsed)
            lines.append(f"| {name} | {_when(mark.ts)} | {since} | seq {mark.seq} |")
    if incident.reason:
        lines += ["", f"Run outcome: {_md(incident.status)} — {_md(incident.reason)}"]
    return [*lines, ""]


def _sla(incident: Incident) -> list[str]:
    lines = ["## SLA", ""]
    target = incident.target
    if target is None:
        lines.append(f"No SLA target is configured for severity {_md(incident.severity or '?')}.")
    else:
        lines.append(
            f"Targets for {target.severity}: respond within {format_duration(target.respond)}, "
            f"resolve within {format_duration(target.resolve)}, status updates every "
            f"{format_duration(target.update_every)}."
        )
    lines.append("")
    for line in incident.sla:
        where = f" (seq {line.seq})" if line.seq is not None else ""
        lines.append(f"- {line.text(incident.severity)}{where}")
    return [*lines, ""]


def _timeline_line(entry: TimelineEntry, day: str) -> str:
    if isinstance(entry, TimelineGap):
        return f"- `{_clock(entry.ts, day)}` … {_md(entry.text)}"
    step = f"**{_md(entry.step)}** " if entry.step else ""
    marks = f" ← _{', '.join(entry.milestones)}_" if entry.milestones else ""
    return f"- `{_clock(entry.ts, day)}` seq {entry.seq} — {step}{_md(entry.text)}{marks}"


def _timeline(incident: Incident) -> list[str]:
    lines = ["## Timeline", "", "Every line cites the incident-log record (`seq`) it comes from."]
    day, phase = incident.started[:10], None
    for entry in incident.timeline:
        if entry.phase and entry.phase != phase:
            phase = entry.phase
            lines += ["", f"### {_md(phase)}", ""]
        elif phase is None and entry is incident.timeline[0]:
            lines.append("")
        lines.append(_timeline_line(entry, day))
    return [*lines, ""]


def _confirmed(step: StepReport) -> str:
    if not step.confirmations:
        return "no confirmation needed" if step.status != StepStatus.INCOMPLETE else "—"
    c = step.confirmations[-1]
    verdict = "confirmed" if c.accepted else "declined"
    via = f" via {c.method}" if c.method else ""
    os = f"claimed name; OS user {_md(c.os_user)}, uid {c.os_uid}; " if c.os_user else ""
    return f"{verdict} by {_md(c.operator)}{via} ({os}seq {c.seq})"


def _not_listed(incident: Incident, kind: str, statuses: frozenset[str], what: str) -> list[str]:
    """The note under a list that `Limits.steps` cut: how many more, and their outcomes."""
    omitted = incident.omitted
    count = omitted.counted(kind, statuses)
    if not count:
        return []
    counts = omitted.step_counts.get(kind, {})
    outcomes = ", ".join(f"{counts[s]:,} {s}" for s in sorted(statuses) if counts.get(s))
    return [
        "",
        f"… and {count:,} more {what} from seq {omitted.steps_first_seq} on ({_md(outcomes)}), "
        f"not listed: the report keeps the first {omitted.limits.steps:,} step executions; "
        f"{SHOW_ALL}.",
    ]


_ACTION_STATUSES = frozenset({*StepStatus, "other"} - {StepStatus.SKIPPED})


def _actions(incident: Incident) -> list[str]:
    lines = ["## Actions taken", ""]
    more = _not_listed(incident, "action", _ACTION_STATUSES, "actions")
    if not incident.actions:
        return [*lines, "No action listed." if more else "No action ran.", *more, ""]
    lines += [
        "| Action | Phase | Status | Took | Confirmation | Log |",
        "|---|---|---|---|---|---|",
    ]
    for step in incident.actions:
        took = format_duration(step.elapsed) if step.elapsed is not None else "—"
        name = f"{_md(step.id)}: {_md(step.title)}" if step.title else _md(step.id)
        lines.append(
            f"| {name} | {_md(step.phase)} | {_md(step.status)} | {took} "
            f"| {_confirmed(step)} | seq {step.seq} |"
        )
    return [*lines, *more, ""]


def _failed_checks(incident: Incident) -> list[str]:
    """Checks that failed, and apart from them the ones that could not check (`error`):
    "the API was unreachable" is not "the API is broken"."""
    errored = [s for s in incident.failed_checks if s.status == StepStatus.ERROR]
    failed = [s for s in incident.failed_checks if s.status != StepStatus.ERROR]
    more_failed = _not_listed(incident, "check", _FAILED, "failed checks")
    more_errored = _not_listed(incident, "check", _ERRORED, "checks that could not check")
    lines = ["## Checks that failed", ""]
    if not failed:
        none = "None failed; some could not check (below)." if errored or more_errored else ""
        lines.append("None listed." if more_failed else none or "Every check that ran passed.")
    lines += [line for step in failed for line in _check_lines(step)]
    lines += [*more_failed, ""]
    if errored or more_errored:
        lines += [
            "## Checks that could not check (error)",
            "",
            "These could not tell either way (connection refused, API unreachable, command "
            "not found): neither a pass nor a failure.",
            "",
            *[line for step in errored for line in _check_lines(step)],
            *more_errored,
            "",
        ]
    return lines


_FAILED = frozenset({StepStatus.FAILED, StepStatus.TIMEOUT, StepStatus.INCOMPLETE})
_ERRORED = frozenset({StepStatus.ERROR})


def _check_lines(step: StepReport) -> list[str]:
    tries = f" after {step.attempts} attempts" if step.attempts > 1 else ""
    lines = [f"- **{_md(step.id)}** ({_md(step.phase)}): {step.status}{tries} (seq {step.seq})"]
    for failure in step.failures:
        expr = f"{_code(failure.expr)}: " if failure.expr else ""
        host = f"[{_md(failure.host)}] " if failure.host else ""
        lines.append(f"  - {host}{expr}{_md(failure.message)} (seq {failure.seq})")
    if step.failures_omitted:
        lines.append(f"  - … {step.failures_omitted:,} more failures not listed (report limit)")
    return lines


def _hosts(incident: Incident) -> list[str]:
    fanned = [s for s in incident.steps if s.hosts or s.hosts_omitted]
    if not fanned:
        return []
    lines = [
        "## Per-host results",
        "",
        "| Step | Host | Status | Detail | Log |",
        "|---|---|---|---|---|",
    ]
    for step in fanned:
        for host in step.hosts.values():
            lines.append(
                f"| {_md(step.id)} | {_md(host.host)} | {host.status} "
                f"| {_md(host.message) or '—'} | seq {host.seq} |"
            )
        if step.hosts_omitted:
            lines.append(
                f"| {_md(step.id)} | … {step.hosts_omitted:,} more hosts | — "
                f"| not listed (report limit); the step {_md(step.status)} | — |"
            )
    return [*lines, ""]


def _not_listed_steps(incident: Incident) -> list[str]:
    """The step executions past the report's limit, by step: a loop shows how often it ran."""
    omitted = incident.omitted
    if not omitted.steps:
        return []
    return [
        "## Step executions not listed",
        "",
        f"The report lists the first {omitted.limits.steps:,} step executions; the other "
        f"{omitted.steps:,} (seq {omitted.steps_first_seq}–{omitted.steps_last_seq}), by step:",
        "",
        *(f"- {_md(line)}" for line in omitted.per_step()),
        "",
    ]


def _human_sections() -> list[str]:
    return [
        "## Root Cause",
        "",
        f"{PLACEHOLDER} what happened, why it happened, contributing factors.",
        "",
        "## Impact",
        "",
        f"{PLACEHOLDER} users affected (number, percentage), downtime, data loss, "
        "revenue or reputation impact.",
        "",
        "## Resolution",
        "",
        "What the log shows was done is under *Actions taken*.",
        "",
        f"{PLACEHOLDER} what fixed it, and whether the fix is permanent.",
        "",
        "## Lessons Learned",
        "",
        f"{PLACEHOLDER} what went well, what did not, where we were lucky.",
        "",
        "## Action Items",
        "",
        f"{PLACEHOLDER} one line per item:",
        "",
        "- [ ] [Action item] - Owner: [Name] - Due: [Date]",
        "",
    ]


def _integrity(incident: Incident) -> list[str]:
    check = incident.verification
    verdict = "ok — chain intact" if check.ok else f"FAILED — {_md(check.reason)}"
    errors = [f"- Observer error at seq {e.seq}: {_md(e.text)}" for e in incident.observer_errors]
    if incident.omitted.observer_errors:
        errors.append(f"- … {incident.omitted.observer_errors:,} more observer errors not listed")
    return [
        "## Log integrity",
        "",
        f"- `runbook log verify`: {verdict} ({check.records} records verified)",
        f"- Final chain hash: `{check.final_hash or 'none'}`",
        f"- Signed: {_signed(incident)}",
        f"- Check it against the hash the run printed: `{_verify_command(incident)}`",
        *errors,
        "",
    ]


def _signed(incident: Incident) -> str:
    if not incident.signing_key:
        return "no — integrity only, not authenticity (unsigned log)"
    return f"ed25519 key `{incident.signing_key}` (check it is yours with `--key`)"


def _verify_command(incident: Incident) -> str:
    key = " --key PUB" if incident.signing_key else ""
    return f"runbook log verify LOG{key} --expect {incident.verification.final_hash or 'HASH'}"


def render(incident: Incident) -> str:
    """The whole post-mortem; byte-identical for the same Incident."""
    parts = [
        _header(incident),
        _summary(incident),
        _sla(incident),
        _timeline(incident),
        _actions(incident),
        _failed_checks(incident),
        _hosts(incident),
        _not_listed_steps(incident),
        _human_sections(),
        _integrity(incident),
    ]
    return "\n".join(line for part in parts for line in part).rstrip("\n") + "\n"
