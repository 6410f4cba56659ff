"""Benchmark `runbook log verify`: records/s on a 100k-record log of ~300-byte records.

DESIGN.md budgets verify at >= 500k records/s on this workload (re-serialising
each record manages ~110k/s; hashing the bytes as written ~660k/s). Run:

    .venv/bin/python bench/bench_verify.py [--records N] [--repeat R]

It writes the log with the real JournalWriter (append_many, so generation is
not fsync-bound), then reports the median of R timed verify_log calls.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from runbook.log.journal import JournalWriter, verify_log
from runbook.run.secrets import Masker

BATCH = 1000


def _event(seq: int) -> tuple[str, dict[str, object]]:
    """A step.result shaped like the runner's; ~300 bytes once sealed."""
    return "step.result", {
        "step": f"step-{seq % 40}",
        "attempt": 1,
        "ok": True,
        "fields": {"exit_code": 0, "stdout": "ok"},
    }


def write_log(log_dir: Path, records: int) -> Path:
    """A complete log of `records` records (header and run.finished included)."""
    header = {"run_id": "bench", "runbook": {"name": "bench"}, "dry_run": False}
    with JournalWriter.create(log_dir, "bench", "bench", header, Masker()) as writer:
        body = records - 2
        for start in range(0, body, BATCH):
            writer.append_many([_event(seq) for seq in range(start, min(start + BATCH, body))])
        writer.append("run.finished", {"status": "passed", "exit_code": 0})
        return writer.path


def main() -> None:
    parser = argparse.ArgumentParser(description="Time verify_log on a generated log.")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        path = write_log(Path(tmp), args.records)
        written = time.perf_counter() - start
        size = path.stat().st_size
        timings = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            result = verify_log(path)
            timings.append(time.perf_counter() - start)
            assert result.ok and result.records == args.records, result
    median = statistics.median(timings)
    print(
        f"records: {args.records}  bytes/record: {size / args.records:.0f}  "
        f"written with append_many({BATCH}) at {args.records / written:,.0f} records/s"
    )
    print(
        f"verify_log median of {args.repeat}: {median * 1000:.1f} ms  "
        f"= {args.records / median:,.0f} records/s (budget >= 500,000)"
    )


if __name__ == "__main__":
    main()
