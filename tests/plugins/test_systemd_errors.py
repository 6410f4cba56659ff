"""systemd steps on a machine where systemd is not running say so, not 'unit not found'."""

from __future__ import annotations

import os
from pathlib import Path

NOT_BOOTED = "System has not been booted with systemd as init system (PID 1). Can't operate."


def test_systemd_not_running_is_named_as_such(run_cli, write_runbook, tmp_path: Path, cli_env):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "systemctl"  # what systemctl prints in a container without systemd
    fake.write_text(f'#!/bin/sh\necho "{NOT_BOOTED}" >&2\nexit 1\n')
    fake.chmod(0o755)
    rb = write_runbook(
        """
        apiVersion: runbook/v1
        kind: Runbook
        metadata: {name: nosystemd, title: No systemd, severity: P2}
        steps:
          - {id: status, phase: triage, check: {systemd: {status: api}}, timeout: 10s}
        """
    )
    path = f"{bin_dir}{os.pathsep}{cli_env['PATH']}"
    result = run_cli("run", str(rb), env={"PATH": path})
    assert result.code == 1
    assert f"systemctl failed: {NOT_BOOTED}" in result.out
    assert "unit not found" not in result.out
