"""`runbook report` on a long log: records/s and peak RSS per format (issue 15 goal:
every format on a 1M-record log at >= 150k records/s in <= 200 MiB).

Each format runs as a real process (`runbook report LOG --format F -o FILE`, so
verification of the file is included, as a user pays it); its peak RSS is the
child's `ru_maxrss` from `os.wait4`, its rate the log's records over the whole
process's wall time. The log is written directly, with the journal's canonical
JSON and hash chain (fast: no fsync, no masking), and checked with `verify_log`
before it is used. Shapes:

- `mixed` (default): rounds of ~1,000 records that exercise every bounded part of the
  report: a 250-host fan-out check with 5 failing hosts, 100 step cycles (started,
  attempt, result, expectation, finished; one in seven fails) under repeating ids, a
  check polled 50 times before it passes (attempt, result, failed expectation,
  retry), a confirmed mitigate action and its output.
- `cycles`: the shape issue 6's benchmark used, 200k distinct steps at 1M records
  (five records each, one in seven failing): the most steps a log of that size holds.

    .venv/bin/python bench/bench_reports.py [--records N] [--shape mixed|cycles|both]
                                            [--repeat R] [--formats F,...]

Prints the machine's load average before and after: the numbers move with it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runbook.log.records import GENESIS
from runbook.log.verify import canonical_json, verify_log

FORMATS = ("postmortem", "json", "junit", "html")
PHASES = ("detect", "triage", "mitigate", "resolve", "post-incident")
Event = tuple[str, dict[str, Any]]


def _result(step: str, attempt: int, code: int, stdout: str) -> Event:
    fields = {"elapsed": 0.0123, "exit_code": code, "pid": 4242, "stderr": "", "stdout": stdout}
    return "step.result", {
        "attempt": attempt,
        "elapsed": 0.0123,
        "error": None,
        "fields": fields,
        "ok": True,
        "step": step,
        "timed_out": False,
    }


def _expectation(step: str, attempt: int, passed: bool, host: str = "") -> Event:
    data = {
        "attempt": attempt,
        "expr": "exit_code == 0",
        "message": "exit_code == 0" if passed else "assert 1 == 0 (exit_code)",
        "passed": passed,
        "step": step,
    }
    return "step.expectation", ({**data, "host": host} if host else data)


def _attempt(step: str, attempt: int, argv: list[str]) -> Event:
    summary = "$ " + " ".join(argv)
    call = {"argv": argv}
    return "step.attempt", {
        "attempt": attempt,
        "call": call,
        "step": step,
        "summary": summary,
        "timeout": 300.0,
    }


def _started(step: str, phase: str, kind: str) -> Event:
    return "step.started", {
        "executor": "shell",
        "kind": kind,
        "phase": phase,
        "step": step,
        "title": "",
    }


def _finished(step: str, phase: str, kind: str, status: str, attempts: int = 1) -> Event:
    return "step.finished", {
        "attempts": attempts,
        "elapsed": 0.0151,
        "executor": "shell",
        "kind": kind,
        "message": "" if status == "passed" else "assert 1 == 0 (exit_code)",
        "phase": phase,
        "status": status,
        "step": step,
    }


def cycle(step: str, phase: str, kind: str, passed: bool) -> list[Event]:
    """One step run once: started, attempt, result, expectation, finished."""
    return [
        _started(step, phase, kind),
        _attempt(step, 1, ["check", step]),
        _result(step, 1, 0 if passed else 1, "ok\n" if passed else ""),
        _expectation(step, 1, passed),
        _finished(step, phase, kind, "passed" if passed else "failed"),
    ]


def fanout(step: str, hosts: int, failing: int) -> list[Event]:
    """A check over `hosts` hosts, the last `failing` of them failing its expectation."""
    names = [f"web{n:04d}" for n in range(hosts)]
    bad = set(names[hosts - failing :])
    events = [
        _started(step, "triage", "check"),
        _attempt(step, 1, ["uptime"]),
        ("step.hosts_started", {"attempt": 1, "hosts": names, "step": step}),
    ]
    host_fields = {"exit_code": 0, "stderr": "", "stdout": " 12:00:01 up 41 days\n"}
    for name in names:
        fields = {**host_fields, "exit_code": int(name in bad)}
        events.append(
            (
                "step.host_finished",
                {
                    "attempt": 1,
                    "elapsed": 0.08,
                    "error": None,
                    "fields": fields,
                    "host": name,
                    "ok": True,
                    "step": step,
                    "timed_out": False,
                },
            )
        )
    result = {name: {"elapsed": 0.08, "error": None, "ok": True} for name in names}
    events.append(
        ("step.result", {"attempt": 1, "hosts": result, "ok": True, "step": step, "elapsed": 0.4})
    )
    events += [_expectation(step, 1, False, name) for name in sorted(bad)]
    events.append(_finished(step, "triage", "check", "failed" if bad else "passed"))
    return events


def poll(step: str, tries: int) -> list[Event]:
    """A check retried `tries` times before it passes (each retry two timeline lines)."""
    events = [_started(step, "resolve", "check")]
    for attempt in range(1, tries + 1):
        last = attempt == tries
        events += [
            _attempt(step, attempt, ["curl", "-fsS", "http://127.0.0.1/health"]),
            _result(step, attempt, 0 if last else 7, "ok\n" if last else ""),
            _expectation(step, attempt, last),
        ]
        if not last:
            retry = {"attempts": tries, "delay": 2.0, "next_attempt": attempt + 1}
            events.append(("step.retry", {**retry, "reason": "failed", "step": step}))
    events.append(_finished(step, "resolve", "check", "passed", tries))
    return events


def mitigate(step: str) -> list[Event]:
    """A confirmed action with a line of output."""
    confirmation = {
        "accepted": True,
        "answer": "yes",
        "method": "--yes",
        "operator": "alice",
        "prompt": "Restart checkout?",
        "require": None,
        "step": step,
    }
    events = cycle(step, "mitigate", "action", True)
    events.insert(1, ("step.confirmation", confirmation))
    output = {"show_lines": 12, "step": step, "text": "deployment.apps/checkout restarted\n"}
    events.insert(4, ("step.output", output))
    return events


def mixed_events(body: int) -> Iterator[Event]:
    """Rounds of ~1,000 records (see the module docstring), cut at `body` records."""
    made, rounds = 0, 0
    while made < body:
        events = fanout("uptime", 250, 5)
        events += [
            e for n in range(100) for e in cycle(f"check-{n}", PHASES[n % 5], "check", n % 7 != 0)
        ]
        events += poll("wait-healthy", 50)
        events += mitigate("restart")
        yield from events[: body - made]
        made += len(events)
        rounds += 1


def cycles_events(body: int) -> Iterator[Event]:
    """`body // 5` distinct steps of five records (issue 6's shape), then filler checks."""
    steps = body // 5
    for n in range(steps):
        phase = PHASES[(n * len(PHASES)) // max(steps, 1)]
        kind = "action" if phase == "mitigate" and n % 3 == 0 else "check"
        yield from cycle(f"s{n}", phase, kind, n % 7 != 0)
    for n in range(body - steps * 5):
        yield _expectation(f"s{n}", 1, True)


SHAPES = {"mixed": mixed_events, "cycles": cycles_events}


def _ts(seq: int) -> str:
    """10 ms apart from midnight: 1M records span under three hours of one day."""
    ms = seq * 10
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, ms = divmod(rest, 1000)
    return f"2026-11-25T{hours:02d}:{minutes:02d}:{seconds:02d}.{ms:03d}000Z"


def write_log(path: Path, records: int, shape: str = "mixed") -> Path:
    """A complete, chain-valid log of exactly `records` records (header and run.finished
    included), sealed the way `runbook.log.journal` seals each line."""
    header = {
        "dry_run": False,
        "format": 1,
        "host": "bench",
        "identity": {"claimed_from": "--operator", "os_uid": 1000, "os_user": "bench"},
        "operator": "bench",
        "params": {"service": "checkout"},
        "run_id": "bench",
        "runbook": {"name": "bench", "severity": "P1", "sha256": "0" * 64, "title": "Bench"},
        "started": _ts(0),
        "versions": {"runbook": "bench"},
    }
    events: Iterator[Event] = SHAPES[shape](records - 2)
    finished = {"counts": {}, "exit_code": 1, "status": "failed", "reason": "checks failed"}
    prev, lines, seq = GENESIS, [], 0
    with open(path, "w", encoding="ascii") as file:
        for part in ([("header", header)], events, [("run.finished", finished)]):
            for kind, data in part:
                body = canonical_json(
                    {"data": data, "prev": prev, "seq": seq, "ts": _ts(seq), "type": kind}
                )
                prev = hashlib.sha256(body.encode("ascii")).hexdigest()
                lines.append(f'{body[:-1]},"sha256":"{prev}"}}\n')
                seq += 1
                if len(lines) >= 10_000:
                    file.write("".join(lines))
                    lines.clear()
        file.write("".join(lines))
    verdict = verify_log(path)
    assert verdict.ok and verdict.records == records, verdict
    return path


def measure(argv: list[str]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, peak RSS in KiB) of one process.

    The peak is the child's `ru_maxrss`; Linux counts in it the RSS of the process
    that forked it, which this small script keeps far below a report's.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} exited {os.waitstatus_to_exitcode(status)}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def run_format(log: Path, fmt: str, out: Path) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, peak RSS in KiB) of one `runbook report` process."""
    return measure(
        [sys.executable, "-m", "runbook", "report", str(log), "--format", fmt, "-o", str(out)]
    )


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} {five:.1f} {fifteen:.1f} on {os.cpu_count()} CPUs"


def bench_shape(tmp: Path, shape: str, records: int, repeat: int, formats: list[str]) -> None:
    start = time.perf_counter()
    log = write_log(tmp / f"{shape}.jsonl", records, shape)
    made = time.perf_counter() - start
    size = log.stat().st_size
    print(
        f"\n{shape}: {records:,} records, {size / 2**20:.0f} MiB "
        f"({size / records:.0f} bytes/record), written in {made:.1f} s"
    )
    print("  process        median wall  records/s   CPU s  records/CPU-s   peak RSS  output")
    verify = [measure([sys.executable, "-m", "runbook", "log", "verify", str(log)])]
    _row("log verify", records, verify, "")
    for fmt in formats:
        out = tmp / f"out.{fmt}"
        runs = [run_format(log, fmt, out) for _ in range(repeat)]
        _row(f"report {fmt}", records, runs, f"{out.stat().st_size / 2**20:.1f} MiB")


def _row(name: str, records: int, runs: list[tuple[float, float, int]], output: str) -> None:
    """Median wall and CPU time of the runs, and the highest peak RSS among them."""
    wall = statistics.median(w for w, _, _ in runs)
    cpu = statistics.median(c for _, c, _ in runs)
    peak = max(r for _, _, r in runs)
    print(
        f"  {name:17} {wall:7.2f} s {records / wall:10,.0f} {cpu:7.2f} {records / cpu:12,.0f}"
        f"   {peak / 1024:5.0f} MiB  {output}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Time `runbook report` on a generated log.")
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--shape", choices=[*SHAPES, "both"], default="both")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--formats", default=",".join(FORMATS))
    args = parser.parse_args()
    shapes = list(SHAPES) if args.shape == "both" else [args.shape]
    print(f"before: {_load()}")
    with tempfile.TemporaryDirectory() as tmp:
        for shape in shapes:
            bench_shape(Path(tmp), shape, args.records, args.repeat, args.formats.split(","))
    print(f"\nafter: {_load()}")


if __name__ == "__main__":
    main()
