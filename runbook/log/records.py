"""The incident log's vocabulary: record types, outcomes, and what each record's data holds.

Every module that writes or reads the log names record types and statuses through
`RecordType` and `StepStatus`, and `docs/incident-log.md` documents exactly these
(`tests/log/test_vocabulary.py` holds the doc and real runs to them). Members of a
`StrEnum` are their strings: they compare equal, hash alike and serialise to the same
JSON, so using them changes no byte of the log, and a reader may test a value read
from a file (a plain `str`) against them directly.

The `TypedDict`s describe the `data` of each record type as the engine writes it;
`DATA` maps each type to its shape. Readers stay tolerant of logs from other versions
(missing keys are left out), so they read `Mapping[str, Any]` and use these as the
reference, not as a runtime check.
"""

# No `from __future__ import annotations` here: on Python 3.11, TypedDict cannot see
# `NotRequired` inside string annotations and would mark every key required.

from enum import StrEnum
from typing import Any, NotRequired, TypedDict

GENESIS = "0" * 64
"""The `prev` of the header: the chain starts from 64 zeros."""

AUTH_KEY = "auth"
"""The top-level key of a signed record's `RecordAuth` (beside `data`, `prev`, `seq`, ...).

Only signed logs have it (`runbook.log.signing`); it sorts before every other key.
"""


class RecordType(StrEnum):
    """The `type` of a record; the header is seq 0 and a final type closes the run."""

    HEADER = "header"
    STEP_STARTED = "step.started"
    STEP_ATTEMPT = "step.attempt"
    STEP_HOSTS_STARTED = "step.hosts_started"
    STEP_HOST_FINISHED = "step.host_finished"
    STEP_RESULT = "step.result"
    STEP_EXPECTATION = "step.expectation"
    STEP_CONFIRMATION = "step.confirmation"
    STEP_RETRY = "step.retry"
    STEP_OUTPUT = "step.output"
    STEP_PLANNED = "step.planned"
    STEP_SKIPPED = "step.skipped"
    STEP_RESTORED = "step.restored"
    STEP_FINISHED = "step.finished"
    INCIDENT_MARK = "incident.mark"
    OBSERVER_ERROR = "observer.error"
    RUN_FINISHED = "run.finished"
    RUN_INTERRUPTED = "run.interrupted"


FINAL_TYPES = frozenset({RecordType.RUN_FINISHED, RecordType.RUN_INTERRUPTED})
"""A log whose last record is not one of these is truncated (crashed or still running)."""


class StepStatus(StrEnum):
    """How a step or a run ended: `step.finished`/`run.finished` `status`, and the `counts` keys.

    `TIMEOUT` is written as "timeout" (the log format since version 1). `INTERRUPTED`
    is the outcome of a run stopped by SIGINT, which the log records as a
    `run.interrupted` record. `INCOMPLETE` is never written: readers (reports,
    `log list`) say it of a step or run the log shows no end for.
    """

    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    TIMEOUT = "timeout"
    DECLINED = "declined"
    SKIPPED = "skipped"
    PLANNED = "planned"
    UNKNOWN = "unknown"
    INTERRUPTED = "interrupted"
    INCOMPLETE = "incomplete"


FAILED_STATUSES = frozenset(
    {
        StepStatus.FAILED,
        StepStatus.ERROR,
        StepStatus.TIMEOUT,
        StepStatus.DECLINED,
        StepStatus.INTERRUPTED,
    }
)
"""Outcomes that count as a failure: `steps.<id>.failed`, `on_failure`, `--resume`."""

DRY_RUN_STATUSES = frozenset({StepStatus.PLANNED, StepStatus.UNKNOWN})
"""Outcomes of a step a dry-run only planned: nothing ran, nothing is known of its result."""


# -- the data of each record type ---------------------------------------------------------


class RunbookInfo(TypedDict):
    """`header.runbook`: which runbook ran, and the sha256 of its file."""

    name: str
    title: str
    severity: str
    path: str
    sha256: str
    owners: list[str]
    tags: list[str]


class Versions(TypedDict):
    """`header.versions`: runbook, Python, and every plugin ('distribution version')."""

    runbook: str
    python: str
    plugins: dict[str, str]


class ResumedFrom(TypedDict):
    """`header.resumed_from`: the log a resumed run continues, linked by its final hash."""

    log: str
    run_id: str
    final_hash: str
    last_seq: int


class Identity(TypedDict):
    """`identity` of the header and of every confirmation: who the OS says is running.

    `operator` beside it is only claimed (`--operator`, `$RUNBOOK_OPERATOR`, `$USER`...);
    `claimed_from` says which. `os_user`/`os_uid` are the kernel's real uid and its
    passwd name; `os_euid`/`os_euser` appear when the effective uid differs. `sudo_user`,
    `sudo_uid` and `ssh_client` are what sudo and sshd put in the environment, which
    the process could also have been given by hand.
    """

    claimed_from: str
    os_user: str
    os_uid: int
    os_euid: NotRequired[int]
    os_euser: NotRequired[str]
    sudo_user: NotRequired[str]
    sudo_uid: NotRequired[str]
    ssh_client: NotRequired[str]


class SigningInfo(TypedDict):
    """`header.signing`: the ed25519 key whose signatures the log carries."""

    alg: str
    public_key: str
    fingerprint: str


class RecordAuth(TypedDict):
    """A signed record's top-level `auth` (`AUTH_KEY`): see `runbook.log.signing`."""

    alg: str
    key: str
    sig: str


class HeaderData(TypedDict):
    format: int
    run_id: str
    runbook: RunbookInfo
    params: dict[str, Any]
    operator: str
    identity: Identity
    host: str
    dry_run: bool
    started: str
    versions: Versions
    argv: list[str]
    severity: NotRequired[str]
    targets: NotRequired[dict[str, Any]]
    inventory: NotRequired[str]
    host_key_check_off: NotRequired[list[str]]
    resumed_from: NotRequired[ResumedFrom]
    scenario: NotRequired[str]
    signing: NotRequired[SigningInfo]


class StepStartedData(TypedDict):
    step: str
    phase: str
    kind: str
    executor: str
    title: str
    verifies: NotRequired[str]
    always: NotRequired[bool]


class StepAttemptData(TypedDict):
    step: str
    attempt: int
    summary: str
    call: dict[str, Any]
    timeout: float
    limit: NotRequired[str]


class StepHostsStartedData(TypedDict):
    """A fan-out is about to start these hosts (one `serial` batch, or all of them)."""

    step: str
    attempt: int
    hosts: list[str]


class StepHostFinishedData(TypedDict):
    """One host of a fan-out finished: its result, written as it finishes.

    `--resume` never runs a host of an action again once this record exists for it;
    `restored_from` marks a host carried over from the interrupted run (not run here).
    """

    step: str
    attempt: int
    host: str
    ok: bool
    error: str | None
    timed_out: bool
    elapsed: float
    fields: dict[str, Any]
    restored_from: NotRequired[str]


class HostResultData(TypedDict):
    """One host's result inside `step.result.hosts`."""

    ok: bool
    error: str | None
    timed_out: bool
    elapsed: float
    fields: dict[str, Any]


class StepResultData(TypedDict):
    step: str
    attempt: int
    ok: bool
    error: str | None
    timed_out: bool
    elapsed: float
    fields: dict[str, Any]
    hosts: NotRequired[dict[str, HostResultData]]


class StepExpectationData(TypedDict):
    step: str
    attempt: int
    expr: str
    passed: bool
    message: str
    host: NotRequired[str]


class StepConfirmationData(TypedDict):
    step: str
    prompt: str
    operator: str
    identity: Identity
    require: str | None
    accepted: bool
    answer: str | None
    method: str
    rerun: NotRequired[bool]


class StepRetryData(TypedDict):
    step: str
    delay: float
    next_attempt: int
    attempts: int
    reason: StepStatus


class StepOutputData(TypedDict):
    step: str
    text: str
    show_lines: int


class StepPlannedData(TypedDict):
    step: str
    phase: str
    kind: str
    executor: str
    summary: str
    call: dict[str, Any] | None
    unknown: str | None
    when: str | None
    condition: str
    gated: str | None
    verify: list[str]


class StepSkippedData(TypedDict):
    step: str
    phase: str
    kind: str
    reason: str
    undefined: NotRequired[str]


class StepRestoredData(TypedDict):
    step: str
    phase: str
    kind: str
    status: StepStatus
    from_run: str
    reason: str


class StepFinishedData(TypedDict):
    step: str
    phase: str
    kind: str
    executor: str
    status: StepStatus
    elapsed: float
    attempts: int
    message: str


class IncidentMarkData(TypedDict):
    mark: str
    step: str


class ObserverErrorData(TypedDict):
    step: str
    message: str


class RunFinishedData(TypedDict):
    status: StepStatus
    exit_code: int
    reason: str
    elapsed: float
    counts: dict[str, int]
    dry_run: bool


class RunInterruptedData(TypedDict):
    reason: str
    step: str | None
    counts: dict[str, int]


DATA: dict[RecordType, type[Any]] = {
    RecordType.HEADER: HeaderData,
    RecordType.STEP_STARTED: StepStartedData,
    RecordType.STEP_ATTEMPT: StepAttemptData,
    RecordType.STEP_HOSTS_STARTED: StepHostsStartedData,
    RecordType.STEP_HOST_FINISHED: StepHostFinishedData,
    RecordType.STEP_RESULT: StepResultData,
    RecordType.STEP_EXPECTATION: StepExpectationData,
    RecordType.STEP_CONFIRMATION: StepConfirmationData,
    RecordType.STEP_RETRY: StepRetryData,
    RecordType.STEP_OUTPUT: StepOutputData,
    RecordType.STEP_PLANNED: StepPlannedData,
    RecordType.STEP_SKIPPED: StepSkippedData,
    RecordType.STEP_RESTORED: StepRestoredData,
    RecordType.STEP_FINISHED: StepFinishedData,
    RecordType.INCIDENT_MARK: IncidentMarkData,
    RecordType.OBSERVER_ERROR: ObserverErrorData,
    RecordType.RUN_FINISHED: RunFinishedData,
    RecordType.RUN_INTERRUPTED: RunInterruptedData,
}
"""The shape of `data` for each record type (see `docs/incident-log.md`)."""
