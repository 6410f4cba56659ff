"""Plan of a generated 200-step runbook (goal < 100 ms), measured in-process.

Loading (YAML + schema) is timed separately from planning so a regression is
attributed to the right layer.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from runbook.load.loader import load_runbook
from runbook.load.params import resolve_params
from runbook.plan.planner import build_plan
from runbook.session import Session

STEPS = 200


def generate(path: Path) -> None:
    lines = [
        "apiVersion: runbook/v1",
        "kind: Runbook",
        "metadata: {name: big, title: Big generated runbook, severity: P2}",
        "params:",
        "  service: {type: string, default: api, pattern: '^[a-z]+$'}",
        "  url: {type: string, default: 'http://127.0.0.1:9/health'}",
        "steps:",
    ]
    phases = ["detect", "triage", "mitigate", "resolve"]
    for i in range(STEPS):
        phase = phases[i * len(phases) // STEPS]
        if i % 3 == 0:
            body = "check: {http: {url: '{{ params.url }}', timeout: 2}}, expect: ['status == 200']"
        elif i % 3 == 1:
            body = "check: {shell: {argv: [systemctl, status, '{{ params.service }}']}}"
        else:
            body = (
                "action: {shell: {command: 'systemctl restart {{ params.service }}'}}, "
                f"when: 'not steps.s{i - 1}.passed'"
            )
        lines.append(f"  - {{id: s{i}, phase: {phase}, {body}}}")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    specs = Session().executors
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.yaml"
        generate(path)
        loads, plans = [], []
        for _ in range(7):
            t0 = time.perf_counter()
            rb = load_runbook(path, specs)
            t1 = time.perf_counter()
            params = resolve_params(rb, {})
            build_plan(rb, params, specs, params)
            t2 = time.perf_counter()
            loads.append((t1 - t0) * 1000)
            plans.append((t2 - t1) * 1000)
    print(f"load {STEPS}-step runbook: median {statistics.median(loads):6.1f} ms")
    print(
        f"plan {STEPS}-step runbook: median {statistics.median(plans):6.1f} ms "
        f"(first {plans[0]:.1f} ms incl. jinja2 import)"
    )


if __name__ == "__main__":
    main()
