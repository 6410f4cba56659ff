"""Stop signals against a real `runbook run`: SIGINT, SIGTERM and SIGHUP all end a run cleanly.

Cleanly means: the step's whole process group is gone (nothing left running on
the host after the operator's SSH session dropped), the log ends with a
`run.interrupted` record naming the signal and verifies, and the exit code is
130. A signal before the run starts (while loading) also exits 130, with no log.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support import sshd
from support.helpers import logs_in, process_gone

from runbook.log.journal import read_log, verify_log

STOP_SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]

HEAD = """\
apiVersion: runbook/v1
kind: Runbook
metadata: {name: t, title: Test runbook, severity: P2}
"""


def start_run(tmp_path: Path, cli_env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "runbook", "run", *args],
        cwd=tmp_path,
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_for(
    what: str, ready: Callable[[], object], proc: subprocess.Popen[bytes], budget: float = 20.0
) -> None:
    until = time.monotonic() + budget
    while time.monotonic() < until:
        if ready():
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"runbook exited {proc.returncode} before {what}: {out!r} {err!r}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def group_gone(pgid: int) -> bool:
    """No running (non-zombie) process is left in process group `pgid`."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        state, _ppid, pgrp = stat[stat.rfind(b")") + 2 :].split()[:3]
        if int(pgrp) == pgid and state not in (b"Z", b"X"):
            return False
    return True


def eventually(check: Callable[[], bool], budget: float = 3.0) -> bool:
    """SIGKILL and reaping take a moment after runbook exits."""
    until = time.monotonic() + budget
    while time.monotonic() < until:
        if check():
            return True
        time.sleep(0.05)
    return check()


@pytest.mark.parametrize("sig", STOP_SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_stop_signal_ends_the_step_group_and_closes_the_log(
    sig: signal.Signals, write_runbook, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    leader, child = tmp_path / "leader.pid", tmp_path / "child.pid"
    rb = write_runbook(
        HEAD
        + f"""
steps:
  - id: long
    phase: detect
    check: {{shell: {{command: "echo $$ > {leader}; sleep 30 & echo $! > {child}; wait"}}}}
  - id: after
    phase: detect
    check: {{shell: {{argv: [touch, {tmp_path / "after-ran"}]}}}}
"""
    )
    proc = start_run(tmp_path, cli_env, str(rb))
    wait_for("the step's commands", lambda: child.is_file() and child.read_text().strip(), proc)
    proc.send_signal(sig)
    started = time.monotonic()
    _out, err = proc.communicate(timeout=30)
    name = signal.Signals(sig).name

    assert proc.returncode == 130, err.decode()
    assert time.monotonic() - started < 10
    assert b"Traceback" not in err
    pgid = int(leader.read_text())
    assert eventually(lambda: group_gone(pgid)), f"process group {pgid} still running"
    assert process_gone(int(child.read_text()))
    assert not (tmp_path / "after-ran").exists()
    (log,) = logs_in(tmp_path / "logs")
    check = verify_log(log)
    assert check.ok, check.reason
    last = read_log(log)[-1]
    assert last["type"] == "run.interrupted"
    assert last["data"]["step"] == "long"
    assert f"({name})" in last["data"]["reason"]
    for other in STOP_SIGNALS:
        if other != sig:
            assert signal.Signals(other).name not in last["data"]["reason"]


def test_a_second_signal_does_not_cut_the_cleanup_short(
    write_runbook, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """SIGHUP then SIGTERM (a dropped session, then the system's shutdown): one clean stop."""
    leader = tmp_path / "leader.pid"
    rb = write_runbook(
        HEAD
        + f"""
steps:
  - id: long
    phase: detect
    check: {{shell: {{command: "trap '' TERM; sleep 30 & echo $$ > {leader}; wait"}}}}
"""
    )
    proc = start_run(tmp_path, cli_env, str(rb))
    wait_for("the step's shell", lambda: leader.is_file() and leader.read_text().strip(), proc)
    proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)  # the shell ignores SIGTERM: runbook is waiting to SIGKILL its group
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err.decode()
    assert eventually(lambda: group_gone(int(leader.read_text())))
    (log,) = logs_in(tmp_path / "logs")
    assert verify_log(log).ok
    last = read_log(log)[-1]
    assert last["type"] == "run.interrupted" and "(SIGHUP)" in last["data"]["reason"]


@pytest.mark.parametrize("sig", STOP_SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_stop_signal_before_the_run_exits_130_without_a_log(
    sig: signal.Signals, write_runbook, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """While runbook reads its inputs (here an inventory that is a FIFO nobody writes to)."""
    rb = write_runbook(
        HEAD + "steps:\n  - {id: a, phase: detect, check: {shell: {argv: ['true']}}}\n"
    )
    fifo = tmp_path / "inventory.yaml"
    os.mkfifo(fifo)
    proc = start_run(tmp_path, cli_env, str(rb), "--inventory", str(fifo))
    writer = None

    def reading() -> bool:
        nonlocal writer
        try:  # succeeds only once runbook has the FIFO open for reading
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
            return False
        return True

    try:
        wait_for("runbook to read the inventory", reading, proc)
        time.sleep(0.1)  # from open() into read(), which waits for our first byte
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=30)
    finally:
        if writer is not None:
            os.close(writer)
    name = signal.Signals(sig).name
    assert proc.returncode == 130, err.decode()
    assert err.decode().strip() == f"runbook: interrupted ({name})"
    assert logs_in(tmp_path / "logs") == []


@pytest.mark.slow
def test_stop_signal_ends_the_remote_command_over_ssh(
    write_runbook, tmp_path: Path, cli_env: dict[str, str], tmp_path_factory
) -> None:
    reason = sshd.ensure_sshd()
    if reason:
        pytest.skip(reason)
    fleet = sshd.shared_fleet(tmp_path_factory.mktemp("sshd"))
    marker = "307.61"  # a command line no other test runs: how pgrep finds the remote sleep
    rb = write_runbook(
        HEAD
        + f"""
targets:
  web: {fleet.target_yaml(["127.0.0.9"])}
steps:
  - id: remote
    phase: detect
    check: {{shell: {{argv: [sh, -c, "sleep {marker} & wait"], target: web}}}}
"""
    )

    def remote_sleep() -> str:
        found = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True)
        return found.stdout.strip()

    proc = start_run(tmp_path, cli_env, str(rb))
    wait_for("the remote command", remote_sleep, proc)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err.decode()
    assert eventually(lambda: remote_sleep() == ""), "the remote command is still running"
    (log,) = logs_in(tmp_path / "logs")
    assert verify_log(log).ok
    last = read_log(log)[-1]
    assert last["type"] == "run.interrupted" and "(SIGTERM)" in last["data"]["reason"]
