"""The JSON report: the Incident as data, following `schemas/report.schema.json`.

Dashboards and ticket bots read this, so its shape is a contract: the schema
is versioned by `report_format`, keys are only ever added, and a test
validates every report against the schema. Times are UTC ISO-8601 strings as
stored in the log; durations are seconds.
"""

from __future__ import annotations

import json
import math
from typing import Any

from runbook.report.incident import Incident, Omissions, StepReport, TimelineEntry
from runbook.report.sla import Mark

REPORT_FORMAT = 1


def _mark(mark: Mark | None) -> dict[str, Any] | None:
    return None if mark is None else {"ts": mark.ts, "seq": mark.seq, "elapsed": mark.elapsed}


def _step(step: StepReport) -> dict[str, Any]:
    cut = {
        key: count
        for key, count in (
            ("hosts_omitted", step.hosts_omitted),
            ("failures_omitted", step.failures_omitted),
            ("confirmations_omitted", step.confirmations_omitted),
        )
        if count
    }
    return {
        "id": step.id,
        "phase": step.phase,
        "kind": step.kind,
        "executor": step.executor,
        "title": step.title,
        "status": step.status,
        "started": step.started or None,
        "finished": step.finished or None,
        "seq": step.seq,
        "elapsed": step.elapsed,
        "attempts": step.attempts,
        "message": step.message,
        "verifies": step.verifies or None,
        "answer": step.answer,
        "confirmations": [dict(vars(c)) for c in step.confirmations],
        "failures": [dict(vars(f)) for f in step.failures],
        "hosts": [dict(vars(h)) for h in step.hosts.values()],
        **cut,
    }


def _entry(entry: TimelineEntry) -> dict[str, Any]:
    return {**vars(entry), "milestones": list(entry.milestones)}


def _sla(incident: Incident) -> dict[str, Any]:
    target = incident.target
    return {
        "severity": incident.severity,
        "target": None
        if target is None
        else {
            "respond": target.respond,
            "resolve": target.resolve,
            "update_every": target.update_every,
        },
        "clocks": [
            {
                "clock": line.clock,
                "elapsed": line.elapsed,
                "target": line.target,
                "met": line.met,
                "seq": line.seq,
                "text": line.text(incident.severity),
            }
            for line in incident.sla
        ],
    }


def _verification(incident: Incident) -> dict[str, Any]:
    check = incident.verification
    return {
        "ok": check.ok,
        "truncated": check.truncated,
        "tampered": check.tampered,
        "reason": check.reason,
        "first_bad_seq": check.first_bad_seq,
        "records": check.records,
        "final_hash": check.final_hash,
        "signing_key": incident.signing_key or None,
    }


def _omitted(omitted: Omissions) -> dict[str, Any]:
    limits = omitted.limits
    return {
        "summary": omitted.summary(),
        "limits": {
            "steps": limits.steps,
            "timeline_head": limits.timeline_head,
            "timeline_tail": limits.timeline_tail,
            "host_results": limits.host_results,
            "failures": limits.failures,
            "observer_errors": limits.observer_errors,
            "step_ids": limits.step_ids,
        },
        "steps": {
            "count": omitted.steps,
            "first_seq": omitted.steps_first_seq if omitted.steps else None,
            "last_seq": omitted.steps_last_seq if omitted.steps else None,
            "by_kind": {kind: dict(counts) for kind, counts in omitted.step_counts.items()},
            "by_step": {step: dict(counts) for step, counts in omitted.by_step.items()},
            "by_step_others": omitted.by_step_others,
        },
        "timeline": omitted.timeline,
        "observer_errors": omitted.observer_errors,
        "host_results": omitted.host_results,
        "failures": omitted.failures,
    }


def to_dict(incident: Incident) -> dict[str, Any]:
    """The report as plain data (what `render` serialises).

    `omitted` is there only when the log was too long to list in full (see
    `incident.Limits`); steps carry `*_omitted` counts only when theirs were cut.
    """
    names = ("started", "detected", "acknowledged", "mitigated", "resolved")
    cut = {"omitted": _omitted(incident.omitted)} if incident.omitted else {}
    return {
        "report_format": REPORT_FORMAT,
        "incident": {
            "title": incident.title,
            "runbook": incident.runbook,
            "runbook_sha256": incident.runbook_sha256,
            "severity": incident.severity,
            "run_id": incident.run_id,
            "operator": incident.operator,
            "identity": dict(incident.identity) or None,
            "host": incident.host,
            "dry_run": incident.dry_run,
            "params": dict(incident.params),
            "started": incident.started,
            "ended": incident.ended or None,
            "duration": incident.duration,
            "status": incident.status,
            "exit_code": incident.exit_code,
            "reason": incident.reason,
        },
        "clocks": {name: _mark(incident.clocks.get(name)) for name in names},
        "sla": _sla(incident),
        "steps": [_step(step) for step in incident.steps],
        "timeline": [_entry(entry) for entry in incident.timeline],
        "observer_errors": [_entry(entry) for entry in incident.observer_errors],
        "verification": _verification(incident),
        **cut,
    }


def render(incident: Incident) -> str:
    """Compact JSON with a stable key order, ending in a newline.

    Not indented: `indent` makes the json module fall back to its pure-Python
    encoder, 3x slower on a 100k-record log (goal: report in under 2 s);
    `jq .` or `python -m json.tool` pretty-print it when a human reads it.
    """
    doc = to_dict(incident)
    try:
        return json.dumps(doc, ensure_ascii=False, allow_nan=False) + "\n"
    except ValueError:  # NaN or Infinity, which a log's bytes can hold: not JSON, so text
        return json.dumps(_finite(doc), ensure_ascii=False) + "\n"


def _finite(value: Any, depth: int = 0) -> Any:
    """`value` with every NaN and infinity as its text ("nan", "inf"), as the log writer
    stores them; below a depth no report reaches, left as it is."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if depth > 200:
        return value
    if isinstance(value, dict):
        return {key: _finite(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item, depth + 1) for item in value]
    return value
