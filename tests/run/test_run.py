"""The runner, driven through the real CLI: exit codes, retries, timeouts, branching."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from support.helpers import logs_in, process_gone

from runbook.log.journal import read_log, verify_log

HEAD = """\
apiVersion: runbook/v1
kind: Runbook
metadata: {name: t, title: Test runbook, severity: P2}
"""


def only_log(tmp_path: Path) -> list[dict]:
    logs = logs_in(tmp_path / "logs")
    assert len(logs) == 1, logs
    assert verify_log(logs[0]).ok, verify_log(logs[0]).reason
    return read_log(logs[0])


def finished(records: list[dict]) -> dict[str, str]:
    return {r["data"]["step"]: r["data"]["status"] for r in records if r["type"] == "step.finished"}


def test_passing_check_exits_0_and_failing_check_exits_1(run_cli, write_runbook):
    ok = write_runbook(
        HEAD + "steps:\n  - {id: a, phase: detect, check: {shell: {argv: ['true']}}}\n", "ok.yaml"
    )
    bad = write_runbook(
        HEAD + "steps:\n  - {id: a, phase: detect, check: {shell: {argv: ['false']}}}\n", "bad.yaml"
    )
    assert run_cli("run", str(ok)).code == 0
    result = run_cli("run", str(bad))
    assert result.code == 1
    assert "assert 1 == 0 (exit_code)" in result.out


def test_failed_expectation_shows_operands_in_log_and_console(run_cli, write_runbook, tmp_path):
    rb = write_runbook(
        HEAD
        + """
steps:
  - id: count
    phase: detect
    check: {shell: {argv: [echo, "3"]}}
    expect: ["int(stdout) >= 5"]
"""
    )
    result = run_cli("run", str(rb))
    assert result.code == 1
    assert "assert 3 >= 5 (int(stdout))" in result.out
    exp = [r for r in only_log(tmp_path) if r["type"] == "step.expectation"]
    assert exp[0]["data"]["passed"] is False
    assert exp[0]["data"]["message"] == "assert 3 >= 5 (int(stdout))"


def test_retries_until_the_check_passes(run_cli, write_runbook, tmp_path):
    counter = tmp_path / "n"
    rb = write_runbook(
        HEAD
        + f"""
steps:
  - id: flaky
    phase: detect
    check: {{shell: {{command: "echo x >> {counter}; test $(wc -l < {counter}) -ge 3"}}}}
    retries: {{attempts: 5, delay: 0}}
"""
    )
    assert run_cli("run", str(rb)).code == 0
    attempts = [r for r in only_log(tmp_path) if r["type"] == "step.attempt"]
    assert len(attempts) == 3


def test_retry_only_on_listed_outcomes(run_cli, write_runbook, tmp_path):
    rb = write_runbook(
        HEAD
        + """
steps:
  - id: fails
    phase: detect
    check: {shell: {argv: ['false']}}
    retries: {attempts: 4, delay: 0, on: [error]}
"""
    )
    assert run_cli("run", str(rb)).code == 1
    assert len([r for r in only_log(tmp_path) if r["type"] == "step.attempt"]) == 1


def test_attempt_timeout_kills_the_command_and_exits_4(run_cli, write_runbook, tmp_path):
    pidfile = tmp_path / "pid"
    rb = write_runbook(
        HEAD
        + f"""
steps:
  - id: hang
    phase: detect
    check: {{shell: {{command: "sleep 60 & echo $! > {pidfile}; wait"}}}}
    timeout: 1s
"""
    )
    result = run_cli("run", str(rb))
    assert result.code == 4, result.text
    pid = int(pidfile.read_text())
    time.sleep(0.2)
    assert process_gone(pid)
    assert finished(only_log(tmp_path))["hang"] == "timeout"


def test_run_deadline_stops_the_run_with_exit_4(run_cli, write_runbook, tmp_path):
    rb = write_runbook(
        HEAD
        + """
deadline: 1s
steps:
  - {id: slow, phase: detect, check: {shell: {argv: [sleep, "30"]}}}
  - {id: never, phase: triage, check: {shell: {argv: ['true']}}}
"""
    )
    result = run_cli("run", str(rb))
    assert result.code == 4
    records = only_log(tmp_path)
    assert records[-1]["type"] == "run.finished"
    assert records[-1]["data"]["status"] == "timeout"
    assert "never" not in finished(records)


def test_when_skips_and_on_failure_continue_is_handled(run_cli, write_runbook, tmp_path):
    rb = write_runbook(
        HEAD
        + """
steps:
  - {id: probe, phase: detect, check: {shell: {argv: ['false']}}, on_failure: continue}
  - id: fix
    phase: mitigate
    when: "not steps.probe.passed"
    action: {shell: {argv: ['true']}}
  - id: celebrate
    phase: post-incident  # a skipped resolve-phase check would fail the run (test_verdicts)
    when: "steps.probe.passed"
    check: {shell: {argv: ['true']}}
"""
    )
    assert run_cli("run", str(rb), "--yes").code == 0
    status = finished(only_log(tmp_path))
    assert status == {"probe": "failed", "fix": "passed"}
    skipped = [r["data"]["step"] for r in only_log(tmp_path) if r["type"] == "step.skipped"]
    assert skipped == ["celebrate"]


def test_on_failure_goto_jumps_to_the_named_step(run_cli, write_runbook, tmp_path):
    rb = write_runbook(
        HEAD
        + """
steps:
  - {id: probe, phase: detect, check: {shell: {argv: ['false']}}, on_failure: goto escalate}
  - {id: skipped-over, phase: triage, check: {shell: {argv: ['true']}}}
  - {id: escalate, phase: mitigate, check: {shell: {argv: [echo, paging]}}}
"""
    )
    assert run_cli("run", str(rb)).code == 0
    assert list(finished(only_log(tmp_path))) == ["probe", "escalate"]


def test_action_without_terminal_or_yes_is_refused_with_exit_3(run_cli, write_runbook, tmp_path):
    marker = tmp_path / "touched"
    rb = write_runbook(
        HEAD
        + f"""
steps:
  - id: mutate
    phase: mitigate
    action: {{shell: {{argv: [touch, "{marker}"]}}}}
    confirm: "Touch the marker?"
"""
    )
    result = run_cli("run", str(rb))
    assert result.code == 3
    assert "--yes" in result.text
    assert not marker.exists()
    conf = [r for r in only_log(tmp_path) if r["type"] == "step.confirmation"]
    assert conf[0]["data"]["accepted"] is False
    assert conf[0]["data"]["method"] == "no-terminal"


def test_yes_accepts_and_records_operator(run_cli, write_runbook, tmp_path):
    marker = tmp_path / "touched"
    rb = write_runbook(
        HEAD
        + f"""
steps:
  - id: mutate
    phase: mitigate
    action: {{shell: {{argv: [touch, "{marker}"]}}}}
"""
    )
    assert run_cli("run", str(rb), "--yes").code == 0
    assert marker.exists()
    conf = [r for r in only_log(tmp_path) if r["type"] == "step.confirmation"][0]["data"]
    assert (conf["accepted"], conf["operator"], conf["method"]) == (True, "tester", "--yes")


def _run_on_pty(args: list[str], answer: bytes, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run the CLI with a real pseudo-terminal as stdin and type `answer` at the prompt."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # child
        os.chdir(cwd)
        os.execve(sys.executable, [sys.executable, "-m", "runbook", *args], env)
    output = b""
    deadline = time.monotonic() + 30
    sent = False
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
        if not sent and (b"[y/N]" in output or b"to proceed" in output):
            os.write(fd, answer)
            sent = True
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def test_operator_declining_on_a_terminal_exits_3(write_runbook, tmp_path, cli_env):
    marker = tmp_path / "touched"
    rb = write_runbook(
        HEAD
        + f"""
steps:
  - id: mutate
    phase: mitigate
    action: {{shell: {{argv: [touch, "{marker}"]}}}}
    confirm: "Really touch it?"
"""
    )
    code, out = _run_on_pty(["run", str(rb)], b"n\n", tmp_path, cli_env)
    assert code == 3, out
    assert "Really touch it?" in out
    assert not marker.exists()


def test_strong_confirmation_requires_typing_the_name(write_runbook, tmp_path, cli_env):
    marker = tmp_path / "touched"
    rb = write_runbook(
        HEAD
        + f"""
steps:
  - id: flush
    phase: mitigate
    action: {{shell: {{argv: [touch, "{marker}"]}}}}
    confirm: {{prompt: "Flush the cache?", require: "prod-cache"}}
"""
    )
    code, _ = _run_on_pty(["run", str(rb)], b"y\n", tmp_path, cli_env)
    assert code == 3 and not marker.exists()
    code, out = _run_on_pty(["run", str(rb)], b"prod-cache\n", tmp_path, cli_env)
    assert code == 0, out
    assert marker.exists()


def test_manual_step_needs_an_answer_when_not_interactive(run_cli, write_runbook, tmp_path):
    rb = write_runbook(
        HEAD
        + """
steps:
  - id: ack
    phase: detect
    check: {manual: {prompt: "Acknowledged in PagerDuty?", choices: ["yes", "no"]}}
    expect: ["answer == 'yes'"]
"""
    )
    assert run_cli("run", str(rb)).code == 3
    result = run_cli("run", str(rb), "--answer", "ack=yes")
    assert result.code == 0, result.text


def test_sigint_stops_the_step_and_closes_the_log(write_runbook, tmp_path, cli_env):
    pidfile = tmp_path / "pid"
    rb = write_runbook(
        HEAD
        + f"""
steps:
  - id: long
    phase: detect
    check: {{shell: {{command: "sleep 60 & echo $! > {pidfile}; wait"}}}}
"""
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "runbook", "run", str(rb)],
        cwd=tmp_path,
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    for _ in range(200):
        if pidfile.exists() and pidfile.read_text().strip():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    child = int(pidfile.read_text())
    time.sleep(0.2)
    assert process_gone(child)
    records = only_log(tmp_path)
    assert records[-1]["type"] == "run.interrupted"
    assert records[-1]["data"]["step"] == "long"


def test_json_format_streams_one_event_per_line(run_cli, write_runbook):
    rb = write_runbook(
        HEAD + "steps:\n  - {id: a, phase: detect, check: {shell: {argv: [echo, hi]}}}\n"
    )
    result = run_cli("run", str(rb), "--format", "json")
    assert result.code == 0
    events = [json.loads(line) for line in result.out.splitlines() if line.strip()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "header" and kinds[-1] == "run.finished"
    assert "step.finished" in kinds


def test_secret_param_is_masked_everywhere(run_cli, write_runbook, tmp_path):
    import base64
    import urllib.parse

    secret = "s3cr3t-T0ken/+=!"
    rb = write_runbook(
        HEAD
        + """
params:
  token: {type: string, secret: true, required: true}
steps:
  - id: leak
    phase: detect
    check:
      shell:
        command: "echo {{ params.token }}; printf %s {{ params.token }} | base64; exit 1"
"""
    )
    result = run_cli("run", str(rb), env={"RUNBOOK_PARAM_TOKEN": secret})
    assert result.code == 1
    raw = logs_in(tmp_path / "logs")[0].read_text()
    for form in (
        secret,
        base64.b64encode(secret.encode()).decode(),
        urllib.parse.quote(secret, safe=""),
    ):
        assert form not in raw
        assert form not in result.text
    assert "***" in raw


def test_register_exposes_values_to_later_steps(run_cli, write_runbook, tmp_path):
    rb = write_runbook(
        HEAD
        + """
steps:
  - id: count
    phase: detect
    check: {shell: {argv: [echo, "7"]}}
    register: {replicas: "int(stdout)"}
  - id: use
    phase: triage
    check: {shell: {argv: [echo, "{{ vars.replicas + 1 }}"]}}
    expect: ["stdout.strip() == '8'"]
"""
    )
    result = run_cli("run", str(rb))
    assert result.code == 0, result.text


def test_closed_stdout_does_not_cut_the_log_short(write_runbook, tmp_path, cli_env):
    rb = write_runbook(
        HEAD
        + """
steps:
  - {id: a, phase: detect, check: {shell: {argv: [echo, one]}}}
  - {id: b, phase: triage, check: {shell: {argv: [sleep, "0.3"]}}}
  - {id: c, phase: resolve, check: {shell: {argv: [echo, three]}}}
"""
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "runbook", "run", str(rb)],
        cwd=tmp_path,
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.stdout.close()  # like `runbook run ... | head -1`
    proc.wait(timeout=30)
    records = only_log(tmp_path)
    assert records[-1]["type"] == "run.finished"
    assert list(finished(records)) == ["a", "b", "c"]


def test_severity_override_is_recorded_and_drives_the_sla_line(run_cli, write_runbook, tmp_path):
    rb = write_runbook(
        HEAD + "steps:\n  - {id: a, phase: detect, check: {shell: {argv: ['true']}}}\n"
    )
    result = run_cli("run", str(rb), "--severity", "P0")
    assert result.code == 0
    assert "SLA P0" in result.out
    assert only_log(tmp_path)[0]["data"]["severity"] == "P0"
    assert run_cli("run", str(rb), "--severity", "P9").code == 2


def test_typed_confirmation_is_not_passed_by_yes_but_by_the_typed_answer(
    run_cli, write_runbook, tmp_path
):
    marker = tmp_path / "flushed"
    rb = write_runbook(
        HEAD
        + f"""
steps:
  - id: flush
    phase: mitigate
    action: {{shell: {{argv: [touch, "{marker}"]}}}}
    confirm: {{prompt: "Flush the cache?", require: "prod-cache"}}
"""
    )
    refused = run_cli("run", str(rb), "--yes")
    assert refused.code == 3 and "--answer flush=prod-cache" in refused.text
    wrong = run_cli("run", str(rb), "--yes", "--answer", "flush=prod")
    assert wrong.code == 3 and not marker.exists()
    typed = run_cli("run", str(rb), "--answer", "flush=prod-cache")
    assert typed.code == 0 and marker.exists()
    # file names sort by second, then by random run id: order runs by their start time
    runs = sorted(
        (read_log(p) for p in (tmp_path / "logs").glob("*.jsonl")),
        key=lambda records: records[0]["data"]["started"],
    )
    conf = [r["data"] for r in runs[-1] if r["type"] == "step.confirmation"]
    assert (conf[0]["method"], conf[0]["accepted"]) == ("--answer", True)
