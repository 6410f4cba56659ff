"""Severity targets and the incident clocks read from a run's log.

Responders are judged against promises: "P0: respond in 15 minutes, resolve in
an hour". So this module keeps one table of those promises (seed 003's, the
only seed giving respond, resolve and update cadence for every severity; the
operator can override it with a YAML file) and reads, from the log alone, when
the incident was detected, acknowledged, mitigated and resolved. Everything is
derived from records, never from "now", so a report printed twice is the same.

Clock rules, in log order:
- detected: the first detect-phase check that did not pass (else the run start);
- acknowledged: the first accepted confirmation or answer from a person (a passing
  result with an `answer` field, e.g. a `manual` step);
- mitigated: the first mitigate-phase action that passed;
- resolved: `run.finished` with status passed.
A record `incident.mark` with `{"mark": "detected"|...}` sets a clock explicitly.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runbook.errors import InvalidInput
from runbook.log.records import RecordType, StepStatus
from runbook.text import escape_controls

SEVERITIES = ("P0", "P1", "P2", "P3")
CLOCKS = ("detected", "acknowledged", "mitigated", "resolved")
SLA_FILE_ENV = "RUNBOOK_SLA_FILE"
_FAILING = frozenset({StepStatus.FAILED, StepStatus.ERROR, StepStatus.TIMEOUT})


@dataclass(frozen=True)
class SlaTarget:
    """What one severity promises, in seconds: respond, resolve, and how often to update."""

    severity: str
    respond: float
    resolve: float
    update_every: float


_MIN, _HOUR, _DAY = 60.0, 3600.0, 86400.0
# Seed 003 ("Severity Levels" and "Communication: Updates"): one coherent table.
DEFAULT_TARGETS: Mapping[str, SlaTarget] = {
    "P0": SlaTarget("P0", 15 * _MIN, 1 * _HOUR, 15 * _MIN),
    "P1": SlaTarget("P1", 30 * _MIN, 4 * _HOUR, 30 * _MIN),
    "P2": SlaTarget("P2", 2 * _HOUR, 24 * _HOUR, 2 * _HOUR),
    "P3": SlaTarget("P3", 24 * _HOUR, 7 * _DAY, 1 * _DAY),
}


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """`$RUNBOOK_SLA_FILE`, else `$XDG_CONFIG_HOME/runbook/sla.yaml` (~/.config by default)."""
    env = os.environ if env is None else env
    if env.get(SLA_FILE_ENV):
        return Path(env[SLA_FILE_ENV])
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "runbook" / "sla.yaml"


def load_targets(env: Mapping[str, str] | None = None) -> dict[str, SlaTarget]:
    """The default table with any severities/keys the config file overrides.

    The file maps a severity to durations, e.g. `P0: {respond: 5m, resolve: 30m,
    update: 15m}`; keys left out keep the default. A missing default file is
    fine; a missing `$RUNBOOK_SLA_FILE` or a bad value is an InvalidInput (exit 2),
    because silently using the wrong promises would misreport an incident.
    """
    env = os.environ if env is None else env
    path = config_path(env)
    targets = dict(DEFAULT_TARGETS)
    if not path.is_file():
        if env.get(SLA_FILE_ENV):
            raise InvalidInput(f"{SLA_FILE_ENV}={path}: no such file")
        return targets
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(f"{path}: cannot read SLA targets: {exc}") from exc
    if not isinstance(doc, Mapping):
        raise InvalidInput(f"{path}: expected a mapping of severity to targets")
    for severity, entry in doc.items():
        targets[str(severity)] = _override(path, str(severity), entry, targets.get(str(severity)))
    return targets


def _override(path: Path, severity: str, entry: Any, base: SlaTarget | None) -> SlaTarget:
    from runbook.load.schema import parse_duration

    if not isinstance(entry, Mapping):
        raise InvalidInput(f"{path}: {severity}: expected {{respond, resolve, update}}")
    unknown = set(entry) - {"respond", "resolve", "update"}
    if unknown:
        raise InvalidInput(f"{path}: {severity}: unknown key(s) {', '.join(sorted(unknown))}")
    fallback = base or SlaTarget(severity, 0.0, 0.0, 0.0)
    values = {"respond": fallback.respond, "resolve": fallback.resolve}
    values["update"] = fallback.update_every
    for key, raw in entry.items():
        try:
            values[key] = parse_duration(raw)
        except ValueError as exc:
            raise InvalidInput(f"{path}: {severity}.{key}: {exc}") from None
    return SlaTarget(severity, values["respond"], values["resolve"], values["update"])


@dataclass(frozen=True)
class Mark:
    """When one clock stopped: the record's UTC time, its seq, seconds since the start.

    `elapsed` is None when that time, or the run's start, cannot be read as a
    timestamp (a log written by another tool, or edited and re-chained).
    """

    ts: str
    seq: int
    elapsed: float | None


@dataclass(frozen=True)
class Clocks:
    """The incident's milestones; None when the log shows none (not yet, or never)."""

    started: Mark
    detected: Mark | None
    acknowledged: Mark | None
    mitigated: Mark | None
    resolved: Mark | None

    def get(self, name: str) -> Mark | None:
        mark: Mark | None = getattr(self, name)
        return mark


def parse_ts(ts: str) -> datetime:
    """A stored UTC timestamp (`...Z`) as an aware datetime; ValueError if it is none.

    A time without an offset is taken as UTC, as the log stores every time.
    """
    if not isinstance(ts, str):
        raise ValueError(f"not a timestamp: {ts!r}")
    moment = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def read_ts(ts: Any) -> datetime | None:
    """`parse_ts`, or None for a value that is not a readable timestamp."""
    try:
        return parse_ts(ts)
    except (ValueError, OverflowError):
        return None


def seconds_between(start: Any, end: Any) -> float | None:
    """Seconds from timestamp `start` to `end` (at least 0); None if either is unreadable."""
    first, last = read_ts(start), read_ts(end)
    if first is None or last is None:
        return None
    return max((last - first).total_seconds(), 0.0)


def record_seq(record: Mapping[str, Any], default: int = -1) -> int:
    """A record's `seq` (an int in every verified log; `default` in anything else)."""
    seq = record.get("seq")
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else default


def _data(record: Mapping[str, Any]) -> Mapping[str, Any]:
    data = record.get("data")
    return data if isinstance(data, Mapping) else {}


CLOCK_TYPES = frozenset(
    {
        RecordType.INCIDENT_MARK,
        RecordType.STEP_CONFIRMATION,
        RecordType.STEP_RESULT,
        RecordType.STEP_FINISHED,
        RecordType.RUN_FINISHED,
    }
)
"""The only record types that can stop a clock."""


def _clock_for(record: Mapping[str, Any]) -> str | None:
    """Which clock (if any) this record stops, by the rules in the module docstring."""
    kind, data = record.get("type"), _data(record)
    if kind == RecordType.INCIDENT_MARK:
        mark = data.get("mark")
        return str(mark) if mark in CLOCKS else None
    if kind == RecordType.STEP_CONFIRMATION:
        return "acknowledged" if data.get("accepted") else None
    if kind == RecordType.STEP_RESULT:
        # `answer` is the contract's field for what a person answered (StepResult)
        answered = _data({"data": data.get("fields")}).get("answer") is not None
        return "acknowledged" if answered and data.get("ok") else None
    if kind == RecordType.STEP_FINISHED:
        phase, status = data.get("phase"), data.get("status")
        if phase == "detect" and data.get("kind") == "check" and str(status) in _FAILING:
            return "detected"
        if phase == "mitigate" and data.get("kind") == "action" and status == StepStatus.PASSED:
            return "mitigated"
        return None
    if kind == RecordType.RUN_FINISHED:
        return "resolved" if data.get("status") == StepStatus.PASSED else None
    return None


class ClockWatch:
    """The clocks read one record at a time, in log order, as `clocks` reads a whole log.

    `runbook report` reads a long log once and keeps no records, so it asks this, per
    record, which clock (if any) the record has just stopped; `clocks()` is the verdict
    so far. A derived milestone can still be overridden by a later `incident.mark`.
    """

    def __init__(self, header: Mapping[str, Any]) -> None:
        self.start_ts = str(_data(header).get("started") or header.get("ts", ""))
        self.started = Mark(self.start_ts, record_seq(header, 0), 0.0)
        self._found: dict[str, Mark] = {}
        self._explicit: dict[str, Mark] = {}  # `mark:` steps win over milestones from phases

    def feed(self, record: Mapping[str, Any]) -> str | None:
        """The clock this record stops, if it is the first to stop it (by its rule)."""
        name = _clock_for(record)
        if name is None:
            return None
        chosen = self._explicit if record.get("type") == RecordType.INCIDENT_MARK else self._found
        if name in chosen:
            return None
        ts = str(record.get("ts", ""))
        chosen[name] = Mark(ts, record_seq(record), seconds_between(self.start_ts, ts))
        return name

    def clocks(self) -> Clocks:
        """The milestones of the records fed so far: an explicit mark wins, then the first."""
        found = {**self._found, **self._explicit}
        return Clocks(
            started=self.started,
            detected=found.get("detected", self.started),
            acknowledged=found.get("acknowledged"),
            mitigated=found.get("mitigated"),
            resolved=found.get("resolved"),
        )


def clocks(records: Iterable[Mapping[str, Any]]) -> Clocks:
    """The milestones in `records` (as `journal.read_log` returns them); the first wins."""
    it = iter(records)
    header = next(it, None)
    if header is None:
        raise ValueError("no records: an empty log has no clocks")
    watch = ClockWatch(header)
    for record in it:
        watch.feed(record)
    return watch.clocks()


def format_duration(seconds: float) -> str:
    """Short human durations: 850ms, 42s, 12m, 1h05m, 2d3h ('?' for no number at all)."""
    if not math.isfinite(seconds):  # a log can hold Infinity or NaN: verify never parses
        return "?"
    if 0 < seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    total = int(round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"
    return f"{secs}s"


@dataclass(frozen=True)
class SlaLine:
    """One clock against its target: 'mitigated in 12m of 1h P0 target'."""

    clock: str
    elapsed: float | None
    target: float | None
    seq: int | None

    @property
    def met(self) -> bool | None:
        """True/False against the target; None when the clock never stopped or has none."""
        if self.elapsed is None or self.target is None:
            return None
        return self.elapsed <= self.target

    def text(self, severity: str) -> str:
        if self.elapsed is None and self.seq is not None:
            return f"{self.clock} at seq {self.seq} (its time cannot be read)"
        if self.elapsed is None:
            return f"not {self.clock}" + (
                f" ({format_duration(self.target)} {severity} target)" if self.target else ""
            )
        said = f"{self.clock} in {format_duration(self.elapsed)}"
        if self.target is None:
            return said
        verdict = "" if self.met else " — MISSED"
        return f"{said} of {format_duration(self.target)} {severity} target{verdict}"


def sla_lines(marks: Clocks, target: SlaTarget | None) -> list[SlaLine]:
    """Each clock with the target it answers to: acknowledgement to `respond`,
    mitigation and resolution to `resolve`; detection has no target of its own."""
    goals = {
        "detected": None,
        "acknowledged": target.respond if target else None,
        "mitigated": target.resolve if target else None,
        "resolved": target.resolve if target else None,
    }
    lines = []
    for name in CLOCKS:
        mark = marks.get(name)
        lines.append(
            SlaLine(name, mark.elapsed if mark else None, goals[name], mark.seq if mark else None)
        )
    return lines


def severity_of(records: Sequence[Mapping[str, Any]]) -> str:
    """The header's `severity` (a run-time override) else the runbook's; '' if neither."""
    if not records:
        return ""
    data = _data(records[0])
    book = data.get("runbook")
    fallback = book.get("severity", "") if isinstance(book, Mapping) else ""
    return str(data.get("severity") or fallback or "")


def summary_line(records: Sequence[Mapping[str, Any]], targets: Mapping[str, SlaTarget]) -> str:
    """One line for the end of a run: 'SLA P0: acknowledged in 2m of 15m P0 target; ...'."""
    if not records:
        return "SLA: no records"
    severity = severity_of(records)
    target = targets.get(severity)
    lines = [line for line in sla_lines(clocks(records), target) if line.clock != "detected"]
    missed = any(line.met is False for line in lines)
    verdict = "MISSED" if missed else "within target" if target else "no target"
    # For a terminal: a severity read from a log is shown escaped, as `log show` shows it.
    shown = escape_controls(severity).encode("utf-8", "backslashreplace").decode("utf-8")
    body = "; ".join(line.text(shown) for line in lines)
    return f"SLA {shown or '?'} ({verdict}): {body}"
