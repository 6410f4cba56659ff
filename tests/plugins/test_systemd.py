"""The systemd executor against docker-systemctl-replacement managing real processes.

A `systemctl` shim runs `systemctl3.py --root=BASE/<host>` where <host> is the
address the SSH session came in on (SSH_CONNECTION) or `local`, so each fake
host manages its own unit files and its own real `sleep` service.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from runbook_plugins import systemd
from support import sshd

from runbook.contract import ExecContext, StepResult

pytestmark = pytest.mark.slow
HOSTS = [f"127.0.0.{n}" for n in range(2, 8)]
BROKEN_HOST = "127.0.0.3"
UNIT = "[Unit]\nDescription={name}\n[Service]\nType=simple\nExecStart={start}\n"


def _systemctl3() -> str:
    found = Path(sys.executable).parent / "systemctl3.py"
    if not found.exists():
        pytest.skip("docker-systemctl-replacement is not installed (pip install -e '.[dev]')")
    return str(found)


@pytest.fixture(scope="session")
def units(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Per-host systemd roots with fastapi.service (sleep) and web.service (broken on one)."""
    base = tmp_path_factory.mktemp("systemd") / "roots" / "by" / "host"
    shim = base.parent / "shim"
    shim.mkdir(parents=True)
    for host in ["local", *HOSTS]:
        unit_dir = base / host / "etc" / "systemd" / "system"
        unit_dir.mkdir(parents=True)
        (unit_dir / "fastapi.service").write_text(
            UNIT.format(name="fastapi", start="/bin/sleep 600")
        )
        web = "/nonexistent/bin/web" if host == BROKEN_HOST else "/bin/sleep 601"
        (unit_dir / "web.service").write_text(UNIT.format(name="web", start=web))
    script = (
        "#!/bin/sh\nhost=$(echo \"$SSH_CONNECTION\" | cut -d' ' -f3)\n"
        f"exec {sys.executable} {_systemctl3()} --root={base}/${{host:-local}} "
        '-c MinimumYield=0.1 "$@" 2>/dev/null\n'
    )
    sshd.install_shim(shim, "systemctl", script)
    yield shim
    stopping = []
    for host in ["local", *HOSTS]:
        env = {**os.environ, "SSH_CONNECTION": f"x x {host} 22" if host != "local" else ""}
        argv = [str(shim / "systemctl"), "stop", "fastapi", "web"]
        stopping.append(subprocess.Popen(argv, env=env))
    for proc in stopping:
        proc.wait()


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory, units: Path) -> sshd.Fleet:
    reason = sshd.ensure_sshd()
    if reason:
        pytest.skip(reason)
    fleet = sshd.shared_fleet(tmp_path_factory.mktemp("sshd"))
    shutil.copy(units / "systemctl", fleet.shim_dir / "systemctl")
    return fleet


def local_env(units: Path) -> dict[str, str]:
    return {"PATH": f"{units}{os.pathsep}{os.environ['PATH']}"}


def runbook_text(targets: str, steps: str) -> str:
    return (
        "apiVersion: runbook/v1\nkind: Runbook\n"
        "metadata: {name: units, title: Units, severity: P2}\n"
        f"targets:\n{targets}\nsteps:\n{steps}"
    )


def records(log_dir: Path) -> list[dict[str, Any]]:
    (log,) = sorted(log_dir.glob("*.jsonl"))
    return [json.loads(line) for line in log.read_text().splitlines()]


def results(log_dir: Path) -> dict[str, dict[str, Any]]:
    return {r["data"]["step"]: r["data"] for r in records(log_dir) if r["type"] == "step.result"}


LOCAL_STEPS = """
  - id: start
    phase: mitigate
    action: {systemd: {start: fastapi}}
  - id: status
    phase: triage
    check: {systemd: {status: fastapi}}
    expect: ["active_state == 'active'", "sub_state == 'running'", "main_pid > 0"]
  - id: restart
    phase: mitigate
    action: {systemd: {restart: [fastapi]}}
    expect: ["all_active", "units.fastapi.main_pid != steps.status.main_pid"]
  - id: enabled
    phase: triage
    check: {systemd: {is_enabled: fastapi}}
    expect: ["unit_file_state == 'static'", "load_state == 'loaded'"]
"""


def test_local_unit_is_checked_and_restarted(units, run_cli, write_runbook) -> None:
    path = write_runbook(runbook_text("  here: {transport: local}", LOCAL_STEPS))
    r = run_cli("run", str(path), "--yes", "--log-dir", "logs", env=local_env(units))
    assert r.code == 0, r.text
    found = results(path.parent / "logs")
    assert found["status"]["fields"]["active_state"] == "active"
    assert found["restart"]["fields"]["main_pid"] != found["status"]["fields"]["main_pid"]


def test_missing_unit_is_a_clear_error(units, run_cli, write_runbook) -> None:
    steps = "  - id: s\n    phase: triage\n    check: {systemd: {is_active: no-such-unit}}\n"
    path = write_runbook(runbook_text("  here: {transport: local}", steps))
    r = run_cli("run", str(path), "--log-dir", "logs", env=local_env(units))
    assert r.code == 1
    assert "unit not found: no-such-unit" in r.text


def test_hostile_unit_name_is_refused(units, run_cli, write_runbook, tmp_path) -> None:
    steps = "  - id: s\n    phase: triage\n    check: {systemd: {status: '{{ params.unit }}'}}\n"
    text = runbook_text("  here: {transport: local}", steps).replace(
        "steps:", "params:\n  unit: {type: string}\nsteps:"
    )
    path = write_runbook(text)
    r = run_cli("run", str(path), "-p", "unit=--all", "--log-dir", "logs", env=local_env(units))
    assert r.code == 1 and "invalid unit name '--all'" in r.text


def test_plan_shows_the_exact_argv_with_sudo(run_cli, write_runbook) -> None:
    steps = (
        "  - id: restart\n    phase: mitigate\n"
        "    action: {systemd: {restart: fastapi, sudo: true, target: here}}\n"
    )
    path = write_runbook(runbook_text("  here: {transport: local}", steps))
    r = run_cli("plan", str(path), "--format", "json")
    assert r.code == 0, r.text
    (entry,) = json.loads(r.out)["steps"]
    assert entry["call"]["argv"] == ["sudo", "-n", "--", "systemctl", "restart", "fastapi"]
    assert entry["read_only"] is False and entry["gated"]


def test_status_over_ssh_and_rolling_restart(fleet, run_cli, write_runbook) -> None:
    targets = f"  web: {fleet.target_yaml(HOSTS)}"
    steps = """
  - id: start
    phase: mitigate
    action: {systemd: {start: fastapi, target: web}}
  - id: restart
    phase: mitigate
    serial: 3
    action: {systemd: {restart: fastapi, target: web}}
    expect: ["active_state == 'active'", "main_pid > 0"]
"""
    path = write_runbook(runbook_text(targets, steps))
    r = run_cli("run", str(path), "--yes", "--log-dir", "logs")
    assert r.code == 0, r.text
    found = results(path.parent / "logs")
    before = {h: v["fields"]["main_pid"] for h, v in found["start"]["hosts"].items()}
    after = {h: v["fields"]["main_pid"] for h, v in found["restart"]["hosts"].items()}
    assert sorted(after) == sorted(HOSTS)
    assert all(after[h] != before[h] for h in HOSTS)


def test_rolling_restart_stops_after_a_failed_batch(fleet, run_cli, write_runbook) -> None:
    targets = f"  web: {fleet.target_yaml(HOSTS)}"
    steps = """
  - id: restart
    phase: mitigate
    serial: 3
    action: {systemd: {restart: web, target: web}}
"""
    path = write_runbook(runbook_text(targets, steps))
    r = run_cli("run", str(path), "--yes", "--log-dir", "logs")
    assert r.code == 1
    hosts = results(path.parent / "logs")["restart"]["hosts"]
    assert hosts[BROKEN_HOST]["fields"]["exit_code"] != 0
    first, second = HOSTS[:3], HOSTS[3:]
    assert all(hosts[h]["fields"]["exit_code"] == 0 for h in first if h != BROKEN_HOST)
    for host in second:
        assert hosts[host]["error"].startswith("not run: batch 1/2 (serial: 3) failed on")


# --- verdicts from each unit's state, not from the replacement's exit codes ----------------
# docker-systemctl-replacement differs from real systemctl (tests/plugins/
# test_systemd_differential.py holds real systemctl's answers):
# - `is-active A B` exits 3 when any unit is not active; systemctl exits 0 when one is;
# - it has no reloading/activating of its own: `reload` leaves a unit `active`. It reads
#   ActiveState from the unit's status file, so writing `ActiveState=reloading` there is
#   how these tests put a unit in that state; its `is-active` then exits 3, systemctl's 0.
def local_root(units: Path) -> Path:
    return units.parent / "host" / "local"


def local_systemctl(units: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SSH_CONNECTION"}
    argv = [str(units / "systemctl"), *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)


def verdict(units: Path, **config: Any) -> StepResult:
    result = systemd.run({"systemctl": str(units / "systemctl"), **config}, ExecContext("v"))
    assert result.ok, result.error
    return result


@pytest.fixture
def two_units(units: Path) -> Iterator[Path]:
    """fastapi running, idle.service (never started) and reloader.service (running)."""
    unit_dir = local_root(units) / "etc" / "systemd" / "system"
    (unit_dir / "idle.service").write_text(UNIT.format(name="idle", start="/bin/sleep 603"))
    (unit_dir / "reloader.service").write_text(UNIT.format(name="reloader", start="/bin/sleep 604"))
    local_systemctl(units, "start", "fastapi", "reloader")
    yield units
    local_systemctl(units, "stop", "reloader")


def test_replacement_is_active_exit_code_is_not_the_verdict(two_units: Path) -> None:
    result = verdict(two_units, is_active=["fastapi", "idle"], require="any")
    assert result.fields["exit_code"] != 0  # real systemctl: 0, as fastapi is active
    assert result.fields["stdout"].split() == ["active", "inactive"]
    assert result.fields["healthy"] and result.fields["any_active"]
    assert not result.fields["all_active"]
    assert not verdict(two_units, is_active=["fastapi", "idle"]).fields["healthy"]  # all


def test_a_reloading_unit_counts_as_up(two_units: Path) -> None:
    shown = local_systemctl(two_units, "show", "-p", "StatusFilePath", "reloader").stdout
    status_file = Path(shown.strip().partition("=")[2])
    lines = [ln for ln in status_file.read_text().splitlines() if "State=" not in ln]
    status_file.write_text("\n".join([*lines, "ActiveState=reloading", "SubState=reload", ""]))
    result = verdict(two_units, is_active=["fastapi", "reloader"])
    assert result.fields["stdout"].split() == ["active", "reloading"]
    assert result.fields["exit_code"] != 0  # real systemctl: 0 (reloading is active)
    assert result.fields["units"]["reloader"]["up"] and result.fields["all_active"]
    assert result.fields["healthy"]


def test_require_is_only_for_reads(run_cli, write_runbook) -> None:
    steps = (
        "  - id: r\n    phase: mitigate\n    action: {systemd: {restart: fastapi, require: any}}\n"
    )
    path = write_runbook(runbook_text("  here: {transport: local}", steps))
    r = run_cli("validate", str(path))
    assert r.code == 2 and "require" in r.text, r.text
