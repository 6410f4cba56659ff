"""The notify observer posts Initial / Update / Resolved, then Run Finished with the log's final
hash, to a real local webhook receiver; `runbook log verify --expect` checks logs against it."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.cli import RunCli
from support.helpers import logs_in
from support.http_servers import LocalHTTPServer, Reply, closed_port, http_server

from runbook.log.journal import read_log, verify_log

RUNBOOK = """
apiVersion: runbook/v1
kind: Runbook
metadata: {name: outage, title: Checkout outage, severity: P1}
steps:
  - {id: health, phase: detect, check: {shell: {argv: ["sh", "-c", "exit 7"]}},
     on_failure: continue}
  - {id: logs, phase: triage, check: {shell: {argv: ["echo", "pool exhausted"]}}}
  - {id: restart, phase: mitigate, action: {shell: {argv: ["true"]}}, confirm: "Restart?"}
  - {id: scale, phase: mitigate, action: {shell: {argv: ["true"]}}, confirm: "Scale?"}
  - {id: recovered, phase: resolve, check: {shell: {argv: ["true"]}}}
"""
SECRET_PATH = "/services/T000/B000/XXXXsecretXXXX"


@pytest.fixture
def receiver() -> Iterator[LocalHTTPServer]:
    with http_server() as server:
        yield server


def _run(run_cli: RunCli, write_runbook, env: dict[str, str], *extra: str):
    return run_cli("run", str(write_runbook(RUNBOOK)), "--yes", *extra, env=env)


def test_initial_update_and_resolved_are_posted_once_each(
    run_cli: RunCli, write_runbook, receiver: LocalHTTPServer
) -> None:
    receiver.route(f"POST {SECRET_PATH}", status=200, body="ok")
    result = _run(run_cli, write_runbook, {"RUNBOOK_NOTIFY_WEBHOOK": receiver.url_for(SECRET_PATH)})
    assert result.code == 0, result.text
    bodies = [r.json() for r in receiver.requests]
    kinds = [b["runbook_notification"]["kind"] for b in bodies]
    assert kinds == ["initial", "update", "resolved", "finished"]  # two mitigations, one update
    initial, update, resolved, _finished = (b["text"] for b in bodies)
    assert initial.startswith("\U0001f6a8 INCIDENT: Checkout outage\nSeverity: P1\n")
    assert "Status: Investigating" in initial and "Impact: health failed: assert 7 == 0" in initial
    assert "(every 30m for P1)" in initial
    assert "Status: Monitoring" in update and "Actions Taken: restart passed" in update
    assert (
        resolved.startswith("\u2705 RESOLVED: Checkout outage") and "Status: Resolved" in resolved
    )
    assert all(b["runbook_notification"]["severity"] == "P1" for b in bodies)


def test_a_failing_webhook_is_recorded_and_never_fails_the_run(
    run_cli: RunCli, write_runbook, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{closed_port()}{SECRET_PATH}"
    result = _run(run_cli, write_runbook, {"RUNBOOK_NOTIFY_WEBHOOK": url})
    assert result.code == 0, result.text
    [log] = logs_in(tmp_path / "logs")
    records = read_log(log)
    errors = [r for r in records if r["type"] == "observer.error"]
    assert len(errors) == 3 and "notify-observer" in errors[0]["data"]["message"]
    assert "webhook http://127.0.0.1:" in errors[0]["data"]["message"]
    assert "secret" not in log.read_text() and "secret" not in result.text
    # Run Finished cannot be delivered either: shown, not logged (the log is complete)
    assert records[-1]["type"] == "run.finished"
    assert (
        "warning: observer 'notify-observer' failed: RuntimeError: webhook http://127.0.0.1:"
        in (result.out)
    )
    assert "send its final hash yourself" in result.out
    assert f"final hash: {records[-1]['sha256']}" in result.out


def test_a_webhook_answering_500_is_an_observer_error(
    run_cli: RunCli, write_runbook, receiver: LocalHTTPServer, tmp_path: Path
) -> None:
    receiver.route(f"POST {SECRET_PATH}", Reply(status=500, body="boom"))
    result = _run(run_cli, write_runbook, {"RUNBOOK_NOTIFY_WEBHOOK": receiver.url_for(SECRET_PATH)})
    assert result.code == 0
    [log] = logs_in(tmp_path / "logs")
    messages = [r["data"]["message"] for r in read_log(log) if r["type"] == "observer.error"]
    assert messages and all("answered 500" in m and "secret" not in m for m in messages)


def test_stdout_mode_prints_one_json_line_per_message(run_cli: RunCli, write_runbook) -> None:
    result = _run(run_cli, write_runbook, {"RUNBOOK_NOTIFY_STDOUT": "1"}, "--format", "json")
    assert result.code == 0, result.err
    events = [json.loads(line) for line in result.out.splitlines()]  # still one JSON per line
    notes = [e["notification"] for e in events if "notification" in e]
    assert [n["runbook_notification"].get("status") for n in notes] == [
        "investigating",
        "monitoring",
        "resolved",
        None,  # Run Finished has a verdict, not an incident status
    ]
    final = notes[-1]["runbook_notification"]
    assert final["kind"] == "finished" and final["verdict"] == "passed"
    run_finished = [e for e in events if e.get("event") == "run.finished"]
    assert final["final_hash"] == run_finished[0]["sha256"]


def test_dry_runs_and_unconfigured_runs_send_nothing(
    run_cli: RunCli, write_runbook, receiver: LocalHTTPServer
) -> None:
    env = {"RUNBOOK_NOTIFY_WEBHOOK": receiver.url_for("/hook")}
    assert _run(run_cli, write_runbook, env, "--dry-run").code == 0
    assert _run(run_cli, write_runbook, {}).code == 0
    assert receiver.requests == []


# -- Run Finished: the anchor ------------------------------------------------------------------

FINAL = re.compile(r"^final hash: ([0-9a-f]{64})\b", re.M)
HOOK = "/hooks/incident"


def _finished(receiver: LocalHTTPServer) -> dict[str, Any]:
    """The one Run Finished body the receiver got (the run's last message)."""
    bodies = [r.json() for r in receiver.requests]
    finished = [b for b in bodies if b["runbook_notification"]["kind"] == "finished"]
    assert len(finished) == 1, bodies
    assert bodies[-1] is finished[0], "Run Finished is the last message of a run"
    return finished[0]


def _verify(run_cli: RunCli, log: Path, *args: str) -> tuple[int, dict[str, str]]:
    """`runbook log verify LOG ARGS`: exit code and {part: its line}."""
    result = run_cli("log", "verify", str(log), *args)
    parts = {}
    for line in result.out.splitlines():
        name, _, rest = line.partition(":")
        if name in ("chain", "truncation", "signature", "anchor"):
            parts[name] = rest.strip()
    return result.code, parts


def forge(log: Path) -> None:
    """The motivated editor: failed -> passed everywhere, then every hash recomputed."""
    out, prev = [], "0" * 64
    for line in log.read_text().splitlines():
        record = json.loads(line)
        record.pop("sha256")
        data = record["data"]
        if data.get("status") == "failed":
            data["status"] = "passed"
        if record["type"] == "step.expectation":
            data["passed"] = True
        record["prev"] = prev
        body = json.dumps(record, sort_keys=True, separators=(",", ":"))
        prev = hashlib.sha256(body.encode()).hexdigest()
        out.append(body[:-1] + f',"sha256":"{prev}"}}')
    log.write_text("\n".join(out) + "\n")


def test_run_finished_carries_the_final_hash_the_run_printed_and_verify_reports(
    run_cli: RunCli, write_runbook, receiver: LocalHTTPServer, tmp_path: Path
) -> None:
    receiver.route(f"POST {HOOK}", status=200)
    result = _run(run_cli, write_runbook, {"RUNBOOK_NOTIFY_WEBHOOK": receiver.url_for(HOOK)})
    assert result.code == 0, result.text
    [log] = logs_in(tmp_path / "logs")
    records = read_log(log)
    body = _finished(receiver)
    fields = body["runbook_notification"]
    printed = FINAL.search(result.out)
    assert printed, result.out

    assert fields["final_hash"] == printed.group(1) == verify_log(log).final_hash
    assert fields["final_hash"] == records[-1]["sha256"] and fields["log_seq"] == records[-1]["seq"]
    assert fields["log_sha256"] == fields["final_hash"]
    assert fields["verdict"] == "passed" and fields["exit_code"] == 0
    assert fields["run_id"] == records[0]["data"]["run_id"] and fields["runbook"] == "outage"
    assert Path(fields["log_path"]) == log.absolute()
    assert fields["signed"] is False and fields["signer"] is None
    text = body["text"]
    assert text.startswith("\U0001f3c1 RUN FINISHED: Checkout outage\nSeverity: P1\n")
    assert f"Log head: seq {fields['log_seq']} sha256 {fields['final_hash']} (final hash)" in text
    assert "Signed: no (integrity only, not authenticity" in text
    assert (
        f"Verify: runbook log verify {fields['log_path']} --expect {fields['final_hash']}" in text
    )

    code, parts = _verify(run_cli, log, "--expect", fields["final_hash"])
    assert code == 0 and parts["anchor"].startswith("ok: the log ends at the expected hash")


def test_a_forged_log_fails_verify_against_the_hash_the_webhook_kept(
    run_cli: RunCli, write_runbook, receiver: LocalHTTPServer, tmp_path: Path
) -> None:
    receiver.route(f"POST {HOOK}", status=200)
    env = {"RUNBOOK_NOTIFY_WEBHOOK": receiver.url_for(HOOK)}
    result = _run(run_cli, write_runbook, env)
    assert result.code == 0, result.text
    [log] = logs_in(tmp_path / "logs")
    anchor = _finished(receiver)["runbook_notification"]["final_hash"]

    forge(log)
    code, parts = _verify(run_cli, log)
    assert code == 0, "the chain alone cannot see a recomputed rewrite"
    code, parts = _verify(run_cli, log, "--expect", anchor)
    assert code == 5, parts
    assert parts["chain"].startswith("ok") and parts["anchor"].startswith("MISMATCH"), parts
    assert "rewritten" in parts["anchor"]


@pytest.fixture
def signing_key(tmp_path: Path) -> Path:
    """An ed25519 key made by OpenSSH's own ssh-keygen (private here, public `.pub`)."""
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen (OpenSSH) is not installed")
    path = tmp_path / "signing-key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "t", "-f", str(path)],
        check=True,
        timeout=30,
    )
    return path


def test_with_a_signing_key_run_finished_names_the_key(
    run_cli: RunCli, write_runbook, receiver: LocalHTTPServer, tmp_path: Path, signing_key: Path
) -> None:
    receiver.route(f"POST {HOOK}", status=200)
    env = {"RUNBOOK_NOTIFY_WEBHOOK": receiver.url_for(HOOK)}
    result = _run(run_cli, write_runbook, env, "--signing-key", str(signing_key))
    assert result.code == 0, result.text
    [log] = logs_in(tmp_path / "logs")
    body = _finished(receiver)
    fields = body["runbook_notification"]
    # the oracle for the fingerprint is OpenSSH itself
    listed = subprocess.run(
        ["ssh-keygen", "-lf", f"{signing_key}.pub"], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    assert fields["signed"] is True and fields["signer"] == listed
    assert f"Signed: yes, key {listed}" in body["text"]
    assert f"--key {listed} --expect {fields['final_hash']}" in body["text"]
    assert fields["final_hash"] == read_log(log)[-1]["sha256"]

    code, parts = _verify(run_cli, log, "--key", listed, "--expect", fields["final_hash"])
    assert code == 0 and parts["signature"].startswith("ok"), parts


ABORTS = """
apiVersion: runbook/v1
kind: Runbook
metadata: {name: aborts, title: Aborted run, severity: P2}
steps:
  - {id: health, phase: detect, check: {shell: {argv: ["false"]}}, on_failure: abort}
  - {id: never, phase: resolve, check: {shell: {argv: ["true"]}}}
"""
SLOW = """
apiVersion: runbook/v1
kind: Runbook
metadata: {name: slow, title: Slow run, severity: P2}
steps:
  - {id: long, phase: detect, check: {shell: {argv: ["sleep", "30"]}}}
"""


@pytest.mark.parametrize(
    ("runbook", "extra", "verdict", "code"),
    [(ABORTS, (), "failed", 1), (SLOW, ("--deadline", "1s"), "timeout", 4)],
    ids=["abort", "deadline"],
)
def test_an_aborted_run_and_a_run_past_its_deadline_send_their_final_hash(
    run_cli: RunCli,
    write_runbook,
    receiver: LocalHTTPServer,
    tmp_path: Path,
    runbook: str,
    extra: tuple[str, ...],
    verdict: str,
    code: int,
) -> None:
    receiver.route(f"POST {HOOK}", status=200)
    env = {"RUNBOOK_NOTIFY_WEBHOOK": receiver.url_for(HOOK)}
    result = run_cli("run", str(write_runbook(runbook)), *extra, env=env)
    assert result.code == code, result.text
    [log] = logs_in(tmp_path / "logs")
    fields = _finished(receiver)["runbook_notification"]
    assert fields["verdict"] == verdict and fields["exit_code"] == code
    assert fields["final_hash"] == read_log(log)[-1]["sha256"] == FINAL.search(result.out)[1]


def test_a_run_ended_by_sigterm_still_sends_the_final_hash_of_the_interrupted_log(
    write_runbook, receiver: LocalHTTPServer, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    receiver.route(f"POST {HOOK}", status=200)
    started = tmp_path / "started"
    rb = write_runbook(
        SLOW.replace('["sleep", "30"]', f'["sh", "-c", "touch {started}; sleep 30"]')
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "runbook", "run", str(rb)],
        cwd=tmp_path,
        env={**cli_env, "RUNBOOK_NOTIFY_WEBHOOK": receiver.url_for(HOOK)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    until = time.monotonic() + 20
    while not started.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < until, "the step never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err.decode()

    [log] = logs_in(tmp_path / "logs")
    last = read_log(log)[-1]
    assert last["type"] == "run.interrupted" and last["data"]["reason"].endswith("(SIGTERM)")
    fields = _finished(receiver)["runbook_notification"]
    assert fields["verdict"] == "interrupted" and fields["exit_code"] == 130
    assert fields["final_hash"] == last["sha256"] == verify_log(log).final_hash
    assert f"final hash: {last['sha256']}" in out.decode()
