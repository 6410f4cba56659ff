"""--resume: a killed run continues in a new, linked log; finished actions never repeat."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from support.helpers import logs_in

from runbook.log.journal import read_log, verify_log

RUNBOOK = """\
apiVersion: runbook/v1
kind: Runbook
metadata: {{name: resumable, title: Resumable, severity: P1}}
params:
  svc: {{type: string, default: api, pattern: "^[a-z]+$"}}
steps:
  - id: first-fix
    phase: mitigate
    action: {{shell: {{command: "echo first >> {ledger}"}}}}
  - id: wait
    phase: mitigate
    check: {{shell: {{command: "echo waiting > {started}; test -f {go} || sleep 60"}}}}
  - id: second-fix
    phase: resolve
    action: {{shell: {{command: "echo second >> {ledger}"}}}}
"""


def _start(rb: Path, cwd: Path, env: dict[str, str], *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "runbook", "run", str(rb), "--yes", *extra],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(path: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not path.exists():
        time.sleep(0.05)
    assert path.exists(), f"{path} never appeared"


def test_sigkill_mid_step_then_resume_runs_only_what_is_left(tmp_path, cli_env, run_cli):
    ledger, started, go = tmp_path / "ledger", tmp_path / "started", tmp_path / "go"
    rb = tmp_path / "rb.yaml"
    rb.write_text(RUNBOOK.format(ledger=ledger, started=started, go=go))
    proc = _start(rb, tmp_path, cli_env)
    _wait_for(started)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    old = logs_in(tmp_path / "logs")[0]
    verdict = verify_log(old)
    assert verdict.truncated and not verdict.tampered

    go.write_text("")
    result = run_cli("run", str(rb), "--yes", "--resume", str(old))
    assert result.code == 0, result.text
    assert ledger.read_text().splitlines() == ["first", "second"]  # first-fix never repeated
    new = [p for p in logs_in(tmp_path / "logs") if p != old][0]
    records = read_log(new)
    assert records[0]["data"]["resumed_from"]["final_hash"] == verdict.final_hash
    restored = [r["data"]["step"] for r in records if r["type"] == "step.restored"]
    assert restored == ["first-fix"]
    assert verify_log(new).ok


def test_unfinished_action_needs_confirmation_before_rerun(tmp_path, cli_env, run_cli):
    ledger, started = tmp_path / "ledger", tmp_path / "started"
    rb = tmp_path / "rb.yaml"
    rb.write_text(
        RUNBOOK.format(ledger=ledger, started=started, go=tmp_path / "go").replace(
            'command: "echo first >> ',
            'command: "touch ' + str(started) + "; sleep 60; echo first >> ",
        )
    )
    proc = _start(rb, tmp_path, cli_env)
    _wait_for(started)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    old = logs_in(tmp_path / "logs")[0]
    refused = run_cli("run", str(rb), "--resume", str(old))
    assert refused.code == 3
    assert "may have run already" in refused.text


def test_resume_refuses_another_runbook_or_a_changed_file(tmp_path, run_cli, write_runbook):
    ledger = tmp_path / "ledger"
    body = RUNBOOK.format(ledger=ledger, started=tmp_path / "s", go=tmp_path / "s")
    rb = write_runbook(body.replace("echo first >>", "exit 1; echo first >>"))
    assert run_cli("run", str(rb), "--yes").code == 1
    old = logs_in(tmp_path / "logs")[0]
    other = write_runbook(body.replace("name: resumable", "name: other"), "other.yaml")
    wrong = run_cli("run", str(other), "--resume", str(old))
    assert wrong.code == 2 and "from runbook 'resumable'" in wrong.err
    rb.write_text(rb.read_text() + "\n# edited\n")
    changed = run_cli("run", str(rb), "--resume", str(old))
    assert changed.code == 2 and "changed since that run" in changed.err
    params = run_cli("run", str(rb), "--resume", str(old), "-p", "svc=web")
    assert params.code == 2
