"""Cold start of `runbook --help`, `validate` and a one-step `run`, each against `python -c pass`.

Whole-process cost, so import time is what is measured. The machine is shared,
so every round runs `python -c pass` and each command back to back (paired, in
a rotating order) and the result is the median of the per-round ratios, for
wall time and for CPU time (user + system of the child, which load disturbs
less). Bytecode is cached as a wheel install has it (in a private
PYTHONPYCACHEPREFIX), and runbook's own cache directory is a private one,
warmed first; "validate, cold cache" starts each run with an empty one.

Goals (issue 15): validate <= 6x, a one-step run <= 7x, --help stays ~3x;
DESIGN.md: --help <= 50 ms, validate <= 200 ms, no SDK imported by either.
Usage: bench_startup.py [ROUNDS]   (default 21)
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 21
ONE_STEP = """\
apiVersion: runbook/v1
kind: Runbook
metadata: {name: one-step, title: One step, severity: P3}
steps:
  - {id: ok, phase: detect, check: {shell: {argv: ["true"]}}}
"""


def sample(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(wall, cpu) seconds of one run of `argv`, CPU from the child's rusage."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 2):  # --help without a verb is 0; a failed check is not
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def runbook_command() -> list[str]:
    """The installed `runbook` script next to this Python (as users run it), else `-m`."""
    script = Path(sys.executable).parent / "runbook"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "runbook"]


def main(rounds: int = ROUNDS) -> None:
    work = Path(tempfile.mkdtemp(prefix="runbook-bench-startup-"))
    try:
        (work / "one.yaml").write_text(ONE_STEP, encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(
            PYTHONPYCACHEPREFIX=str(work / "pycache"),
            RUNBOOK_CACHE_DIR=str(work / "cache"),
            RUNBOOK_LOG_DIR=str(work / "logs"),
            RUNBOOK_OPERATOR="bench",
            NO_COLOR="1",
        )
        rb = runbook_command()
        baseline = [sys.executable, "-c", "pass"]
        cases: dict[str, list[str]] = {
            "runbook --help": [*rb, "--help"],
            "runbook validate service-outage.yaml": [
                *rb,
                "validate",
                str(ROOT / "runbooks" / "service-outage.yaml"),
            ],
            "runbook run (one shell step)": [*rb, "run", str(work / "one.yaml")],
        }
        validate = cases["runbook validate service-outage.yaml"]
        cold_name = "validate, cold cache"
        cold_dir = work / "cold"
        for argv in [baseline, *cases.values()]:  # compile bytecode, fill runbook's cache
            sample(argv, env, work)
        load_before = os.getloadavg()[0]
        base: list[tuple[float, float]] = []
        ratios: dict[str, list[tuple[float, float]]] = {n: [] for n in [*cases, cold_name]}
        absolute: dict[str, list[tuple[float, float]]] = {n: [] for n in ratios}
        names = list(ratios)
        for i in range(rounds):
            shutil.rmtree(work / "logs", ignore_errors=True)
            for name in names[i % len(names) :] + names[: i % len(names)]:
                argv, run_env = cases.get(name, validate), env
                if name == cold_name:  # an empty cache: the first run after an install
                    shutil.rmtree(cold_dir, ignore_errors=True)
                    run_env = {**env, "RUNBOOK_CACHE_DIR": str(cold_dir)}
                b = sample(baseline, env, work)
                c = sample(argv, run_env, work)
                base.append(b)
                absolute[name].append(c)
                ratios[name].append((c[0] / b[0], c[1] / max(b[1], 1e-4)))
        load_after = os.getloadavg()[0]
        wall = statistics.median(w for w, _ in base) * 1000
        cpu = statistics.median(c for _, c in base) * 1000
        print(
            f"{rounds} paired rounds; load average {load_before:.1f} -> {load_after:.1f} "
            f"on {os.cpu_count()} CPUs"
        )
        print(f"{'python -c pass':38} wall {wall:6.1f} ms         cpu {cpu:6.1f} ms")
        for name in names:
            w = statistics.median(r[0] for r in ratios[name])
            c = statistics.median(r[1] for r in ratios[name])
            ms = statistics.median(a[0] for a in absolute[name]) * 1000
            cms = statistics.median(a[1] for a in absolute[name]) * 1000
            print(f"{name:38} wall {ms:6.1f} ms {w:4.1f}x   cpu {cms:6.1f} ms {c:4.1f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else ROUNDS)
