"""Continue an interrupted or failed run from its incident log.

The old log is the only source of truth, together with the logs it resumed in
turn (each header links to its predecessor by path and final hash, back to the
first run). Replaying them gives what finished, which is restored and never
executed again: above all, an action that started and finished (passed, failed,
errored or timed out) is never repeated. A fan-out action is followed host by
host: hosts with a `step.host_finished` record are not run again, hosts that
never started run without asking, and hosts that started without finishing may
or may not have changed the world, so re-running them (or an action not known
host by host) needs the operator: a typed confirmation on a terminal or
`--rerun-unfinished STEP`, never `--yes`. The new run gets a new log whose
header links to the old one by its final hash.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from runbook.contract import StepResult
from runbook.errors import InvalidInput, JournalCorrupt
from runbook.load.model import Runbook
from runbook.log.records import DRY_RUN_STATUSES, FAILED_STATUSES, RecordType, StepStatus

MAX_CHAIN = 1000
"""Resumes of resumes followed back before giving up (a loop of links is refused)."""


@dataclass(frozen=True)
class RestoredStep:
    """What the old log says a step ended with."""

    status: StepStatus
    kind: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    output: str = ""
    message: str = ""
    elapsed: float = 0.0
    attempts: int = 0


@dataclass(frozen=True)
class UnfinishedAction:
    """An action an interrupted run started and did not finish.

    `finished_hosts` finished there and are never run again (their results are
    taken as they are). `in_flight` started without a finish record; None when
    the log cannot say host by host (the action did not fan out, or host names
    were masked), so the whole action may have taken effect.
    """

    summary: str
    finished_hosts: Mapping[str, StepResult] = field(default_factory=dict)
    in_flight: tuple[str, ...] | None = None

    @property
    def needs_confirmation(self) -> bool:
        """Whether running what is left could repeat something that may have happened."""
        return self.in_flight is None or bool(self.in_flight)


@dataclass(frozen=True)
class ResumePoint:
    log_path: Path
    run_id: str
    final_hash: str
    last_seq: int
    params: Mapping[str, Any]
    done: Mapping[str, RestoredStep]
    unfinished: Mapping[str, UnfinishedAction]
    targets: Mapping[str, Any] = field(default_factory=dict)
    chain: tuple[Path, ...] = ()

    def header(self) -> dict[str, Any]:
        return {
            "resumed_from": {
                "log": str(self.log_path),
                "run_id": self.run_id,
                "final_hash": self.final_hash,
                "last_seq": self.last_seq,
            }
        }

    def check_run(self, targets: Mapping[str, Any], rerun: Iterable[str]) -> None:
        """Refuse (exit 2) a resumed run on other hosts, or a `--rerun-unfinished` of nothing.

        `targets` is what the new header will record (resolved hosts per target,
        masked like the log), compared with the old header's.
        """
        old, new = dict(self.targets), json.loads(json.dumps(dict(targets)))
        if old != new:
            changes = [
                f"target '{name}': {_hosts_of(old.get(name))} then, {_hosts_of(new.get(name))} now"
                for name in sorted(set(old) | set(new))
                if old.get(name) != new.get(name)
            ]
            raise InvalidInput(
                f"--resume {self.log_path}: the targets resolve differently now "
                f"({'; '.join(changes)}); a resumed run finishes the same hosts (give the "
                "same --inventory)"
            )
        for step in rerun:
            if step in self.unfinished:
                continue
            why = (
                f"it finished ({self.done[step].status}) and is never run again"
                if step in self.done
                else "it did not start there"
            )
            raise InvalidInput(
                f"--rerun-unfinished {step}: {self.log_path} has no unfinished action "
                f"'{step}': {why}"
            )


def _hosts_of(entry: Any) -> str:
    if not isinstance(entry, Mapping):
        return "(none)"
    hosts = entry.get("hosts")
    return "[" + ", ".join(str(h) for h in hosts) + "]" if isinstance(hosts, list) else "(none)"


def _output_of(fields: Mapping[str, Any]) -> str:
    for key in ("stdout", "text", "answer", "message"):
        value = fields.get(key)
        if isinstance(value, str):
            return value
    return ""


def _check_header(header: Mapping[str, Any], runbook: Runbook, path: Path) -> None:
    meta = header.get("runbook") or {}
    if meta.get("name") != runbook.name:
        raise InvalidInput(
            f"--resume {path}: the log is from runbook '{meta.get('name')}', not '{runbook.name}'"
        )
    if meta.get("sha256") != runbook.sha256:
        raise InvalidInput(
            f"--resume {path}: {runbook.path} changed since that run (sha256 "
            f"{str(meta.get('sha256'))[:12]} then, {runbook.sha256[:12]} now); resuming would "
            "mix two different procedures"
        )
    if header.get("dry_run"):
        raise InvalidInput(f"--resume {path}: that run was a dry-run; nothing to resume")


def _verified(path: Path, what: str) -> tuple[list[dict[str, Any]], str]:
    """The records of a log that verifies up to where it stops, and its final hash."""
    from runbook.log.journal import read_log
    from runbook.log.verify import verify_log

    verdict = verify_log(path)
    if verdict.tampered:
        raise JournalCorrupt(f"{what} {path}: the log does not verify: {verdict.reason}")
    records = read_log(path)[: verdict.records]
    if not records or records[0].get("type") != RecordType.HEADER:
        raise InvalidInput(f"{what} {path}: not an incident log (no header)")
    for record in records:
        problem = _shape_problem(record)
        if problem:
            raise InvalidInput(
                f"{what} {path}: seq {record.get('seq')} ({record.get('type')}): {problem}; "
                "the log cannot be resumed safely"
            )
    return records, verdict.final_hash


_TEXT, _NUMBER, _MAPPING, _LIST = (str,), (int, float), (Mapping,), (list,)
# What replaying reads from each record's `data`, by type: a key missing or None is fine
# (older logs), any other type means the log says something resume cannot act on.
_SHAPES: dict[str, dict[str, tuple[type, ...]]] = {
    RecordType.HEADER: {
        "runbook": _MAPPING,
        "params": _MAPPING,
        "targets": _MAPPING,
        "resumed_from": _MAPPING,
        "dry_run": (bool,),
    },
    RecordType.STEP_RESULT: {"step": _TEXT, "fields": _MAPPING},
    RecordType.STEP_ATTEMPT: {"step": _TEXT},
    RecordType.STEP_HOSTS_STARTED: {"step": _TEXT, "hosts": _LIST},
    RecordType.STEP_HOST_FINISHED: {
        "step": _TEXT,
        "host": _TEXT,
        "fields": _MAPPING,
        "elapsed": _NUMBER,
    },
    RecordType.STEP_RESTORED: {"step": _TEXT},
    RecordType.STEP_FINISHED: {
        "step": _TEXT,
        "attempts": (int,),
        "elapsed": _NUMBER,
    },
    RecordType.RUN_FINISHED: {"status": _TEXT},
}


def _shape_problem(record: Mapping[str, Any]) -> str | None:
    """Why `record` cannot be replayed (a field of the wrong type), or None."""
    data = record.get("data")
    if not isinstance(data, Mapping):
        return f"data is {type(data).__name__}, not a mapping"
    for key, types in _SHAPES.get(str(record.get("type")), {}).items():
        value = data.get(key)
        if value is None:
            continue
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            names = " or ".join(t.__name__ for t in types)
            return f"'{key}' is {type(value).__name__}, not {names}"
    return None


def _predecessor(link: Mapping[str, Any], newer: Path) -> Path:
    """The log a resumed run continued: as its header names it, else beside the newer log."""
    named = Path(str(link.get("log", "")))
    for candidate in (named, newer.parent / named.name):
        try:
            if candidate.is_file():
                return candidate
        except (OSError, ValueError):  # a name no file can have (NUL, too long)
            continue
    raise InvalidInput(
        f"--resume {newer}: it continues {named} (run {link.get('run_id')}), which is not "
        "there; that log records what finished before and is needed to resume: put it back "
        f"(or beside {newer.name})"
    )


class _Log(NamedTuple):
    path: Path
    records: list[dict[str, Any]]
    final_hash: str


def _chain(path: Path, runbook: Runbook) -> list[_Log]:
    """The log and every log it resumed, oldest first, each verified and linked by hash."""
    chain: list[_Log] = []
    current, link = path, None
    while True:
        records, final_hash = _verified(current, "--resume")
        if link is not None and final_hash != link.get("final_hash"):
            raise JournalCorrupt(
                f"--resume {path}: {current} ends with {final_hash[:12]}, not with "
                f"{str(link.get('final_hash'))[:12]} as the run that resumed it recorded"
            )
        _check_header(records[0]["data"], runbook, current)
        chain.append(_Log(current, records, final_hash))
        link = records[0]["data"].get("resumed_from")
        if not isinstance(link, Mapping):
            return list(reversed(chain))
        if len(chain) >= MAX_CHAIN:
            raise InvalidInput(f"--resume {path}: more than {MAX_CHAIN} resumed runs in a row")
        current = _predecessor(link, current)


def load_resume(path: Path, runbook: Runbook, log_dirs: Sequence[Path] = ()) -> ResumePoint:
    """Read and check the old log (and those it resumed); raise exit-2/exit-5 errors for
    logs that cannot be resumed. `log_dirs` (besides the log's own directory) are searched
    for runs that already resumed it: resuming it again could repeat what they did."""
    if not path.is_file():
        raise InvalidInput(f"--resume: no such log file: {path}")
    chain = _chain(path, runbook)
    records = chain[-1].records
    last = records[-1]
    finished = last["type"] == RecordType.RUN_FINISHED
    if finished and last["data"].get("status") == StepStatus.PASSED:
        raise InvalidInput(f"--resume {path}: that run finished successfully; nothing to resume")
    _refuse_a_second_branch(chain, runbook, [path.parent, *log_dirs])
    done, unfinished = _replay([log.records for log in chain], runbook, path)
    header = records[0]["data"]
    return ResumePoint(
        log_path=path,
        run_id=str(header.get("run_id", "")),
        final_hash=str(last["sha256"]),
        last_seq=int(last["seq"]),
        params=dict(header.get("params") or {}),
        done=done,
        unfinished=unfinished,
        targets=dict(header.get("targets") or {}),
        chain=tuple(log.path for log in chain),
    )


def _status(value: Any, step: str, path: Path) -> StepStatus:
    try:
        return StepStatus(value)
    except ValueError:
        raise InvalidInput(
            f"--resume {path}: step '{step}' finished with status {value!r}, which this "
            "version of runbook does not know; resume it with the version that wrote the log"
        ) from None


def _host_result(data: Mapping[str, Any]) -> StepResult:
    fields = dict(data.get("fields") or {})
    return StepResult(
        ok=bool(data.get("ok")),
        fields=fields,
        output=_output_of(fields),
        error=None if data.get("error") is None else str(data.get("error")),
        timed_out=bool(data.get("timed_out")),
        elapsed=float(data.get("elapsed") or 0.0),
    )


class _Action:
    """An action's progress while the logs are replayed: started, and host by host."""

    def __init__(self) -> None:
        self.summary = ""
        self.attempted_here = False  # an attempt began in the log being replayed
        self.hosts_known = False
        self.finished: dict[str, StepResult] = {}
        self.open: set[str] = set()  # started, and no finish record since

    def attempt(self, summary: str) -> None:
        self.summary, self.attempted_here = summary, True

    def hosts_started(self, hosts: Any) -> None:
        self.hosts_known = True
        self.open.update(str(h) for h in hosts or ())

    def host_finished(self, data: Mapping[str, Any]) -> None:
        self.hosts_known = True
        host = str(data.get("host", ""))
        self.finished[host] = _host_result(data)
        self.open.discard(host)

    def unfinished(self) -> UnfinishedAction:
        names = set(self.finished) | self.open
        if not self.hosts_known or any("*" in name for name in names):
            return UnfinishedAction(self.summary)  # masked names cannot be matched to hosts
        in_flight = tuple(sorted(self.open - set(self.finished)))
        return UnfinishedAction(self.summary, dict(self.finished), in_flight)


def _replay(
    logs: list[list[dict[str, Any]]], runbook: Runbook, path: Path
) -> tuple[dict[str, RestoredStep], dict[str, UnfinishedAction]]:
    """Finished steps to restore, and actions that started without finishing.

    An action is done once an attempt of it started and its step finished, in one
    log; a finish without an attempt in that log (declined, could not render, no
    time left) leaves it as an earlier log had it. A check that failed and ended
    the run runs again: that is what resuming a failed run is for.
    """
    kinds = {s.id: s.kind for s in runbook.steps}
    policies = {s.id: s.on_failure for s in runbook.steps}
    results: dict[str, Mapping[str, Any]] = {}
    done: dict[str, RestoredStep] = {}
    actions: dict[str, _Action] = {}
    for records in logs:
        for action in actions.values():
            action.attempted_here = False
        for rec in records:
            data, kind = rec["data"], rec["type"]
            step = str(data.get("step", ""))
            if step not in kinds:
                continue  # a verify check (judged with its action) or another runbook's step
            if kind == RecordType.STEP_RESULT:
                results[step] = data.get("fields") or {}
            elif kind == RecordType.STEP_ATTEMPT and kinds[step] == "action":
                done.pop(step, None)  # a `goto` brought it round again
                actions.setdefault(step, _Action()).attempt(str(data.get("summary", "")))
            elif kind == RecordType.STEP_HOSTS_STARTED and step in actions:
                actions[step].hosts_started(data.get("hosts"))
            elif kind == RecordType.STEP_HOST_FINISHED and step in actions:
                actions[step].host_finished(data)
            elif kind == RecordType.STEP_RESTORED and step not in done:
                status = _status(data.get("status"), step, path)
                done[step] = RestoredStep(status=status, kind=str(data.get("kind", "")))
            elif kind == RecordType.STEP_FINISHED:
                status = _status(data.get("status"), step, path)
                if status in DRY_RUN_STATUSES:
                    continue
                if kinds[step] == "action":
                    if step not in actions or not actions[step].attempted_here:
                        continue
                    del actions[step]
                elif status in FAILED_STATUSES and policies[step] == "abort":
                    continue
                fields = results.get(step, {})
                done[step] = RestoredStep(
                    status=status,
                    kind=str(data.get("kind", "")),
                    fields=fields,
                    output=_output_of(fields),
                    message=str(data.get("message", "")),
                    elapsed=float(data.get("elapsed") or 0.0),
                    attempts=int(data.get("attempts") or 0),
                )
    unfinished = {sid: a.unfinished() for sid, a in actions.items() if sid not in done}
    return done, unfinished


def _refuse_a_second_branch(chain: list[_Log], runbook: Runbook, dirs: Iterable[Path]) -> None:
    """Refuse when another run resumed a log of this chain (not the next one in it) and ran
    actions: resuming here would not know what that run did, and could do it again."""
    children: dict[str, list[Path]] = {}
    for directory in dict.fromkeys(Path(d).resolve() for d in dirs):
        for candidate in sorted(directory.glob("*.jsonl")) if directory.is_dir() else []:
            link = _resumed_from(candidate)
            if link is not None:
                children.setdefault(link, []).append(candidate.resolve())
    in_chain = {log.path.resolve() for log in chain}
    actions = {s.id for s in runbook.steps if s.kind == "action"}
    pending = [log.final_hash for log in chain]
    seen: set[str] = set()
    acted: list[Path] = []
    while pending:
        parent = pending.pop()
        if parent in seen:
            continue
        seen.add(parent)
        for child in children.get(parent, []):
            if child in in_chain:
                continue
            records, child_hash = _verified(child, "--resume: a run that resumed this chain,")
            if any(
                r["type"] == RecordType.STEP_ATTEMPT and r["data"].get("step") in actions
                for r in records
            ):
                acted.append(child)
            pending.append(child_hash)
    if acted:
        path = chain[-1].path
        raise InvalidInput(
            f"--resume {path}: another run already resumed it (or a run it continues) and ran "
            f"actions ({', '.join(str(p) for p in sorted(acted))}); resume the latest log of "
            "that run instead, so that nothing it did is repeated"
        )


def _resumed_from(path: Path) -> str | None:
    """The final hash a log's header says it resumed from (None: not a resumed run)."""
    try:
        with open(path, "rb") as file:
            header = json.loads(file.readline())
    except (OSError, ValueError):
        return None
    data = header.get("data") if isinstance(header, dict) else None
    link = data.get("resumed_from") if isinstance(data, dict) else None
    return str(link.get("final_hash")) if isinstance(link, Mapping) else None


def merge_params(point: ResumePoint, given: Mapping[str, str]) -> dict[str, str]:
    """The old run's params (secrets must be given again), refusing contradictions."""
    merged = {k: str(v) for k, v in point.params.items() if v is not None and v != "***"}
    for key, value in given.items():
        if key in merged and merged[key] != value:
            raise InvalidInput(
                f"--resume: param '{key}' was {merged[key]!r} in the interrupted run, "
                f"now {value!r}; a resumed run keeps its params"
            )
        merged[key] = value
    return merged
