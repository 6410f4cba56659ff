"""The notify observer posts Initial / Update / Resolved to a real local webhook receiver."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli import RunCli
from support.helpers import logs_in
from support.http_servers import LocalHTTPServer, Reply, closed_port, http_server

from runbook.log.journal import read_log

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
    assert kinds == ["initial", "update", "resolved"]  # two mitigations, one update
    initial, update, resolved = (b["text"] for b in bodies)
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
    errors = [r for r in read_log(log) if r["type"] == "observer.error"]
    assert len(errors) == 3 and "notify-observer" in errors[0]["data"]["message"]
    assert "webhook http://127.0.0.1:" in errors[0]["data"]["message"]
    assert "secret" not in log.read_text() and "secret" not in result.text


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
    assert [n["runbook_notification"]["status"] for n in notes] == [
        "investigating",
        "monitoring",
        "resolved",
    ]


def test_dry_runs_and_unconfigured_runs_send_nothing(
    run_cli: RunCli, write_runbook, receiver: LocalHTTPServer
) -> None:
    env = {"RUNBOOK_NOTIFY_WEBHOOK": receiver.url_for("/hook")}
    assert _run(run_cli, write_runbook, env, "--dry-run").code == 0
    assert _run(run_cli, write_runbook, {}).code == 0
    assert receiver.requests == []
