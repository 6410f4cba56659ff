"""Group commit: records that become durable together share one fsync, and nothing is lost
that anyone outside the run has seen.

The writer defers records and commits them at durable points; the runner puts a durable
point before every command or action, every question to the operator, every notification
and the final record. What these tests hold it to, with real `runbook run` processes:

- a command finds its own `step.started`/`step.attempt` (and an action its
  `step.confirmation`) in the log file before it runs: the probe is the step's own
  command, reading the file from a separate process;
- a run SIGKILLed at a chosen record (a watcher counting lines in the file), or by its own
  step, loses only records the console had not shown: every event printed before the kill
  is in the file with the same seq and hash; `runbook log verify` calls the log TRUNCATED
  (exit 5), never tampered; every durable point of a signed log is signed; and `--resume`
  finishes the run, repeating no action that finished.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from support.helpers import logs_in

from runbook.log.journal import JournalWriter, read_log, verify_log
from runbook.run.secrets import Masker

HEADER = {"run_id": "r1", "runbook": {"name": "rb"}, "operator": "tester", "dry_run": False}


def _types(path: Path) -> list[str]:
    return [r["type"] for r in read_log(path)]


# -- the writer's API ---------------------------------------------------------------------------


def test_deferred_records_reach_the_file_only_at_a_commit(tmp_path: Path) -> None:
    with JournalWriter.create(tmp_path, "rb", "r1", HEADER, Masker(["s3cret"])) as writer:
        writer.defer("step.started", {"step": "a"})
        writer.defer("step.result", {"step": "a", "stdout": "token s3cret"})
        assert (writer.pending, writer.seq, _types(writer.path)) == (2, 0, ["header"])
        head = writer.last_hash
        written = writer.commit()
        assert [r["seq"] for r in written] == [1, 2] and written[1]["data"]["stdout"] == "token ***"
        assert (writer.pending, writer.seq, writer.last_hash) == (0, 2, written[1]["sha256"])
        assert written[0]["prev"] == head
        assert read_log(writer.path)[1:] == written
        assert writer.commit() == []  # nothing deferred: no write


def test_append_writes_what_was_deferred_before_it_in_one_write(tmp_path: Path) -> None:
    with JournalWriter.create(tmp_path, "rb", "r1", HEADER, Masker()) as writer:
        writer.defer("step.started", {"step": "a"})
        own = writer.append("step.attempt", {"step": "a", "attempt": 1})
        assert own["seq"] == 2 and _types(writer.path)[1:] == ["step.started", "step.attempt"]
        writer.defer("step.result", {"step": "a"})
        committed = writer.commit([("step.finished", {"step": "a", "status": "passed"})])
        assert [r["type"] for r in committed] == ["step.result", "step.finished"]
        writer.append("run.finished", {"status": "passed"})
    assert verify_log(writer.path).ok


def test_ts_is_when_a_record_was_deferred_not_when_it_was_written(tmp_path: Path) -> None:
    with JournalWriter.create(tmp_path, "rb", "r1", HEADER, Masker()) as writer:
        writer.defer("step.started", {"step": "a"})
        time.sleep(0.02)
        [started, attempt] = writer.commit([("step.attempt", {"step": "a"})])
    assert started["ts"] < attempt["ts"]


def test_closing_commits_what_is_still_deferred(tmp_path: Path) -> None:
    with JournalWriter.create(tmp_path, "rb", "r1", HEADER, Masker()) as writer:
        writer.defer("step.started", {"step": "a"})
    assert _types(writer.path) == ["header", "step.started"]
    check = verify_log(writer.path)
    assert check.truncated and not check.tampered


def test_the_header_cannot_be_deferred(tmp_path: Path) -> None:
    with JournalWriter.create(tmp_path, "rb", "r1", HEADER, Masker()) as writer:
        with pytest.raises(ValueError, match="header is written once"):
            writer.defer("header", {})
        with pytest.raises(ValueError, match="invalid event type"):
            writer.defer("Step Started", {})
        assert writer.pending == 0


class _InterruptedWrite(io.BufferedWriter):
    """A real file whose first write raises KeyboardInterrupt before any byte reaches it."""

    interrupt = True

    def write(self, data: Any) -> int:
        if self.interrupt:
            self.interrupt = False
            raise KeyboardInterrupt
        return super().write(data)


def test_records_a_signal_kept_from_the_file_stay_deferred_for_the_next_commit(
    tmp_path: Path,
) -> None:
    """SIGINT before the bytes reached the file: the records are not lost, nor reordered;
    run.interrupted follows them."""
    path = tmp_path / "log.jsonl"
    writer = JournalWriter(path, _InterruptedWrite(io.FileIO(path, "wb")), Masker(), "r1")
    writer.defer("step.started", {"step": "wait"})
    with pytest.raises(KeyboardInterrupt):
        writer.append("step.attempt", {"step": "wait", "attempt": 1})
    assert (writer.pending, writer.seq) == (2, -1)
    writer.append("run.interrupted", {"reason": "interrupted by the operator (SIGINT)"})
    writer.close()
    records = read_log(path)
    assert [r["type"] for r in records] == ["step.started", "step.attempt", "run.interrupted"]
    assert [r["seq"] for r in records] == [0, 1, 2]


# -- real runs ----------------------------------------------------------------------------------

PROBE = '''\
"""A step's command: assert the log file ends with this step's records, in this order."""
import json, pathlib, sys

log_dir, step, *expected = sys.argv[1:]
[log] = pathlib.Path(log_dir).glob("*.jsonl")
records = [json.loads(line) for line in log.read_bytes().splitlines()]
tail = [(r["type"], r["data"].get("step")) for r in records[-len(expected):]]
want = [(kind, step) for kind in expected]
if tail != want:
    sys.exit(f"log ends with {tail}, expected {want}")
last = records[-1]
signed = "signing" in records[0]["data"]
if signed and "auth" not in last:
    sys.exit(f"seq {last['seq']} is the last record before the command and it is not signed")
print("durable before the command:", ", ".join(kind for kind in expected))
'''


def _probe(tmp_path: Path) -> Path:
    path = tmp_path / "probe.py"
    path.write_text(PROBE)
    return path


def _keygen(tmp_path: Path) -> Path | None:
    if shutil.which("ssh-keygen") is None:
        return None
    key = tmp_path / "signing-key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", str(key)],
        check=True,
        timeout=30,
    )
    return key


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_records_before_a_command_are_in_the_file_before_it_runs(
    run_cli: Any, write_runbook: Any, tmp_path: Path, signed: bool
) -> None:
    key = _keygen(tmp_path) if signed else None
    if signed and key is None:
        pytest.skip("ssh-keygen (OpenSSH) is not installed")
    logs, probe, py = tmp_path / "logs", _probe(tmp_path), sys.executable
    rb = write_runbook(
        f"""
        apiVersion: runbook/v1
        kind: Runbook
        metadata: {{name: durable, title: Durable points, severity: P2}}
        steps:
          - id: first
            phase: detect
            check: {{shell: {{argv: ["true"]}}}}
            expect: ["exit_code == 0"]
          - id: probe
            phase: triage
            check: {{shell: {{argv: ["{py}", "{probe}", "{logs}", probe,
                                     step.started, step.attempt]}}}}
          - id: fix
            phase: mitigate
            action: {{shell: {{argv: ["{py}", "{probe}", "{logs}", fix,
                                      step.started, step.confirmation, step.attempt]}}}}
            confirm: "Fix it?"
        """
    )
    args = ["--signing-key", str(key)] if key else []
    result = run_cli("run", str(rb), "--yes", *args)
    assert result.code == 0, result.text
    [log] = logs_in(logs)
    records = read_log(log)
    outputs = {
        r["data"]["step"]: r["data"]["fields"]["stdout"]
        for r in records
        if r["type"] == "step.result"
    }
    assert "durable before the command: step.started, step.attempt" in outputs["probe"]
    assert "step.confirmation, step.attempt" in outputs["fix"]
    # the step before the probe: its result, expectation and finish shared one commit
    first = [r for r in records if r["data"].get("step") == "first"]
    assert [r["type"] for r in first] == [
        "step.started",
        "step.attempt",
        "step.result",
        "step.expectation",
        "step.finished",
    ]
    if signed:
        assert ["auth" in r for r in first] == [False, True, False, False, True]
        assert run_cli("log", "verify", str(log), "--key", f"{key}.pub").code == 0


def test_a_notification_goes_out_only_once_the_step_it_reports_is_on_disk(
    run_cli: Any, write_runbook: Any, tmp_path: Path
) -> None:
    """Observers send the log head out: it includes the step's own finish record."""
    rb = write_runbook(
        """
        apiVersion: runbook/v1
        kind: Runbook
        metadata: {name: notified, title: Notified, severity: P1}
        steps:
          - id: health
            phase: detect
            check: {shell: {argv: ["false"]}}
            on_failure: continue
          - {id: after, phase: triage, check: {shell: {argv: ["true"]}}}
        """
    )
    result = run_cli("run", str(rb), env={"RUNBOOK_NOTIFY_STDOUT": "1"})
    assert result.code == 0, result.text
    [sent] = [
        json.loads(line)["notification"]
        for line in result.out.splitlines()
        if line.startswith('{"notification"') and '"kind": "initial"' in line
    ]
    [log] = logs_in(tmp_path / "logs")
    records = read_log(log)
    finished = next(
        r for r in records if r["type"] == "step.finished" and r["data"]["step"] == "health"
    )
    assert sent["runbook_notification"]["step"] == "health"
    head = sent["runbook_notification"]["log_seq"]
    assert head >= finished["seq"], "the log head sent out lacks the finish it reports"
    assert records[head]["sha256"] == sent["runbook_notification"]["log_sha256"]


def test_the_operator_is_asked_only_once_the_step_start_is_on_disk(
    write_runbook: Any, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """On a real terminal: when the question shows, the log file already ends with the
    step's start, and the console has shown it."""
    import pty

    rb = write_runbook(
        """
        apiVersion: runbook/v1
        kind: Runbook
        metadata: {name: asked, title: Asked, severity: P2}
        steps:
          - {id: look, phase: detect, check: {shell: {argv: ["true"]}}}
          - id: fix
            phase: mitigate
            action: {shell: {argv: ["true"]}}
            confirm: "Fix it?"
        """
    )
    pid, fd = pty.fork()
    if pid == 0:  # the child: runbook on a terminal
        os.chdir(tmp_path)
        os.execve(sys.executable, [sys.executable, "-m", "runbook", "run", str(rb)], cli_env)
    output, tail = b"", None
    until = time.monotonic() + 120
    while time.monotonic() < until:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
        if tail is None and b"[y/N]" in output:
            [log] = logs_in(tmp_path / "logs")
            tail = [(r["type"], r["data"].get("step")) for r in read_log(log)[-2:]]
            os.write(fd, b"y\n")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, output.decode(errors="replace")
    assert tail == [("step.finished", "look"), ("step.started", "fix")]


STEPS = 10


def _crash_runbook(tmp_path: Path) -> Path:
    """STEPS checks that leave a mark when their command runs, an action in the middle."""
    marks, ledger = tmp_path / "marks", tmp_path / "ledger"
    marks.mkdir()
    steps = []
    for i in range(STEPS):
        if i == STEPS // 2:
            steps.append(
                f"""
                  - id: act
                    phase: mitigate
                    action: {{shell: {{command: "touch {marks}/act; echo act >> {ledger}"}}}}
                    confirm: "Act?"
                """
            )
        steps.append(
            f"""
              - id: s{i}
                phase: {"detect" if i < STEPS // 2 else "resolve"}
                check: {{shell: {{command: "touch {marks}/s{i}; sleep 0.0{i % 4}"}}}}
                expect: ["exit_code == 0"]
            """
        )
    body = "".join(textwrap.dedent(step) for step in steps)
    rb = tmp_path / "crash.yaml"
    rb.write_text(
        "apiVersion: runbook/v1\nkind: Runbook\n"
        "metadata: {name: crash, title: Crash, severity: P2}\nsteps:\n"
        + textwrap.indent(body.strip("\n"), "  ")
        + "\n"
    )
    return rb


def _kill_at(proc: subprocess.Popen[bytes], logs: Path, records: int, budget: float = 120) -> None:
    """SIGKILL `proc` as soon as its log holds `records` complete lines (or it ended)."""
    until = time.monotonic() + budget
    while time.monotonic() < until and proc.poll() is None:
        found = logs_in(logs)
        if found and found[0].read_bytes().count(b"\n") >= records:
            break
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)


def _acknowledged(stdout: bytes) -> list[dict[str, Any]]:
    """Events the console printed (`--format json`) before the kill: complete lines only."""
    events = []
    for line in stdout.splitlines(keepends=True):
        if line.endswith(b"\n") and line.startswith(b"{"):
            events.append(json.loads(line))
    return events


def _check_crash(run_cli: Any, tmp_path: Path, stdout: bytes, key: Path | None) -> Path:
    """What a SIGKILL may and may not leave; returns the log."""
    [log] = logs_in(tmp_path / "logs")
    records = read_log(log)
    by_seq = {r["seq"]: r for r in records}
    shown = _acknowledged(stdout)
    assert shown, "the console showed nothing: the run was killed before its header?"
    for event in shown:  # everything shown is durable, byte for byte
        assert by_seq[event["seq"]]["sha256"] == event["sha256"], event
    for mark in (tmp_path / "marks").iterdir():  # every command that ran had its start on disk
        mine = [r["type"] for r in records if r["data"].get("step") == mark.name]
        assert mine[:2] == ["step.started", "step.attempt"] or mine[:3] == [
            "step.started",
            "step.confirmation",
            "step.attempt",
        ], (mark.name, mine)
    verify = run_cli("log", "verify", str(log), *(["--key", f"{key}.pub"] if key else []))
    assert verify.code == 5, verify.text
    assert "truncation: TRUNCATED" in verify.out and "TAMPERED" not in verify.text
    assert "chain:      ok" in verify.out
    if key is not None:
        assert "signature:  ok: seq 0-" in verify.out, verify.out
        # every commit ends in a signed record: the last record of the log, and every
        # record right before a command ran
        before_commands = [r for r in records if r["type"] == "step.attempt"]
        assert all("auth" in r for r in before_commands + records[-1:])
    return log


def _resume(run_cli: Any, rb: Path, log: Path, tmp_path: Path) -> None:
    """--resume finishes the run; a finished action is not repeated."""
    records = read_log(log)
    act = [r["type"] for r in records if r["data"].get("step") == "act"]
    started_unfinished = "step.attempt" in act and "step.finished" not in act
    extra = ["--rerun-unfinished", "act"] if started_unfinished else []
    before = set(logs_in(tmp_path / "logs"))
    result = run_cli("run", str(rb), "--yes", "--resume", str(log), *extra, timeout=300)
    assert result.code == 0, result.text
    [new] = sorted(set(logs_in(tmp_path / "logs")) - before)
    assert verify_log(new).ok
    restored = {r["data"]["step"] for r in read_log(new) if r["type"] == "step.restored"}
    finished = {r["data"]["step"] for r in records if r["type"] == "step.finished"}
    assert restored == finished
    ledger = (tmp_path / "ledger").read_text().splitlines()
    if "act" in finished:
        assert ledger == ["act"]  # ran once, in the killed run, and was not run again


SEEDS = [random.Random(n).randrange(3, 5 * STEPS) for n in range(4)]


@pytest.mark.parametrize("records", SEEDS, ids=[f"at-record-{n}" for n in SEEDS])
def test_sigkill_at_a_chosen_record_loses_only_what_was_not_shown(
    run_cli: Any, cli_env: dict[str, str], tmp_path: Path, records: int
) -> None:
    key = _keygen(tmp_path) if records % 2 else None  # half the runs signed
    rb = _crash_runbook(tmp_path)
    args = ["--signing-key", str(key)] if key else []
    proc = subprocess.Popen(
        [sys.executable, "-m", "runbook", "run", str(rb), "--yes", "--format", "json", *args],
        cwd=tmp_path,
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    _kill_at(proc, tmp_path / "logs", records)
    stdout, _ = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip(f"the run finished before record {records} was reached")
    assert proc.returncode == -signal.SIGKILL
    log = _check_crash(run_cli, tmp_path, stdout, key)
    _resume(run_cli, rb, log, tmp_path)


def test_a_step_that_kills_its_runner_finds_its_start_on_disk_and_resume_finishes(
    run_cli: Any, cli_env: dict[str, str], tmp_path: Path
) -> None:
    rb = _crash_runbook(tmp_path)
    done = tmp_path / "killed-once"
    kill = f"test -f {done} || {{ touch {done}; kill -9 $PPID; sleep 30; }}"
    mark = f"touch {tmp_path / 'marks'}/s7;"
    text = rb.read_text().replace(f'command: "{mark}', f'command: "{kill}; {mark}')
    assert text != rb.read_text()
    rb.write_text(text)
    proc = subprocess.Popen(
        [sys.executable, "-m", "runbook", "run", str(rb), "--yes", "--format", "json"],
        cwd=tmp_path,
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    stdout, _ = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    log = _check_crash(run_cli, tmp_path, stdout, None)
    tail = [(r["type"], r["data"].get("step")) for r in read_log(log)[-2:]]
    assert tail == [("step.started", "s7"), ("step.attempt", "s7")]
    _resume(run_cli, rb, log, tmp_path)
    assert os.path.exists(tmp_path / "marks" / "s9")
