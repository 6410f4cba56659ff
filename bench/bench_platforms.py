"""Import and first-call overhead of the kubernetes, aws_rds and postgres executors.

Measured in fresh subprocesses (median of N): importing each plugin module
(must not import its SDK), importing the SDK itself (what the first step that
needs it pays, on top of the network call), and `runbook plan` of the shipped
Kubernetes + RDS + PostgreSQL runbooks, which must leave `kubernetes`, `boto3`
and `psycopg` unimported (the script exits non-zero if one is imported).
The plugin-import numbers are mostly `runbook` itself (pluggy, the executor
types); the plugins add only their schemas.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = 7
SDKS = ("kubernetes", "boto3", "psycopg")


def median_ms(code: str) -> float:
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def plan_imports() -> dict[str, bool]:
    """Which SDKs a `runbook plan` of the platform runbooks imports (all must be False)."""
    code = (
        "import sys, runpy\n"
        "from runbook.cli.main import main\n"
        "for rb in ('rollback', 'database-connection-failure', 'performance-degradation'):\n"
        "    try:\n"
        "        main(['plan', 'runbooks/' + rb + '.yaml', '-p', 'health_url=http://h/x',"
        " '-p', 'db_host=h'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"print('@@' + __import__('json').dumps({{m: m in sys.modules for m in {SDKS!r}}}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    line = next(x for x in out.stdout.splitlines() if x.startswith("@@"))
    return dict(json.loads(line[2:]))


def main() -> None:
    base = median_ms("pass")
    rows = [("python -c pass", base)]
    for plugin in ("kubernetes", "aws_rds", "postgres"):
        rows.append(
            (
                f"import runbook_plugins.{plugin}",
                median_ms(f"import runbook_plugins.{plugin}") - base,
            )
        )
    for _sdk, stmt in (
        ("kubernetes", "import kubernetes.client, kubernetes.config"),
        ("boto3", "import boto3; boto3.session.Session().client('rds', region_name='us-east-1')"),
        ("psycopg", "import psycopg"),
    ):
        rows.append((f"first use: {stmt}", median_ms(stmt) - base))
    for name, ms in rows:
        print(f"{name:<90} {ms:8.1f} ms")
    imported = plan_imports()
    print(f"`runbook plan` of the 3 platform runbooks imports SDKs: {imported}")
    if any(imported.values()):
        raise SystemExit("an SDK was imported by `runbook plan`")


if __name__ == "__main__":
    main()
