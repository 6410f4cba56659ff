"""Cold start of `runbook --help` and `runbook validate`, against `python -c pass`.

Whole-process wall time, best and median of N runs (subprocess), so import
cost is what is measured. Goals (DESIGN.md): --help <= 50 ms, validate of one
runbook <= 200 ms, no SDK (boto3, kubernetes, paramiko) imported by either.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = 15


def timed(argv: list[str]) -> tuple[float, float]:
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        samples.append((time.perf_counter() - start) * 1000)
    return min(samples), statistics.median(samples)


def main() -> None:
    py = sys.executable
    cases = {
        "python -c pass": [py, "-c", "pass"],
        "runbook --help": [py, "-m", "runbook", "--help"],
        "runbook validate service-outage.yaml": [
            py,
            "-m",
            "runbook",
            "validate",
            str(ROOT / "runbooks" / "service-outage.yaml"),
        ],
    }
    for name, argv in cases.items():
        best, median = timed(argv)
        print(f"{name:40} best {best:6.1f} ms   median {median:6.1f} ms")


if __name__ == "__main__":
    main()
