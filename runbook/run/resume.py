"""Continue an interrupted or failed run from its incident log.

The old log is the only source of truth: what finished there is restored (and
never executed again — above all, a finished mutating action is never
repeated); an action that started but has no finish record may or may not have
changed the world, so the operator must confirm before it runs again. The new
run gets a new log whose header links to the old one by its final hash.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runbook.errors import InvalidInput, JournalCorrupt
from runbook.load.model import Runbook

FAILED = ("failed", "error", "timeout", "declined", "interrupted")


@dataclass(frozen=True)
class RestoredStep:
    """What the old log says a step ended with."""

    status: str
    kind: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    output: str = ""
    message: str = ""
    elapsed: float = 0.0
    attempts: int = 0


@dataclass(frozen=True)
class ResumePoint:
    log_path: Path
    run_id: str
    final_hash: str
    last_seq: int
    params: Mapping[str, Any]
    done: Mapping[str, RestoredStep]
    unfinished_actions: Mapping[str, str]

    def header(self) -> dict[str, Any]:
        return {
            "resumed_from": {
                "log": str(self.log_path),
                "run_id": self.run_id,
                "final_hash": self.final_hash,
                "last_seq": self.last_seq,
            }
        }


def _output_of(fields: Mapping[str, Any]) -> str:
    for key in ("stdout", "text", "answer", "message"):
        value = fields.get(key)
        if isinstance(value, str):
            return value
    return ""


def _check_header(header: Mapping[str, Any], runbook: Runbook, path: Path) -> None:
    meta = header.get("runbook", {})
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


def load_resume(path: Path, runbook: Runbook) -> ResumePoint:
    """Read and check the old log; raise exit-2/exit-5 errors for logs that cannot be resumed."""
    from runbook.log.journal import read_log, verify_log

    if not path.is_file():
        raise InvalidInput(f"--resume: no such log file: {path}")
    verdict = verify_log(path)
    if verdict.tampered:
        raise JournalCorrupt(f"--resume {path}: the log does not verify: {verdict.reason}")
    records = read_log(path)[: verdict.records or None]
    if not records or records[0].get("type") != "header":
        raise InvalidInput(f"--resume {path}: not an incident log (no header)")
    _check_header(records[0]["data"], runbook, path)
    last = records[-1]
    if last["type"] == "run.finished" and last["data"].get("status") == "passed":
        raise InvalidInput(f"--resume {path}: that run finished successfully; nothing to resume")
    done, unfinished = _steps_from(records, runbook)
    return ResumePoint(
        log_path=path,
        run_id=str(records[0]["data"].get("run_id", "")),
        final_hash=str(last["sha256"]),
        last_seq=int(last["seq"]),
        params=dict(records[0]["data"].get("params", {})),
        done=done,
        unfinished_actions=unfinished,
    )


def _steps_from(
    records: list[dict[str, Any]], runbook: Runbook
) -> tuple[dict[str, RestoredStep], dict[str, str]]:
    """Finished steps to restore, and actions that started without finishing."""
    results: dict[str, Mapping[str, Any]] = {}
    attempts: dict[str, str] = {}
    done: dict[str, RestoredStep] = {}
    policies = {s.id: s.on_failure for s in runbook.steps}
    for rec in records:
        data, kind = rec["data"], rec["type"]
        step = str(data.get("step", ""))
        if kind == "step.result":
            results[step] = data.get("fields") or {}
        elif kind == "step.attempt":
            attempts[step] = str(data.get("summary", ""))
        elif kind == "step.finished" and step in policies:
            ended_the_run = data.get("status") in FAILED and policies[step] == "abort"
            if data.get("status") in ("planned", "unknown") or ended_the_run:
                continue  # run it again: that is what resuming a failed run is for
            fields = results.get(step, {})
            done[step] = RestoredStep(
                status=str(data.get("status")),
                kind=str(data.get("kind", "")),
                fields=fields,
                output=_output_of(fields),
                message=str(data.get("message", "")),
                elapsed=float(data.get("elapsed") or 0.0),
                attempts=int(data.get("attempts") or 0),
            )
    actions = {s.id for s in runbook.steps if s.kind == "action"}
    unfinished = {
        sid: summary for sid, summary in attempts.items() if sid in actions and sid not in done
    }
    return done, unfinished


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
