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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runbook.log.chain import ChainCheck, check_chain
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
    """Who let an action run (or refused), how, and when."""

    seq: int
    ts: str
    operator: str
    method: str
    accepted: bool
    prompt: str


@dataclass
class StepReport:
    """One execution of a step; a step visited twice (goto) appears twice."""

    id: str
    phase: str
    kind: str
    executor: str = ""
    title: str = ""
    status: str = "incomplete"
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
    verification: ChainCheck

    @property
    def actions(self) -> list[StepReport]:
        return [s for s in self.steps if s.kind == "action" and s.status != "skipped"]

    @property
    def failed_checks(self) -> list[StepReport]:
        bad = ("failed", "error", "timeout", "incomplete")
        return [s for s in self.steps if s.kind == "check" and s.status in bad]

    @property
    def duration(self) -> float | None:
        """Seconds from the run start to its last record; None if it never ended."""
        if not self.ended:
            return None
        return max((sla.parse_ts(self.ended) - sla.parse_ts(self.started)).total_seconds(), 0.0)


def _data(record: Mapping[str, Any]) -> Mapping[str, Any]:
    data = record.get("data")
    return data if isinstance(data, Mapping) else {}


def _seconds(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


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
        seq = int(record.get("seq", -1))
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
            handler(self, record, _data(record), int(record.get("seq", -1)))
        elif record.get("seq") in self.milestones:
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
        status = "passed" if result.get("ok") else "timeout" if result.get("timed_out") else "error"
        step.hosts[str(host)] = HostResult(str(host), status, str(result.get("error") or ""), seq)
    if d.get("ok", True) is False:
        error = str(d.get("error") or "error")
        step.failures.append(Failure(seq, error))
        b.say(record, f"attempt {d.get('attempt', '?')} error: {error}", step, "error")


def _on_expectation(b: _Builder, record: Mapping[str, Any], d: Mapping[str, Any], seq: int) -> None:
    if d.get("passed", True):
        return
    step = b.step(d, seq)
    host, message = str(d.get("host") or ""), str(d.get("message", ""))
    step.failures.append(Failure(seq, message, str(d.get("expr", "")), host))
    if host:
        step.hosts[host] = HostResult(host, "failed", message, seq)
    where = f" on {host}" if host else ""
    b.say(record, f"expectation failed{where} `{d.get('expr', '?')}`: {message}", step, "failed")


def _on_confirmation(
    b: _Builder, record: Mapping[str, Any], d: Mapping[str, Any], seq: int
) -> None:
    step = b.step(d, seq)
    confirmation = Confirmation(
        seq=seq,
        ts=str(record.get("ts", "")),
        operator=str(d.get("operator") or "?"),
        method=str(d.get("method") or ""),
        accepted=bool(d.get("accepted")),
        prompt=str(d.get("prompt", "")),
    )
    step.confirmations.append(confirmation)
    verdict = "accepted" if confirmation.accepted else "declined"
    via = f" via {confirmation.method}" if confirmation.method else ""
    b.say(
        record, f"{verdict} by {confirmation.operator}{via}: {confirmation.prompt}", step, verdict
    )


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
    step.attempts = int(d.get("attempts") or 0)
    took = f" in {sla.format_duration(step.elapsed)}" if step.elapsed is not None else ""
    why = f": {step.message}" if step.message and step.status != "passed" else ""
    answer = f" (answer: {step.answer})" if step.answer is not None else ""
    b.say(record, f"{step.kind} {step.status}{took}{answer}{why}", step, step.status)


def _on_skipped(b: _Builder, record: Mapping[str, Any], d: Mapping[str, Any], seq: int) -> None:
    step = b.step(d, seq)
    b.open.pop(step.id, None)
    step.status, step.message, step.seq = "skipped", str(d.get("reason", "")), seq
    b.say(record, f"{step.kind} skipped: {step.message}", step, "skipped")


def _on_planned(b: _Builder, record: Mapping[str, Any], d: Mapping[str, Any], seq: int) -> None:
    b.say(record, f"would run: {d.get('summary', '?')}", b.step(d, seq), "planned")


def _on_observer(b: _Builder, record: Mapping[str, Any], d: Mapping[str, Any], seq: int) -> None:
    b.say(record, f"observer error: {d.get('message', '')}", None, "error")
    b.observer_errors.append(b.timeline[-1])


def _on_run_end(b: _Builder, record: Mapping[str, Any], d: Mapping[str, Any], seq: int) -> None:
    if record.get("type") == "run.interrupted":
        during = f" during {d['step']}" if d.get("step") else ""
        b.say(record, f"run interrupted{during}: {d.get('reason', '')}", None, "interrupted")
        return
    reason = f": {d['reason']}" if d.get("reason") else ""
    status = str(d.get("status", "?"))
    b.say(record, f"run finished {status} (exit {d.get('exit_code', '?')}){reason}", None, status)


_Handler = Any
_HANDLERS: dict[str, _Handler] = {
    "step.started": _on_started,
    "step.attempt": _on_attempt,
    "step.result": _on_result,
    "step.expectation": _on_expectation,
    "step.confirmation": _on_confirmation,
    "step.retry": _on_retry,
    "step.finished": _on_finished,
    "step.skipped": _on_skipped,
    "step.planned": _on_planned,
    "observer.error": _on_observer,
    "run.finished": _on_run_end,
    "run.interrupted": _on_run_end,
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
    builder.say(header, f"run started by {head.get('operator', '?')} on {head.get('host', '?')}")
    for record in records[1:]:
        builder.feed(record)
    last = records[-1] if len(records) > 1 else None
    end = _data(last) if last and last.get("type") in ("run.finished", "run.interrupted") else {}
    status = str(end.get("status", "interrupted" if end else "incomplete"))
    exit_code = end.get("exit_code")
    return Incident(
        title=str(book.get("title") or book.get("name") or "?"),
        runbook=str(book.get("name", "?")),
        severity=severity,
        run_id=str(head.get("run_id", "")),
        operator=str(head.get("operator", "")),
        host=str(head.get("host", "")),
        dry_run=bool(head.get("dry_run", False)),
        params=dict(head.get("params") or {}),
        runbook_sha256=str(book.get("sha256", "")),
        started=marks.started.ts,
        ended=str(last.get("ts", "")) if end and last else "",
        status=status,
        exit_code=exit_code if isinstance(exit_code, int) else None,
        reason=str(end.get("reason") or ""),
        clocks=marks,
        target=target,
        sla=tuple(sla.sla_lines(marks, target)),
        steps=tuple(builder.steps),
        timeline=tuple(builder.timeline),
        observer_errors=tuple(builder.observer_errors),
        verification=check_chain(records),
    )
