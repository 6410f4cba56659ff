"""The HTML report: one self-contained page to attach to a ticket or open offline.

Incident reports get mailed, archived and opened years later, often where the
network is locked down, so the page carries its own CSS, loads nothing (no
scripts, fonts or images) and states everything in text as well as colour.
Every value from the log goes through `html.escape`: command output and
runbook titles are data, never markup.
"""

from __future__ import annotations

from html import escape

from runbook.log.records import StepStatus
from runbook.report.incident import SHOW_ALL, Incident, StepReport, TimelineEntry, os_user
from runbook.report.sla import format_duration

_CSS = """
:root{--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--dim:#57606a;--line:#d0d7de}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;
max-width:72rem;padding:0 1rem;color:#1f2328}
h1{margin:0 0 .3rem}h2{border-bottom:1px solid var(--line);padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.25rem .5rem;
border-bottom:1px solid var(--line);vertical-align:top}th{background:#f6f8fa}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.9em}
.badge{display:inline-block;border-radius:1rem;padding:0 .6rem;font-weight:600;color:#fff;
background:var(--dim)}.sev-P0,.sev-P1{background:var(--bad)}.sev-P2{background:var(--warn)}
.status-passed,.status-accepted{color:var(--ok)}.status-failed,.status-error,.status-timeout,
.status-declined,.status-missed{color:var(--bad);font-weight:600}.status-skipped,
.status-planned,.status-unknown,.status-started{color:var(--dim)}.status-incomplete,
.status-interrupted,.status-retry{color:var(--warn)}
.phase-row td{background:#f6f8fa;font-weight:600;text-transform:uppercase;letter-spacing:.05em}
.banner{border:2px solid var(--bad);background:#ffebe9;padding:.75rem 1rem;margin:1rem 0}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:.1rem 1rem}.facts dt{color:var(--dim)}
.bar{position:relative;height:1.6rem;background:#eaeef2;border-radius:.3rem;margin:1.5rem 0 2.2rem}
.fill{position:absolute;left:0;top:0;bottom:0;border-radius:.3rem;background:var(--ok)}
.fill.over{background:var(--bad)}.tick{position:absolute;top:-.4rem;bottom:-.4rem;width:2px;
background:#1f2328}.tick span{position:absolute;top:1.9rem;left:-1rem;font-size:.75rem;
white-space:nowrap}.target{background:var(--bad)}.dur{height:.5rem;background:#8c959f;
border-radius:.2rem;min-width:1px}.mark{color:var(--dim);font-style:italic}
"""

# Every outcome, and the words the timeline uses for confirmations, retries and starts.
_STYLED = frozenset({*StepStatus, "accepted", "retry", "started"})


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _status(status: str) -> str:
    css = status if status in _STYLED else ""
    return f'<span class="status-{css}">{_e(status)}</span>' if css else _e(status)


def _took(seconds: float | None) -> str:
    return format_duration(seconds) if seconds is not None else "—"


def _facts(incident: Incident) -> str:
    rows = [
        (
            "Severity",
            f'<span class="badge sev-{_e(incident.severity)}">'
            f"{_e(incident.severity or '?')}</span>",
        ),
        (
            "Outcome",
            _status(incident.status)
            + (f" (exit {incident.exit_code})" if incident.exit_code is not None else ""),
        ),
        ("Started", f"{_e(incident.started)} (UTC)"),
        ("Ended", f"{_e(incident.ended or 'not finished')}"),
        ("Duration", _took(incident.duration)),
        ("Runbook", f"{_e(incident.runbook)} <code>{_e(incident.runbook_sha256[:16])}</code>"),
        (
            "Run",
            f"<code>{_e(incident.run_id)}</code> by {_e(incident.operator)} "
            f"on {_e(incident.host)}" + (" — dry-run" if incident.dry_run else ""),
        ),
        ("Operator", f"{_e(incident.operator)} (claimed, not authenticated)"),
        ("OS user", _e(os_user(incident.identity))),
    ]
    params = ", ".join(f"{k}={v}" for k, v in incident.params.items()) or "none"
    rows.append(("Params", _e(params)))
    cells = "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in rows)
    return f'<dl class="facts">{cells}</dl>'


def _banner(incident: Incident) -> str:
    check = incident.verification
    if check.ok:
        return ""
    kind = "TAMPERED" if check.tampered else "TRUNCATED"
    return (
        f'<div class="banner" role="alert"><strong>Unverified log ({kind}):</strong> '
        f"{_e(check.reason)}. This report was produced with --allow-unverified; do not "
        "rely on it without checking the original log.</div>"
    )


def _sla_bar(incident: Incident) -> str:
    """A bar spanning the resolve target (or the incident, if longer), clocks as ticks."""
    target = incident.target
    end = incident.clocks.resolved or incident.clocks.mitigated
    spent = end.elapsed if end and end.elapsed is not None else (incident.duration or 0.0)
    scale = max(target.resolve if target else 0.0, spent, 1e-9)
    over = bool(target and spent > target.resolve)
    width = min(spent / scale * 100, 100)
    parts = [f'<div class="fill{" over" if over else ""}" style="width:{width:.2f}%"></div>']
    if target:
        left = target.respond / scale * 100
        parts.append(
            f'<div class="tick target" style="left:{left:.2f}%" title="respond target">'
            f"<span>respond {format_duration(target.respond)}</span></div>"
        )
    for line in incident.sla:
        if line.elapsed is not None and line.clock != "detected":
            left = min(line.elapsed / scale * 100, 100)
            parts.append(
                f'<div class="tick" style="left:{left:.2f}%" title="{_e(line.clock)}"></div>'
            )
    label = f"0 — {format_duration(scale)}" + (
        f" ({_e(target.severity)} resolve target)" if target else ""
    )
    return f'<div class="bar" role="img" aria-label="SLA bar {label}">{"".join(parts)}</div>'


def _sla(incident: Incident) -> str:
    items = []
    for line in incident.sla:
        css = "status-missed" if line.met is False else "status-passed" if line.met else ""
        seq = f" <span class=mark>(seq {line.seq})</span>" if line.seq is not None else ""
        items.append(f'<li class="{css}">{_e(line.text(incident.severity))}{seq}</li>')
    target = incident.target
    note = (
        f"<p>Targets for {_e(target.severity)}: respond within {format_duration(target.respond)}"
        f", resolve within {format_duration(target.resolve)}, updates every "
        f"{format_duration(target.update_every)}.</p>"
        if target
        else f"<p>No SLA target configured for {_e(incident.severity or '?')}.</p>"
    )
    bar = _sla_bar(incident)
    return f'<section id="sla"><h2>SLA</h2>{note}{bar}<ul>{"".join(items)}</ul></section>'


def _timeline_row(entry: TimelineEntry) -> str:
    marks = (
        f' <span class="mark">← {_e(", ".join(entry.milestones))}</span>'
        if entry.milestones
        else ""
    )
    return (
        f'<tr><td class="mono">{_e(entry.ts[11:23])}</td><td class="mono">{entry.seq}</td>'
        f"<td>{_e(entry.step)}</td><td>{_status(entry.status)}</td>"
        f"<td>{_e(entry.text)}{marks}</td></tr>"
    )


def _timeline(incident: Incident) -> str:
    rows, phase = [], None
    for entry in incident.timeline:
        if entry.phase and entry.phase != phase:
            phase = entry.phase
            rows.append(f'<tr class="phase-row"><td colspan="5">{_e(phase)}</td></tr>')
        rows.append(_timeline_row(entry))
    head = "<tr><th>UTC</th><th>seq</th><th>step</th><th>status</th><th>event</th></tr>"
    return f'<section id="timeline"><h2>Timeline</h2><table>{head}{"".join(rows)}</table></section>'


def _confirmation(step: StepReport) -> str:
    if not step.confirmations:
        return ""
    c = step.confirmations[-1]
    verdict = "accepted" if c.accepted else "declined"
    os = f"claimed name; OS user {_e(c.os_user)}, uid {c.os_uid}; " if c.os_user else ""
    return f"{_status(verdict)} by {_e(c.operator)} via {_e(c.method)} ({os}seq {c.seq})"


def _steps(incident: Incident) -> str:
    longest = max((s.elapsed or 0.0 for s in incident.steps), default=0.0) or 1.0
    rows = []
    for s in incident.steps:
        bar = f'<div class="dur" style="width:{(s.elapsed or 0.0) / longest * 100:.1f}%"></div>'
        hosts = "".join(
            f"<br>{_e(h.host)}: {_status(h.status)} {_e(h.message)}" for h in s.hosts.values()
        )
        fails = "".join(
            f"<br><code>{_e(f.expr)}</code> {_e(f.message)} (seq {f.seq})" for f in s.failures
        )
        fails += _more(s.failures_omitted, "failures")
        hosts += _more(s.hosts_omitted, "hosts")
        rows.append(
            f"<tr><td>{_e(s.id)}</td><td>{_e(s.phase)}</td><td>{_e(s.kind)}</td>"
            f"<td>{_status(s.status)}{fails}{hosts}</td><td>{_took(s.elapsed)}{bar}</td>"
            f"<td>{_confirmation(s)}</td><td class=mono>{s.seq}</td></tr>"
        )
    omitted = incident.omitted
    if omitted.steps:
        tally = "; ".join(f"{kind}: {omitted.tally(kind)}" for kind in omitted.step_counts)
        rows.append(
            f'<tr><td colspan="7">… {omitted.steps:,} more step executions from seq '
            f"{omitted.steps_first_seq} on, not listed: the report keeps the first "
            f"{omitted.limits.steps:,} ({_e(tally)}); {_e(SHOW_ALL)}<br>"
            f"{'<br>'.join(_e(line) for line in omitted.per_step())}</td></tr>"
        )
    head = (
        "<tr><th>step</th><th>phase</th><th>kind</th><th>status</th><th>took</th>"
        "<th>confirmation</th><th>seq</th></tr>"
    )
    return f'<section id="steps"><h2>Steps</h2><table>{head}{"".join(rows)}</table></section>'


def _more(count: int, what: str) -> str:
    return f"<br>… {count:,} more {what} not listed (report limit)" if count else ""


def _abridged(incident: Incident) -> str:
    summary = incident.omitted.summary()
    return f'<p role="note"><strong>Abridged:</strong> {_e(summary)}</p>' if summary else ""


def _footer(incident: Incident) -> str:
    check = incident.verification
    signed = (
        f"ed25519 key <code>{_e(incident.signing_key)}</code>"
        if incident.signing_key
        else "no — integrity only, not authenticity (unsigned log)"
    )
    verdict = "ok — chain intact" if check.ok else f"FAILED — {_e(check.reason)}"
    return (
        f"<footer><h2>Log integrity</h2><p>runbook log verify: {verdict} "
        f"({check.records} records verified)<br>final chain hash: "
        f"<code>{_e(check.final_hash or 'none')}</code><br>signed: {signed}</p></footer>"
    )


def render(incident: Incident) -> str:
    """The page as one string; no external resources, deterministic for the same log."""
    title = f"Incident report: {incident.title}"
    body = "".join(
        [
            f"<header><h1>{_e(title)}</h1>{_facts(incident)}</header>",
            _banner(incident),
            _abridged(incident),
            _sla(incident),
            _timeline(incident),
            _steps(incident),
            _footer(incident),
        ]
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>{body}</body></html>\n"
    )
