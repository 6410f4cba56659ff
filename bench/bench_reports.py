"""Report generation for a 100k-record log (issue 6 goal: under 2 s for postmortem and json).

Whole-process wall time of `runbook report LOG --format F -o FILE`, median of 3,
on a log shaped like a long real run: repeated step cycles (started, attempt,
result, expectation, finished) across the five phases, written with the real
JournalWriter. Verification of the file is included, as a user would pay it.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runbook.log.journal import JournalWriter
from runbook.run.secrets import Masker

RECORDS = 100_000
PHASES = ("detect", "triage", "mitigate", "resolve", "post-incident")


def _cycle(i: int) -> list[tuple[str, dict[str, object]]]:
    step, phase = f"s{i}", PHASES[(i * len(PHASES)) // (RECORDS // 5)]
    kind = "action" if phase == "mitigate" and i % 3 == 0 else "check"
    passed = i % 7 != 0
    return [
        ("step.started", {"step": step, "phase": phase, "kind": kind, "executor": "shell"}),
        (
            "step.attempt",
            {
                "step": step,
                "attempt": 1,
                "summary": f"$ check {i}",
                "call": {"argv": ["check", str(i)]},
            },
        ),
        (
            "step.result",
            {
                "step": step,
                "attempt": 1,
                "ok": True,
                "elapsed": 0.01,
                "fields": {"exit_code": 0 if passed else 1, "stdout": "ok"},
            },
        ),
        (
            "step.expectation",
            {
                "step": step,
                "attempt": 1,
                "expr": "exit_code == 0",
                "passed": passed,
                "message": "" if passed else "assert 1 == 0",
            },
        ),
        (
            "step.finished",
            {
                "step": step,
                "phase": phase,
                "kind": kind,
                "executor": "shell",
                "status": "passed" if passed else "failed",
                "elapsed": 0.01,
                "attempts": 1,
                "message": "",
            },
        ),
    ]


def write_log(directory: Path) -> Path:
    header = {
        "run_id": "bench",
        "runbook": {"name": "bench", "title": "Bench", "severity": "P1"},
        "params": {},
        "operator": "bench",
        "host": "bench",
        "dry_run": False,
        "started": "2026-11-25T00:00:00Z",
        "versions": {},
    }
    with JournalWriter.create(directory, "bench", "bench", header, Masker()) as writer:
        for start in range(0, (RECORDS - 2) // 5, 200):
            batch = [
                e for i in range(start, min(start + 200, (RECORDS - 2) // 5)) for e in _cycle(i)
            ]
            writer.append_many(batch)
        writer.append("run.finished", {"status": "passed", "exit_code": 0, "counts": {}})
        return writer.path


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log = write_log(Path(tmp))
        print(f"log: {sum(1 for _ in log.open())} records, {log.stat().st_size / 1e6:.1f} MB")
        for fmt in ("postmortem", "json", "junit", "html"):
            times = []
            for _ in range(3):
                start = time.perf_counter()
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "runbook",
                        "report",
                        str(log),
                        "--format",
                        fmt,
                        "-o",
                        str(Path(tmp) / f"out.{fmt}"),
                    ],
                    check=True,
                )
                times.append(time.perf_counter() - start)
            print(
                f"report --format {fmt:10} median {statistics.median(times):5.2f} s "
                f"(min {min(times):.2f}, max {max(times):.2f})"
            )


if __name__ == "__main__":
    main()
