"""`runbook validate` of generated 1k/2k/4k/12k-step runbooks: the time must grow linearly.

A runbook this long is unusual, but a check that scans every step for every step
(references, goto targets, YAML marks) turns a 12,000-step file from seconds into
a minute, so the cost per step is printed beside each total: it should stay flat.
Each file is validated in a fresh process (`runbook validate PATH`, as a pre-commit
hook runs it), best of three; the goal is 12k steps under 3 s. The steps mix what
real runbooks hold: templates, `when` on earlier steps, `goto`, targets
and `verify`, in a file that stays under the 1 MiB limit at 12k steps.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = (1_000, 2_000, 4_000, 12_000)
RUNS = 3
GOAL_12K = 3.0


def generate(path: Path, steps: int) -> None:
    lines = [
        "apiVersion: runbook/v1",
        "kind: Runbook",
        "metadata: {name: big, title: Big generated runbook, severity: P2}",
        "params: {svc: {type: string, default: api}}",
        "targets: {w: {transport: local}}",
        "steps:",
    ]
    phases = ("detect", "triage", "mitigate", "resolve")
    for i in range(steps):
        phase = phases[i * len(phases) // steps]
        body = (
            "check: {shell: {argv: [echo, '{{params.svc}}']}}",
            f"check: {{shell: {{argv: [id], target: w}}}},when: steps.s{i - 1}.passed",
            "check: {shell: {argv: [id]}},on_failure: goto s0",
            "action: {shell: {argv: [id]}},verify: [{check: {shell: {argv: [id]}}}]",
        )[i % 4]
        lines.append(f"- {{id: s{i},phase: {phase},{body}}}")
    path.write_text("\n".join(lines) + "\n")


def validate_seconds(path: Path) -> tuple[float, float]:
    """Best wall time of RUNS, and the CPU time (user + system) of that run."""
    best, cpu = float("inf"), 0.0
    for _ in range(RUNS):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "runbook", "validate", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise SystemExit(f"validate failed on {path}:\n{done.stdout}{done.stderr}")
        if elapsed < best:
            best = elapsed
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return best, cpu


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for steps in SIZES:
            path = Path(tmp) / f"steps-{steps}.yaml"
            generate(path, steps)
            seconds, cpu = validate_seconds(path)
            size = path.stat().st_size / 1024
            print(
                f"validate {steps:6d} steps ({size:5.0f} KiB): {seconds:6.2f} s "
                f"(cpu {cpu:5.2f} s, {seconds / steps * 1e6:5.0f} us/step)"
            )
            if steps == 12_000:
                verdict = "within" if seconds < GOAL_12K else "OVER"
                print(f"12k steps: {verdict} the {GOAL_12K:.0f} s goal")


if __name__ == "__main__":
    main()
