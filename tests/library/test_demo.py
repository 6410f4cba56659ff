"""The README's first command: the embedded demo runs the real service-outage runbook.

The default tour is the systemd act: a real unit managed by docker-systemctl-replacement,
its log read by the real journalctl from a journal file made by systemd-journal-remote.
`--act demo` (and the fallback when those tools are missing) is the embedded supervisor.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from runbook_demo import cli, journal, units
from support.helpers import logs_in

from runbook.log.journal import read_log, verify_log


def _tour(tmp_path: Path, cli_env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**cli_env, "RUNBOOK_DEMO_DIR": str(tmp_path / "demo")}
    demo = Path(sys.executable).parent / "runbook-demo"
    return subprocess.run(
        [str(demo), "tour", "--log-dir", str(tmp_path / "logs"), *extra],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _check_incident(out: str, log: Path, restart_step: str) -> list[dict[str, Any]]:
    """What every act shows: failing check with operands, gated restart, re-check, verify."""
    assert "assert 503 == 200 (status)" in out
    assert "INCIDENT" in out and "RESOLVED" in out
    assert "ok:" in out and "chain intact" in out
    assert verify_log(log).ok
    records = list(read_log(log))
    finished = {
        r["data"]["step"]: r["data"]["status"] for r in records if r["type"] == "step.finished"
    }
    assert finished["health"] == "failed"
    assert finished[restart_step] == "passed"
    assert finished[f"{restart_step}.verify-1"] == "passed"
    assert finished["recovered"] == "passed"
    confirmations = [r for r in records if r["type"] == "step.confirmation"]
    assert confirmations and confirmations[0]["data"]["method"] == "--yes"
    return records


def _services_on(port: int) -> list[int]:
    """Pids of demo services started for this port (other tests may run their own)."""
    wanted = f"runbook_demo.service\0{port}\0".encode()
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and wanted in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_demo_tour_checks_restarts_a_systemd_unit_and_reads_its_journal(tmp_path, cli_env):
    missing = units.missing_tools()
    if missing:
        pytest.skip("systemd act tools missing: " + "; ".join(missing))
    proc = _tour(tmp_path, cli_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "docker-systemctl-replacement" in out and "systemd-journal-remote" in out
    assert "platform=systemd" in out and "falling back" not in out
    records = _check_incident(out, logs_in(tmp_path / "logs")[0], "restart")
    results = {r["data"]["step"]: r["data"] for r in records if r["type"] == "step.result"}
    status = results["service-status"]["fields"]
    assert status["active_state"] == "active" and status["main_pid"] > 0
    restarted = results["restart"]["fields"]
    assert restarted["active_state"] == "active"
    assert restarted["main_pid"] not in (0, status["main_pid"])  # a new process
    attempts = [r["data"] for r in records if r["type"] == "step.attempt"]
    calls = {a["step"]: a["call"].get("argv") for a in attempts if a.get("call")}
    assert calls["restart"] == ["systemctl", "restart", "demo-api"]
    assert calls["recent-logs"][0] == "journalctl"
    logs = results["recent-logs"]["fields"]
    assert logs["count_errors"] >= 1
    errors = [e for e in logs["entries"] if e["priority"] == 3]
    assert all(e["unit"] == "demo-api.service" for e in logs["entries"])
    assert any("database connection pool exhausted" in e["message"] for e in errors)
    assert "demo-api: ERROR database connection pool exhausted" in out
    assert "demo-api.service - runbook demo API" in out  # systemctl3's status text
    root = tmp_path / "demo" / "systemd"
    assert (root / "journal" / "demo.journal").exists()
    port = int(re.search(r"systemctl start demo-api .*127\.0\.0\.1:(\d+)", out)[1])
    assert not _services_on(port), "the tour left its service running"


def test_demo_tour_supervisor_act(tmp_path, cli_env):
    proc = _tour(tmp_path, cli_env, "--act", "demo")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "platform=demo" in proc.stdout
    _check_incident(proc.stdout, logs_in(tmp_path / "logs")[0], "restart-demo")


def test_tour_explains_missing_tools_and_falls_back(tmp_path, cli_env, monkeypatch, capfd):
    for key, value in cli_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("RUNBOOK_DEMO_DIR", str(tmp_path / "demo"))
    monkeypatch.setattr(journal, "JOURNAL_REMOTE", str(tmp_path / "no-journal-remote"))
    with open(os.devnull) as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)  # not a terminal: --yes
        code = cli.tour(str(tmp_path / "logs"))
    out, err = capfd.readouterr()
    assert code == 0, out + err
    assert "bash .ci/setup-system" in err and "systemd-journal-remote" in err
    assert "falling back to the demo supervisor act" in out
    assert "Traceback" not in out + err
    _check_incident(out, logs_in(tmp_path / "logs")[0], "restart-demo")
