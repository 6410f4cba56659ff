"""Turn a run's records into one Incident: the facts every report format tells.

Each format (Markdown, JSON, JUnit, HTML) is a view of the same model, so they
cannot disagree about what happened, and each fact keeps the `seq` of the
record it came from so a reader can check it against the log. `build_incident`
is a pure function of the records (plus the SLA table): the same log always
gives the same Incident, which is what makes reports reproducible. It is
tolerant like `logview`: missing keys are left out, an unfinished step is
`incomplete`, and the chain verdict says how far the log can be trusted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runbook.log.records import FINAL_TYPES, RecordType, StepStatus
from runbook.log.verify import Verification, verify_records
from runbook.report import sla


@dataclass(frozen=True)
class Failure:
    """An expectation that did not hold (operands in `message`), or an attempt's error."""

    seq: int
    message: str
    expr: str = ""
    host: str = ""


@dataclass(frozen=True)
class HostResult:
    """One host's outcome of a fanned-out step (its last attempt)."""

    host: str
    status: str
    message: str
    seq: int


@dataclass(frozen=True)
class Confirmation:
    """Who let an action run (or refused), how, and when.

    `operator` is the name claimed; `os_user`/`os_uid` what the kernel said ("" and
    None in logs from before they were recorded).
    """

    seq: int
    ts: str
    operator: str
    method: str
    accepted: bool
    prompt: str
    os_user: str = ""
    os_uid: int | None = None


@dataclass
class StepReport:
    """One execution of a step; a step visited twice (goto) appears twice."""

    id: str
    phase: str
    kind: str
    executor: str = ""
    title: str = ""
    status: str = StepStatus.INCOMPLETE
    started: str = ""
    finished: str = ""
    seq: int = 0
    elapsed: float | None = None
    attempts: int = 0
    message: str = ""
    verifies: str = ""
    answer: str | None = None
    confirmations: list[Confirmation] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    hosts: dict[str, HostResult] = field(default_factory=dict)


@dataclass(frozen=True)
class TimelineEntry:
    """One line of the story, citing the record it came from; `milestones` are SLA clocks."""

    seq: int
    ts: str
    phase: str
    step: str
    status: str
    text: str
    milestones: tuple[str, ...] = ()


@dataclass(frozen=True)
class Incident:
    """Everything a report says about one run, each fact traceable to a log seq."""

    title: str
    runbook: str
    severity: str
    run_id: str
    operator: str
    host: str
    dry_run: bool
    params: Mapping[str, Any]
    runbook_sha256: str
    identity: Mapping[str, Any]
    signing_key: str
    started: str
    ended: str
    status: str
    exit_code: int | None
    reason: str
    clocks: sla.Clocks
    target: sla.SlaTarget | None
    sla: tuple[sla.SlaLine, ...]
    steps: tuple[StepReport, ...]
    timeline: tuple[TimelineEntry, ...]
    observer_errors: tuple[TimelineEntry, ...]
    verification: Verification

    @property
    def actions(self) -> list[StepReport]:
        return [s for s in self.steps if s.kind == "action" and s.status != StepStatus.SKIPPED]

    @property
    def failed_checks(self) -> list[StepReport]:
        return [s for s in self.steps if s.kind == "check" and s.status in _BAD_CHECK]

    @property
    def duration(self) -> float | None:
        """Seconds from the run start to its last record; None if it never ended (or either
        time cannot be read)."""
        if not self.ended:
            return None
        return sla.seconds_between(self.started, self.ended)


_BAD_CHECK = frozenset(
    {StepStatus.FAILED, StepStatus.ERROR, StepStatus.TIMEOUT, StepStatus.INCOMPLETE}
)


def _data(record: Mapping[str, Any]) -> Mapping[str, Any]:
    data = record.get("data")
    return data if isinstance(data, Mapping) else {}


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def os_user(identity: Mapping[str, Any]) -> str:
    """`root (uid 0)`, with the effective uid, sudo and SSH client when recorded."""
    if "os_user" not in identity:
        return "not recorded"
    text = f"{identity['os_user']} (uid {identity.get('os_uid', '?')})"
    if "os_euid" in identity:
        text += f", effective {identity.get('os_euser', '?')} (uid {identity['os_euid']})"
    if identity.get("sudo_user"):
        text += f", via sudo from {identity['sudo_user']}"
    if identity.get("ssh_client"):
        text += f", over SSH from {identity['ssh_client']}"
    return text


def claimed_vs_os(name: str, identity: Mapping[str, Any]) -> str:
    """`alice (claimed; OS user root (uid 0))`: the name is only what was claimed.

    Just the name for a log from before the OS user was recorded.
    """
    if "os_user" not in identity:
        return name
    return f"{name} (claimed; OS user {os_user(identity)})"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _seconds(value: Any) -> float | None:
    """A duration from the log, or None for anything that is not a finite number."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except OverflowError:
        return None
    return seconds if math.isfinite(seconds) else None


class _Builder:
    """Walks the records once, keeping open steps by id and the timeline so far."""

    def __init__(self, milestones: Mapping[int, tuple[str, ...]]) -> None:
        self.steps: list[StepReport] = []
        self.open: dict[str, StepReport] = {}
        self.timeline: list[TimelineEntry] = []
        self.observer_errors: list[TimelineEntry] = []
        self.milestones = milestones

    def step(self, data: Mapping[str, Any], seq: int) -> StepReport:
        sid = str(data.get("step", "?"))
        found = self.open.get(sid)
        if found is None:
            found = StepReport(sid, str(data.get("phase", "")), str(data.get("kind", "")), seq=seq)
            self.open[sid] = found
            self.steps.append(found)
        return found

    def say(
        self, record: Mapping[str, Any], text: str, step: StepReport | None = None, status: str = ""
    ) -> None:
        seq = sla.record_seq(record)
        self.timeline.append(
            TimelineEntry(
                seq=seq,
                ts=str(record.get("ts", "")),
                phase=step.phase if step else "",
                step=step.id if step else "",
                status=status,
                text=text,
                milestones=self.milestones.get(seq, ()),
            )
        )

    def feed(self, record: Mapping[str, Any]) -> None:
        handler = _HANDLERS.get(str(record.get("type", "")))
        if handler is not None:
            handler(self, record, _data(record), sla.record_seq(record))
        elif sla.record_seq(record) in self.milestones:
            self.say(record, f"{record.get('type')}: {_data(record).get('note', '')}".strip())


def _on_started(b: _Builder, record: Mapping[str, Any], d: Mapping[str, Any], seq: int) -> None:
    step = b.step(d, seq)
    step.executor, step.title = str(d.get("executor", "")), str(d.get("title", ""))
    step.started, step.seq, step.verifies = (
        str(record.get("ts", "")),
        seq,
        str(d.get("verifies", "")),
    )
    if step.kind == "action":
        b.say(record, f"action started: {step.title or step.id}", step, "started")


def _on_attempt(b: _Builder, record: Mapping[str, Any], d: Mapping[str, Any], seq: int) -> None:
    step = b.step(d, seq)
    step.failures, step.hosts = [], {}  # the last attempt is the one that counts


def _on_result(b: _Builder, record: Mapping[str, Any], d: Mapping[str, Any], seq: int) -> None:
    step = b.step(d, seq)
    fields = d.get("fields")
    if isinstance(fields, Mapping) and fields.get("answer") is not None:
        step.answer = str(fields["answer"])
    hosts = d.get("hosts")
    for host, result in sorted(hosts.items()) if isinstance(hosts, Mapping) else []:
        result = result if isinstance(result, Mapping) else {}
        status = (
            StepStatus.PASSED
            if result.get("ok")
            else StepStatus.TIMEOUT
            if result.get("timed_out")
            else StepStatus.ERROR
        )
        step.hosts[str(host)] = HostResult(str(host), status, str(result.get("error") or ""), seq)
    if d.get("ok", True) is False:
        error = str(d.get("error") or "error")
        step.failures.append(Failure(seq, error))
        b.say(record, f"attempt {d.get('attempt', '?')} error: {error}", step, StepStatus.ERROR)


def _on_expectation(b: _Builder, record: Mapping[str, Any], d: Mapping[str, Any], seq: int) -> None:
    if d.get("passed", True):
        return
    step = b.step(d, seq)
    host, message = str(d.get("host") or ""), str(d.get("message", ""))
    step.failures.append(Failure(seq, message, str(d.get("expr", "")), host))
    if host:
        step.hosts[host] = HostResult(host, StepStatus.FAILED, message, seq)
    where = f" on {host}" if host else ""
    text = f"expectation failed{where} `{d.get('expr', '?')}`: {message}"
    b.say(record, text, step, StepStatus.FAILED)


def _on_confirmation(
    b: _Builder, record: Mapping[str, Any], d: Mapping[str, Any], seq: int
) -> None:
    step = b.step(d, seq)
    identity = _mapping(d.get("identity"))
    uid = identity.get("os_uid")
    confirmation = Confirmation(
        seq=seq,
        ts=str(record.get("ts", "")),
        operator=str(d.get("operator") or "?"),
        method=str(d.get("method") or ""),
        accepted=bool(d.get("accepted")),
        prompt=str(d.get("prompt", "")),
        os_user=str(identity.get("os_user", "")),
        os_uid=uid if isinstance(uid, int) and not isinstance(uid, bool) else None,
    )
    step.confirmations.append(confirmation)
    verdict = "accepted" if confirmation.accepted else "declined"
    via = f" via {confirmation.method}" if confirmation.method else ""
    who = claimed_vs_os(confirmation.operator, identity)
    b.say(record, f"{verdict} by {who}{via}: {confirmation.prompt}", step, verdict)


def _on_retry(b: _Builder, record: Mapping[str, Any], d: Mapping[str, Any], seq: int) -> None:
    step = b.step(d, seq)
    delay = _seconds(d.get("delay"))
    wait = f" in {sla.format_duration(delay)}" if delay is not None else ""
    of = f" of {d['attempts']}" if d.get("attempts") else ""
    next_try = d.get("next_attempt", "?")
    text = f"{d.get('reason', 'failed')}, retrying{wait} (attempt {next_try}{of})"
    b.say(record, text, step, "retry")


def _on_finished(b: _Builder, record: Mapping[str, Any], d: Mapping[str, Any], seq: int) -> None:
    step = b.step(d, seq)
    b.open.pop(step.id, None)
    step.status, step.finished, step.seq = str(d.get("status", "?")), str(record.get("ts", "")), seq
    step.elapsed, step.message = _seconds(d.get("elapsed")), str(d.get("message") or "")
    attempts = d.get("attempts")
    step.attempts = attempts if isinstance(attempts, int) and not isinstance(attempts, bool) else 0
    took = f" in {sla.format_duration(step.elapsed)}" if step.elapsed is not None else ""
    why = f": {step.message}" if step.message and step.status != StepStatus.PASSED else ""
    answer = f" (answer: {step.answer})" if step.answer is not None else ""
    b.say(record, f"{step.kind} {step.status}{took}{answer}{why}", step, step.status)


def _on_skipped(b: _Builder, record: Mapping[str, Any], d: Mapping[str, Any], seq: int) -> None:
    step = b.step(d, seq)
    b.open.pop(step.id, None)
    step.status, step.message, step.seq = StepStatus.SKIPPED, str(d.get("reason", "")), seq
    b.say(record, f"{step.kind} skipped: {step.message}", step, StepStatus.SKIPPED)


def _on_planned(b: _Builder, record: Mapping[str, Any], d: Mapping[str, Any], seq: int) -> None:
    b.say(record, f"would run: {d.get('summary', '?')}", b.step(d, seq), StepStatus.PLANNED)


def _on_observer(b: _Builder, record: Mapping[str, Any], d: Mapping[str, Any], seq: int) -> None:
    b.say(record, f"observer error: {d.get('message', '')}", None, StepStatus.ERROR)
    b.observer_errors.append(b.timeline[-1])


def _on_run_end(b: _Builder, record: Mapping[str, Any], d: Mapping[str, Any], seq: int) -> None:
    if record.get("type") == RecordType.RUN_INTERRUPTED:
        during = f" during {d['step']}" if d.get("step") else ""
        text = f"run interrupted{during}: {d.get('reason', '')}"
        b.say(record, text, None, StepStatus.INTERRUPTED)
        return
    reason = f": {d['reason']}" if d.get("reason") else ""
    status = str(d.get("status", "?"))
    b.say(record, f"run finished {status} (exit {d.get('exit_code', '?')}){reason}", None, status)


_Handler = Any
_HANDLERS: dict[str, _Handler] = {
    RecordType.STEP_STARTED: _on_started,
    RecordType.STEP_ATTEMPT: _on_attempt,
    RecordType.STEP_RESULT: _on_result,
    RecordType.STEP_EXPECTATION: _on_expectation,
    RecordType.STEP_CONFIRMATION: _on_confirmation,
    RecordType.STEP_RETRY: _on_retry,
    RecordType.STEP_FINISHED: _on_finished,
    RecordType.STEP_SKIPPED: _on_skipped,
    RecordType.STEP_PLANNED: _on_planned,
    RecordType.OBSERVER_ERROR: _on_observer,
    RecordType.RUN_FINISHED: _on_run_end,
    RecordType.RUN_INTERRUPTED: _on_run_end,
}


def _milestones(marks: sla.Clocks) -> dict[int, tuple[str, ...]]:
    by_seq: dict[int, tuple[str, ...]] = {}
    for name in ("started", *sla.CLOCKS):
        mark = marks.get(name)
        if mark is not None:
            by_seq[mark.seq] = (*by_seq.get(mark.seq, ()), name)
    return by_seq


def build_incident(
    records: Sequence[Mapping[str, Any]],
    targets: Mapping[str, sla.SlaTarget] | None = None,
) -> Incident:
    """The Incident told by `records` (verified or not: `verification` says which).

    `targets` defaults to `sla.DEFAULT_TARGETS`; raises ValueError for no records.
    """
    if not records:
        raise ValueError("an empty log describes no incident")
    header, head = records[0], _data(records[0])
    book = head.get("runbook") if isinstance(head.get("runbook"), Mapping) else {}
    assert isinstance(book, Mapping)
    marks = sla.clocks(records)
    severity = sla.severity_of(records)
    target = (sla.DEFAULT_TARGETS if targets is None else targets).get(severity)
    builder = _Builder(_milestones(marks))
    identity = _mapping(head.get("identity"))
    who = claimed_vs_os(str(head.get("operator", "?")), identity)
    builder.say(header, f"run started by {who} on {head.get('host', '?')}")
    for record in records[1:]:
        builder.feed(record)
    last = records[-1] if len(records) > 1 else None
    end = _data(last) if last and str(last.get("type")) in FINAL_TYPES else {}
    status = str(end.get("status", StepStatus.INTERRUPTED if end else StepStatus.INCOMPLETE))
    exit_code = end.get("exit_code")
    return Incident(
        title=str(book.get("title") or book.get("name") or "?"),
        runbook=str(book.get("name", "?")),
        severity=severity,
        run_id=str(head.get("run_id", "")),
        operator=str(head.get("operator", "")),
        host=str(head.get("host", "")),
        dry_run=bool(head.get("dry_run", False)),
        params=dict(_mapping(head.get("params"))),
        runbook_sha256=str(book.get("sha256", "")),
        identity=dict(identity),
        signing_key=str(_mapping(head.get("signing")).get("fingerprint", "")),
        started=marks.started.ts,
        ended=str(last.get("ts", "")) if end and last else "",
        status=status,
        exit_code=exit_code if _is_int(exit_code) else None,
        reason=str(end.get("reason") or ""),
        clocks=marks,
        target=target,
        sla=tuple(sla.sla_lines(marks, target)),
        steps=tuple(builder.steps),
        timeline=tuple(builder.timeline),
        observer_errors=tuple(builder.observer_errors),
        verification=verify_records(records),
    )
