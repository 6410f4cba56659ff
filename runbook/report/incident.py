"""Turn a run's records into one Incident: the facts every report format tells.

Each format (Markdown, JSON, JUnit, HTML) is a view of the same model, so they
cannot disagree about what happened, and each fact keeps the `seq` of the
record it came from so a reader can check it against the log. The model is
built by `IncidentBuilder`, fed one record at a time in log order, so a report
reads a log once and keeps no records (`runbook.report.reader` reads a file that
way, verifying each line before it is used). It is bounded, like the log bounds each
value: past `Limits` (far beyond an ordinary run) it keeps the first step
executions and the first and last timeline entries (and every SLA milestone), and
counts the rest, which each format then says it left out. It is a pure function
of the records (plus the SLA table): the same log always gives the same Incident,
which is what makes reports reproducible. It is tolerant like `logview`: missing
keys are left out, an unfinished step is `incomplete`, and the chain verdict says
how far the log can be trusted.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runbook.log.records import FINAL_TYPES, RecordType, StepStatus
from runbook.log.verify import Verification, verify_records
from runbook.report import sla


@dataclass(frozen=True)
class Limits:
    """How much of a long log the model keeps in detail; the rest is counted.

    An ordinary run is far inside every limit, and its report lists everything.
    `host_results` bounds the per-host outcomes held by the kept step executions
    together, `failures` their failures and confirmations (an attempt's hosts and
    failures are let go when the next attempt starts).
    """

    steps: int = 2_000
    timeline_head: int = 1_000
    timeline_tail: int = 200
    host_results: int = 50_000
    failures: int = 20_000
    observer_errors: int = 100
    open_steps: int = 10_000
    step_ids: int = 100


DEFAULT_LIMITS = Limits()


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
    """One execution of a step; a step visited twice (goto) appears twice.

    The `*_omitted` counts are what `Limits` left out of the lists (the latest
    confirmation is always kept); they are 0 for an ordinary run.
    """

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
    hosts_omitted: int = 0
    failures_omitted: int = 0
    confirmations_omitted: int = 0


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
class TimelineGap(TimelineEntry):
    """Where a long timeline leaves `count` entries out: from `seq` (at `ts`) to `last_seq`.

    Its status is `omitted` and its text says so, so a format that lists it like
    any entry still tells the reader what is missing and where to find it.
    """

    count: int = 0
    last_seq: int = 0


OMITTED = "omitted"
"""The `status` of a `TimelineGap`."""

SHOW_ALL = "`runbook log show LOG` lists every record"


@dataclass(frozen=True)
class Omissions:
    """What the report of a long log leaves out to stay bounded; all zero for an ordinary run.

    `steps` executions beyond `limits.steps` (seq `steps_first_seq`..`steps_last_seq`)
    are counted by kind and outcome in `step_counts` (`{"check": {"failed": 3}}`; a
    kind or outcome outside the vocabulary counts as `other`) and, for the first
    `limits.step_ids` step ids among them, by step in `by_step` (`{"poll": {"failed":
    1035, "passed": 1}}`; `by_step_others` counts the executions of the other ids).
    `timeline` is the entries the gaps stand for; `host_results` and `failures` what kept steps
    left out of their lists (`failures` counts confirmations too).
    """

    limits: Limits = DEFAULT_LIMITS
    steps: int = 0
    steps_first_seq: int = 0
    steps_last_seq: int = 0
    step_counts: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    by_step: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    by_step_others: int = 0
    timeline: int = 0
    observer_errors: int = 0
    host_results: int = 0
    failures: int = 0

    def __bool__(self) -> bool:
        return any(
            (self.steps, self.timeline, self.host_results, self.failures, self.observer_errors)
        )

    def counted(self, kind: str, statuses: Iterable[str] | None = None) -> int:
        """Omitted executions of `kind` (with one of `statuses`, if given)."""
        counts = self.step_counts.get(kind, {})
        if statuses is None:
            return sum(counts.values())
        return sum(counts.get(status, 0) for status in statuses)

    def tally(self, kind: str) -> str:
        """`170,000 passed, 28,000 failed` for the omitted executions of `kind`."""
        return outcomes(self.step_counts.get(kind, {}))

    def per_step(self) -> list[str]:
        """`poll: 1,036 (1,035 failed, 1 passed)` for each step id counted on its own, and a
        last line for the executions of the others, if any."""
        lines = [
            f"{step}: {sum(counts.values()):,} ({outcomes(counts)})"
            for step, counts in self.by_step.items()
        ]
        if self.by_step_others:
            lines.append(f"{self.by_step_others:,} executions of other steps")
        return lines

    def summary(self) -> str:
        """One sentence naming every limit that was reached (empty if none was)."""
        parts = []
        if self.steps:
            parts.append(f"the first {self.limits.steps:,} step executions")
        if self.timeline:
            parts.append(
                f"the first {self.limits.timeline_head:,} and last "
                f"{self.limits.timeline_tail:,} timeline entries and every SLA milestone"
            )
        if self.host_results:
            parts.append(f"{self.limits.host_results:,} host results in all")
        if self.failures:
            parts.append(f"{self.limits.failures:,} failures and confirmations in all")
        if self.observer_errors:
            parts.append(f"the first {self.limits.observer_errors:,} observer errors")
        if not parts:
            return ""
        return f"This log is too long to list in full: this report keeps {'; '.join(parts)}; " + (
            f"every section that is cut says how much it left out, and {SHOW_ALL}."
        )


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
    omitted: Omissions = Omissions()

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
BAD_CHECK_STATUSES = _BAD_CHECK
"""A check with one of these outcomes is listed under the failed checks."""


def _data(record: Mapping[str, Any]) -> Mapping[str, Any]:
    data = record.get("data")
    if type(data) is dict:  # nearly always, and much quicker to ask than Mapping
        return data
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


# A timeline line while the log is read: (seq, ts, phase, step, status, text, pinned).
# Plain tuples, because most lines of a long log are counted and dropped; `pinned`
# marks a record that stopped an SLA clock, which is kept wherever it falls.
_Line = tuple[int, str, str, str, str, str, bool]


class _Gap:
    """Consecutive timeline lines left out: how many, and the first one's seq and time."""

    def __init__(self, line: _Line) -> None:
        self.count, self.seq, self.ts, self.last_seq = 1, line[0], line[1], line[0]

    def add(self, line: _Line) -> None:
        self.count += 1
        self.last_seq = line[0]

    def merge(self, other: _Gap) -> None:
        self.count += other.count
        self.last_seq = other.last_seq

    def entry(self) -> TimelineGap:
        seqs = f"seq {self.seq}–{self.last_seq}" if self.count > 1 else f"seq {self.seq}"
        noun = "entry" if self.count == 1 else "entries"
        text = f"{self.count:,} more timeline {noun} ({seqs}) not shown: {SHOW_ALL}"
        return TimelineGap(
            self.seq, self.ts, "", "", OMITTED, text, count=self.count, last_seq=self.last_seq
        )


class _Timeline:
    """The first `head` lines, the last `tail`, and the pinned ones between, with gaps."""

    def __init__(self, head: int, tail: int) -> None:
        self.head_limit, self.tail_limit = head, tail
        self.head: list[_Line] = []
        self.middle: list[_Line | _Gap] = []
        self.tail: deque[_Line] = deque()
        self.omitted = 0

    def add(self, line: _Line) -> None:
        if len(self.head) < self.head_limit:
            self.head.append(line)
            return
        self.tail.append(line)
        if len(self.tail) > self.tail_limit:
            self._drop(self.tail.popleft())

    def _drop(self, line: _Line) -> None:
        last = self.middle[-1] if self.middle else None
        if line[6]:
            self.middle.append(line)
        elif isinstance(last, _Gap):
            last.add(line)
        else:
            self.middle.append(_Gap(line))

    def entries(self, milestones: Mapping[int, tuple[str, ...]]) -> list[TimelineEntry]:
        """Every kept line as an entry with its final milestones, a gap for each run left out.

        A line pinned for a clock that a later `incident.mark` took over is no
        milestone after all: it joins the gaps around it.
        """
        middle: list[_Line | _Gap] = []
        self.omitted = 0
        for item in self.middle:
            if isinstance(item, tuple) and item[0] not in milestones:
                item = _Gap(item)
            before = middle[-1] if middle else None
            if isinstance(item, _Gap) and isinstance(before, _Gap):
                before.merge(item)
            else:
                middle.append(item)
        entries: list[TimelineEntry] = []
        for item in [*self.head, *middle, *self.tail]:
            if isinstance(item, _Gap):
                entries.append(item.entry())
                self.omitted += item.count
            else:
                seq, ts, phase, step, status, text, _ = item
                entries.append(
                    TimelineEntry(seq, ts, phase, step, status, text, milestones.get(seq, ()))
                )
        return entries


def outcomes(counts: Mapping[str, int]) -> str:
    """`1,035 failed, 1 passed`: counts by outcome, in the order of the outcomes' names."""
    return ", ".join(f"{n:,} {status}" for status, n in sorted(counts.items()))


class _StepTally:
    """Step executions past `Limits.steps`: counted by kind and outcome, and by step for
    the first `step_ids` ids, not kept."""

    _KINDS = frozenset({"check", "action"})
    _STATUSES = frozenset(StepStatus)

    def __init__(self, step_ids: int) -> None:
        self.count = 0
        self.first_seq: int | None = None
        self.last_seq = 0
        self.counts: dict[str, dict[str, int]] = {}
        self.step_ids = step_ids
        self.by_step: dict[str, dict[str, int]] = {}
        self.by_step_others = 0

    def start(self, seq: int) -> None:
        """An execution past the limit begins at `seq`."""
        if self.first_seq is None:
            self.first_seq = seq

    def add(self, step: StepReport, seq: int) -> None:
        """That execution ended at `seq`, as `step` tells."""
        kind = step.kind if step.kind in self._KINDS else "other"
        status = str(step.status) if step.status in self._STATUSES else "other"
        by_status = self.counts.setdefault(kind, {})
        by_status[status] = by_status.get(status, 0) + 1
        if step.id in self.by_step or len(self.by_step) < self.step_ids:
            by_status = self.by_step.setdefault(step.id, {})
            by_status[status] = by_status.get(status, 0) + 1
        else:
            self.by_step_others += 1
        self.count += 1
        self.last_seq = max(self.last_seq, seq)


class IncidentBuilder:
    """Builds the Incident from records fed one at a time, in log order, in bounded memory.

    The first record fed is taken as the header. `feed` takes a parsed record;
    `skip` counts one the caller did not parse because nothing here reads its type
    (see `runbook.report.reader`). `finish` turns what was fed into the Incident.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self.records = 0
        self.header: Mapping[str, Any] | None = None
        self.watch: sla.ClockWatch | None = None
        self.last: Mapping[str, Any] | None = None
        self.steps: list[StepReport] = []
        self.open: dict[str, StepReport] = {}
        self.unkept: set[str] = set()  # ids of open executions past `limits.steps`
        self.tally = _StepTally(limits.step_ids)
        self.timeline = _Timeline(limits.timeline_head, limits.timeline_tail)
        self.observer_errors: list[_Line] = []
        self.observer_errors_omitted = 0
        self.hosts_left, self.failures_left = limits.host_results, limits.failures
        self._stopped: str | None = None  # the clock the record being fed stopped, if any

    # -- feeding -----------------------------------------------------------------------

    def feed(self, record: Mapping[str, Any]) -> None:
        """Add one record (a parsed log line) to the story."""
        self.records += 1
        seq = record.get("seq")
        if type(seq) is not int:  # as sla.record_seq: not a bool, not anything else
            seq = -1
        if self.watch is None:
            self.header, self.watch = record, sla.ClockWatch(record)
            head = _data(record)
            who = claimed_vs_os(str(head.get("operator", "?")), _mapping(head.get("identity")))
            self.say(record, seq, f"run started by {who} on {head.get('host', '?')}")
            return
        self.last = record
        kind = record.get("type", "")
        if type(kind) is not str:  # a log from elsewhere: anything JSON can hold
            kind = str(kind)
        self._stopped = self.watch.feed(record) if kind in sla.CLOCK_TYPES else None
        handler = _HANDLERS.get(kind)
        if handler is not None:
            handler(self, record, _data(record), seq)
        elif self._stopped is not None:
            self.say(record, seq, f"{kind}: {_data(record).get('note', '')}".strip())

    def skip(self, kind: str) -> None:
        """Count a record of type `kind` that was not parsed (its type tells no part of
        the story: see `TOLD`)."""
        self.records += 1
        self.last = {"type": kind}

    def say(
        self,
        record: Mapping[str, Any],
        seq: int,
        text: str,
        step: StepReport | None = None,
        status: str = "",
    ) -> _Line:
        """Add a timeline line for `record` (at `seq`); it is kept wherever it falls if
        the record stopped an SLA clock."""
        line = (
            seq,
            str(record.get("ts", "")),
            step.phase if step else "",
            step.id if step else "",
            status,
            text,
            self._stopped is not None,
        )
        self.timeline.add(line)
        return line

    def observer_error(self, line: _Line) -> None:
        if len(self.observer_errors) < self.limits.observer_errors:
            self.observer_errors.append(line)
        else:
            self.observer_errors_omitted += 1

    # -- step executions ---------------------------------------------------------------

    def step(self, data: Mapping[str, Any], seq: int) -> StepReport:
        """The open execution of the step `data` names, started here if there is none."""
        sid = str(data.get("step", "?"))
        found = self.open.get(sid)
        if found is None:
            found = StepReport(sid, str(data.get("phase", "")), str(data.get("kind", "")), seq=seq)
            if len(self.open) >= self.limits.open_steps:  # a log only a generator writes
                self.close(next(iter(self.open.values())), seq)
            self.open[sid] = found
            if len(self.steps) < self.limits.steps:
                self.steps.append(found)
            else:
                self.unkept.add(sid)
                self.tally.start(seq)
        return found

    def close(self, step: StepReport, seq: int) -> None:
        """The execution ended (finished, skipped, or given up on): no record adds to it."""
        self.open.pop(step.id, None)
        if step.id in self.unkept:
            self.unkept.discard(step.id)
            self.tally.add(step, seq)

    def keeps(self, step: StepReport) -> bool:
        """Whether this execution is one the Incident lists (not one past `limits.steps`)."""
        return step.id not in self.unkept

    def new_attempt(self, step: StepReport) -> None:
        """The last attempt is the one that counts: let the previous one's go."""
        self.hosts_left += len(step.hosts)
        self.failures_left += len(step.failures)
        step.failures, step.hosts = [], {}
        step.failures_omitted = step.hosts_omitted = 0

    def add_failure(self, step: StepReport, failure: Failure) -> None:
        if not self.keeps(step):
            return
        if self.failures_left > 0:
            step.failures.append(failure)
            self.failures_left -= 1
        else:
            step.failures_omitted += 1

    def set_host(self, step: StepReport, result: HostResult, *, count_omitted: bool) -> None:
        """Record a host's outcome; one not kept for want of room is counted if asked
        (a host's result counts it, its failed expectation is counted as a failure)."""
        if not self.keeps(step):
            return
        if result.host in step.hosts:
            step.hosts[result.host] = result
        elif self.hosts_left > 0:
            step.hosts[result.host] = result
            self.hosts_left -= 1
        elif count_omitted:
            step.hosts_omitted += 1

    def add_confirmation(self, step: StepReport, confirmation: Confirmation) -> None:
        """Keep it; out of room, it replaces the last one kept (the latest decides)."""
        if not self.keeps(step):
            return
        if self.failures_left > 0:
            step.confirmations.append(confirmation)
            self.failures_left -= 1
        elif not step.confirmations:
            step.confirmations.append(confirmation)  # who let it run is never left out
        else:
            step.confirmations[-1] = confirmation
            step.confirmations_omitted += 1

    # -- the result ---------------------------------------------------------------------

    def finish(
        self,
        verification: Verification,
        targets: Mapping[str, sla.SlaTarget] | None = None,
    ) -> Incident:
        """The Incident told by what was fed; `targets` defaults to `sla.DEFAULT_TARGETS`.

        Raises ValueError if nothing was fed.
        """
        if self.header is None or self.watch is None:
            raise ValueError("an empty log describes no incident")
        for step in list(self.open.values()):
            self.close(step, step.seq)
        header, head = self.header, _data(self.header)
        book = _mapping(head.get("runbook"))
        marks = self.watch.clocks()
        severity = sla.severity_of([header])
        target = (sla.DEFAULT_TARGETS if targets is None else targets).get(severity)
        milestones = _milestones(marks)
        timeline = self.timeline.entries(milestones)
        identity = _mapping(head.get("identity"))
        last = self.last if self.records > 1 else None
        end = _data(last) if last and str(last.get("type")) in FINAL_TYPES else {}
        status = str(end.get("status", StepStatus.INTERRUPTED if end else StepStatus.INCOMPLETE))
        exit_code = end.get("exit_code")
        tally = self.tally
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
            steps=tuple(self.steps),
            timeline=tuple(timeline),
            observer_errors=tuple(
                TimelineEntry(*line[:6], milestones.get(line[0], ()))
                for line in self.observer_errors
            ),
            verification=verification,
            omitted=Omissions(
                limits=self.limits,
                steps=tally.count,
                steps_first_seq=tally.first_seq or 0,
                steps_last_seq=tally.last_seq,
                step_counts={
                    kind: dict(sorted(n.items())) for kind, n in sorted(tally.counts.items())
                },
                by_step={step: dict(sorted(n.items())) for step, n in tally.by_step.items()},
                by_step_others=tally.by_step_others,
                timeline=self.timeline.omitted,
                observer_errors=self.observer_errors_omitted,
                host_results=sum(s.hosts_omitted for s in self.steps),
                failures=sum(s.failures_omitted + s.confirmations_omitted for s in self.steps),
            ),
        )


def _on_started(
    b: IncidentBuilder, record: Mapping[str, Any], d: Mapping[str, Any], seq: int
) -> None:
    step = b.step(d, seq)
    step.executor, step.title = str(d.get("executor", "")), str(d.get("title", ""))
    step.started, step.seq, step.verifies = (
        str(record.get("ts", "")),
        seq,
        str(d.get("verifies", "")),
    )
    if step.kind == "action":
        b.say(record, seq, f"action started: {step.title or step.id}", step, "started")


def _on_attempt(
    b: IncidentBuilder, record: Mapping[str, Any], d: Mapping[str, Any], seq: int
) -> None:
    b.new_attempt(b.step(d, seq))


def _on_result(
    b: IncidentBuilder, record: Mapping[str, Any], d: Mapping[str, Any], seq: int
) -> None:
    step = b.step(d, seq)
    fields = d.get("fields")
    if isinstance(fields, Mapping) and fields.get("answer") is not None:
        step.answer = str(fields["answer"])
    hosts = d.get("hosts")
    if isinstance(hosts, Mapping) and hosts and b.keeps(step):
        for host, result in sorted(hosts.items()):
            result = result if isinstance(result, Mapping) else {}
            status = (
                StepStatus.PASSED
                if result.get("ok")
                else StepStatus.TIMEOUT
                if result.get("timed_out")
                else StepStatus.ERROR
            )
            found = HostResult(str(host), status, str(result.get("error") or ""), seq)
            b.set_host(step, found, count_omitted=True)
    if d.get("ok", True) is False:
        error = str(d.get("error") or "error")
        b.add_failure(step, Failure(seq, error))
        b.say(
            record, seq, f"attempt {d.get('attempt', '?')} error: {error}", step, StepStatus.ERROR
        )


def _on_expectation(
    b: IncidentBuilder, record: Mapping[str, Any], d: Mapping[str, Any], seq: int
) -> None:
    if d.get("passed", True):
        return
    step = b.step(d, seq)
    host, message = str(d.get("host") or ""), str(d.get("message", ""))
    b.add_failure(step, Failure(seq, message, str(d.get("expr", "")), host))
    if host:
        b.set_host(step, HostResult(host, StepStatus.FAILED, message, seq), count_omitted=False)
    where = f" on {host}" if host else ""
    text = f"expectation failed{where} `{d.get('expr', '?')}`: {message}"
    b.say(record, seq, text, step, StepStatus.FAILED)


def _on_confirmation(
    b: IncidentBuilder, record: Mapping[str, Any], d: Mapping[str, Any], seq: int
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
    b.add_confirmation(step, confirmation)
    verdict = "accepted" if confirmation.accepted else "declined"
    via = f" via {confirmation.method}" if confirmation.method else ""
    who = claimed_vs_os(confirmation.operator, identity)
    b.say(record, seq, f"{verdict} by {who}{via}: {confirmation.prompt}", step, verdict)


def _on_retry(
    b: IncidentBuilder, record: Mapping[str, Any], d: Mapping[str, Any], seq: int
) -> None:
    step = b.step(d, seq)
    delay = _seconds(d.get("delay"))
    wait = f" in {sla.format_duration(delay)}" if delay is not None else ""
    of = f" of {d['attempts']}" if d.get("attempts") else ""
    next_try = d.get("next_attempt", "?")
    text = f"{d.get('reason', 'failed')}, retrying{wait} (attempt {next_try}{of})"
    b.say(record, seq, text, step, "retry")


def _on_finished(
    b: IncidentBuilder, record: Mapping[str, Any], d: Mapping[str, Any], seq: int
) -> None:
    step = b.step(d, seq)
    step.status, step.finished, step.seq = str(d.get("status", "?")), str(record.get("ts", "")), seq
    step.elapsed, step.message = _seconds(d.get("elapsed")), str(d.get("message") or "")
    attempts = d.get("attempts")
    step.attempts = attempts if isinstance(attempts, int) and not isinstance(attempts, bool) else 0
    b.close(step, seq)
    took = f" in {sla.format_duration(step.elapsed)}" if step.elapsed is not None else ""
    why = f": {step.message}" if step.message and step.status != StepStatus.PASSED else ""
    answer = f" (answer: {step.answer})" if step.answer is not None else ""
    b.say(record, seq, f"{step.kind} {step.status}{took}{answer}{why}", step, step.status)


def _on_skipped(
    b: IncidentBuilder, record: Mapping[str, Any], d: Mapping[str, Any], seq: int
) -> None:
    step = b.step(d, seq)
    step.status, step.message, step.seq = StepStatus.SKIPPED, str(d.get("reason", "")), seq
    b.close(step, seq)
    b.say(record, seq, f"{step.kind} skipped: {step.message}", step, StepStatus.SKIPPED)


def _on_planned(
    b: IncidentBuilder, record: Mapping[str, Any], d: Mapping[str, Any], seq: int
) -> None:
    b.say(record, seq, f"would run: {d.get('summary', '?')}", b.step(d, seq), StepStatus.PLANNED)


def _on_observer(
    b: IncidentBuilder, record: Mapping[str, Any], d: Mapping[str, Any], seq: int
) -> None:
    line = b.say(record, seq, f"observer error: {d.get('message', '')}", None, StepStatus.ERROR)
    b.observer_error(line)


def _on_run_end(
    b: IncidentBuilder, record: Mapping[str, Any], d: Mapping[str, Any], seq: int
) -> None:
    if record.get("type") == RecordType.RUN_INTERRUPTED:
        during = f" during {d['step']}" if d.get("step") else ""
        text = f"run interrupted{during}: {d.get('reason', '')}"
        b.say(record, seq, text, None, StepStatus.INTERRUPTED)
        return
    reason = f": {d['reason']}" if d.get("reason") else ""
    status = str(d.get("status", "?"))
    b.say(
        record, seq, f"run finished {status} (exit {d.get('exit_code', '?')}){reason}", None, status
    )


_Handler = Callable[[IncidentBuilder, Mapping[str, Any], Mapping[str, Any], int], None]
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

TOLD = frozenset({*_HANDLERS, RecordType.INCIDENT_MARK})
"""The record types the Incident is told from (and the header). In a verified log
(one record per seq) a record of any other type can change nothing in it."""


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
    limits: Limits = DEFAULT_LIMITS,
) -> Incident:
    """The Incident told by `records` (verified or not: `verification` says which).

    `targets` defaults to `sla.DEFAULT_TARGETS`; raises ValueError for no records.
    """
    if not records:
        raise ValueError("an empty log describes no incident")
    builder = IncidentBuilder(limits)
    for record in records:
        builder.feed(record)
    return builder.finish(verify_records(records), targets)
