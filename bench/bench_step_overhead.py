"""Per-step overhead of a local check: `runbook run` of N `true` checks against the process itself.

The workload is a runbook of N steps (default 500), each `check: {shell: {argv: [true]}}`,
run by a real `runbook run` with its fsync'd incident log (group commit on). The cost of one
step is `(T(N steps) - T(1 step)) / (N - 1)`, so start-up, the header and the final record
cancel out; the process itself is measured the same way, as a Python loop that spawns
`sh -c true` with its output captured, N times and once. The overhead per step is the
difference. Issue 15's goal: <= 1.5 ms per step beyond the process.

The machine this runs on is shared, so every round measures all four in a row (paired),
several rounds are taken, and the median round is reported together with the load average.
One more run with a signing key counts the durable points: the writer signs the last record
of every commit, so signed records per step = fsyncs per step. Run:

    .venv/bin/python bench/bench_step_overhead.py [--steps N] [--rounds R] [--compare DIR]

`--compare DIR` times another copy of the engine in the same rounds (DIR holds its `runbook`
package, put first on PYTHONPATH), e.g. an older commit exported with `git archive`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

HEADER = """\
apiVersion: runbook/v1
kind: Runbook
metadata: {name: many-steps, title: Many local checks, severity: P3}
steps:
"""


def runbook_text(steps: int) -> str:
    body = "".join(
        f"  - {{id: s{i}, phase: detect, check: {{shell: {{argv: ['true']}}}}}}\n"
        for i in range(steps)
    )
    return HEADER + body


def baseline_argv(steps: int) -> list[str]:
    """The process itself: spawn `sh -c true` N times from Python, output captured."""
    code = (
        "import subprocess\n"
        f"for _ in range({steps}):\n"
        "    subprocess.run(['sh', '-c', 'true'], capture_output=True, check=True)\n"
    )
    return [sys.executable, "-c", code]


def timed(argv: list[str], env: Mapping[str, str], cwd: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of one whole process, its children included in the CPU."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def fsync_latency(directory: Path, samples: int = 20) -> float:
    """Median seconds to append a ~300-byte line and fsync it, in the log's directory."""
    path = directory / "fsync-probe"
    times = []
    with path.open("ab") as file:
        for _ in range(samples):
            start = time.perf_counter()
            file.write(b"x" * 300 + b"\n")
            file.flush()
            os.fsync(file.fileno())
            times.append(time.perf_counter() - start)
    path.unlink()
    return statistics.median(times)


def signing_key(directory: Path) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = directory / "signing-key"
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    path.chmod(0o600)
    return path


def commits_per_step(run: list[str], env: Mapping[str, str], cwd: Path, steps: int) -> float:
    """Signed records (one per commit) per step, header and final record left out."""
    key = signing_key(cwd)
    logs = Path(tempfile.mkdtemp(prefix="signed-logs-", dir=cwd))
    subprocess.run(
        [*run, "--log-dir", str(logs), "--signing-key", str(key)],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        check=True,
    )
    (log,) = logs.glob("*.jsonl")
    with log.open("rb") as file:
        signed = sum(1 for line in file if line.startswith(b'{"auth":'))
    return (signed - 2) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description="Per-step overhead of local checks.")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--compare", type=Path, help="another engine's tree to time alongside")
    args = parser.parse_args()
    n = args.steps
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")}
    env["RUNBOOK_OPERATOR"] = "bench"
    with tempfile.TemporaryDirectory(prefix="bench-steps-") as tmp:
        cwd = Path(tmp)
        (cwd / "many.yaml").write_text(runbook_text(n))
        (cwd / "one.yaml").write_text(runbook_text(1))
        runbook = [sys.executable, "-m", "runbook", "run"]
        logs = ["--log-dir", str(cwd / "logs")]
        many = [*runbook, str(cwd / "many.yaml"), *logs]
        one = [*runbook, str(cwd / "one.yaml"), *logs]
        engines: dict[str, Mapping[str, str]] = {"runbook": env}
        if args.compare:
            path = [str(args.compare.resolve()), env.get("PYTHONPATH", "")]
            engines["compare"] = {**env, "PYTHONPATH": os.pathsep.join(filter(None, path))}
        cases: list[tuple[str, list[str], Mapping[str, str]]] = [
            ("process N", baseline_argv(n), env),
            ("process 1", baseline_argv(1), env),
        ]
        for name, engine_env in engines.items():
            cases += [(f"{name} N", many, engine_env), (f"{name} 1", one, engine_env)]
            timed(one, engine_env, cwd)  # warm the bytecode and page caches
        rounds: list[dict[str, float]] = []
        loads = [os.getloadavg()[0]]
        for number in range(1, args.rounds + 1):
            got = {name: timed(argv, case_env, cwd) for name, argv, case_env in cases}
            loads.append(os.getloadavg()[0])
            per: dict[str, float] = {"fsync": fsync_latency(cwd)}
            for name in ("process", *engines):
                per[name] = (got[f"{name} N"][0] - got[f"{name} 1"][0]) / (n - 1)
                per[f"{name}_cpu"] = (got[f"{name} N"][1] - got[f"{name} 1"][1]) / (n - 1)
            for name in engines:
                per[f"{name}_overhead"] = per[name] - per["process"]
                per[f"{name}_overhead_cpu"] = per[f"{name}_cpu"] - per["process_cpu"]
            rounds.append(per)
            shown = ", ".join(
                f"{name} {per[name] * 1e3:.2f} ms (overhead {per[f'{name}_overhead'] * 1e3:.2f} "
                f"wall, {per[f'{name}_overhead_cpu'] * 1e3:.2f} CPU)"
                for name in engines
            )
            print(
                f"round {number}: per step: process {per['process'] * 1e3:.2f} ms, {shown} "
                f"(load {loads[-1]:.1f}, one fsync {per['fsync'] * 1e3:.2f} ms)"
            )
        fsyncs = {
            name: round(commits_per_step(many[:-2], engine_env, cwd, n), 2)
            for name, engine_env in engines.items()
        }
    median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    summary: dict[str, Any] = {
        "steps": n,
        "rounds": args.rounds,
        "ms_per_step_process": round(median["process"] * 1e3, 3),
        "ms_per_step_process_cpu": round(median["process_cpu"] * 1e3, 3),
        "ms_fsync": round(median["fsync"] * 1e3, 3),
    }
    for name in engines:
        overheads = [r[f"{name}_overhead"] for r in rounds]
        summary[name] = {
            "ms_per_step": round(median[name] * 1e3, 3),
            "ms_overhead_wall": round(median[f"{name}_overhead"] * 1e3, 3),
            "ms_overhead_wall_range": [
                round(min(overheads) * 1e3, 3),
                round(max(overheads) * 1e3, 3),
            ],
            "ms_overhead_cpu": round(median[f"{name}_overhead_cpu"] * 1e3, 3),
            "fsyncs_per_step": fsyncs[name],
        }
    summary["load_1min"] = [round(x, 1) for x in loads]
    summary["goal_ms_overhead"] = 1.5
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
