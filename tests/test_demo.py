"""The README's first command: the embedded demo runs the real service-outage runbook."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support import logs_in

from runbook.journal import read_log, verify_log


def test_demo_tour_detects_restarts_and_verifies(tmp_path, cli_env):
    env = {**cli_env, "RUNBOOK_DEMO_DIR": str(tmp_path / "demo")}
    demo = Path(sys.executable).parent / "runbook-demo"
    proc = subprocess.run(
        [str(demo), "tour", "--log-dir", str(tmp_path / "logs")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "assert 503 == 200 (status)" in out
    assert "INCIDENT" in out and "RESOLVED" in out
    assert "ok:" in out and "chain intact" in out
    log = logs_in(tmp_path / "logs")[0]
    assert verify_log(log).ok
    finished = {
        r["data"]["step"]: r["data"]["status"]
        for r in read_log(log)
        if r["type"] == "step.finished"
    }
    assert finished["health"] == "failed"
    assert finished["restart-demo"] == "passed"
    assert finished["recovered"] == "passed"
    confirmations = [r for r in read_log(log) if r["type"] == "step.confirmation"]
    assert confirmations and confirmations[0]["data"]["method"] == "--yes"
