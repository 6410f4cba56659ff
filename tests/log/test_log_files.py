"""The log file on a real filesystem: its modes, and a disk that is full or read-only.

A full or read-only log filesystem is tested on a real one: a 64 KiB tmpfs
mounted for the test (root only; the tests skip and say why elsewhere). Either
way the operator gets one line naming the path and the reason, exit 2, and no
log file claiming a run that never started.
"""

from __future__ import annotations

import os
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.helpers import logs_in

from runbook.log.journal import verify_log

RUNBOOK = """\
apiVersion: runbook/v1
kind: Runbook
metadata: {name: t, title: Test runbook, severity: P2}
steps:
  - {id: a, phase: detect, check: {shell: {argv: ['true']}}}
"""


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def assert_one_line_error(stderr: str, *parts: str) -> None:
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("runbook: error: ")
    for part in parts:
        assert part in lines[0], lines[0]


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A fresh 64 KiB tmpfs: real ENOSPC and EROFS, unmounted afterwards."""
    mount_point = tmp_path / f"fs-{uuid.uuid4().hex[:8]}"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def fill(directory: Path) -> None:
    """Take every free block of the filesystem `directory` is on."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


def test_log_is_0600_in_a_0700_directory(run_cli, write_runbook, tmp_path: Path) -> None:
    rb = write_runbook(RUNBOOK)
    result = run_cli("run", str(rb), "--log-dir", "new/logs")
    assert result.code == 0, result.text
    (log,) = logs_in(tmp_path / "new" / "logs")
    assert mode_of(log) == 0o600
    assert mode_of(log.parent) == 0o700


def test_an_existing_log_directory_keeps_its_mode(run_cli, write_runbook, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    result = run_cli("run", str(write_runbook(RUNBOOK)), "--log-dir", str(shared))
    assert result.code == 0, result.text
    assert mode_of(shared) == 0o755
    assert mode_of(logs_in(shared)[0]) == 0o600


def test_log_mode_comes_from_the_environment(run_cli, write_runbook, tmp_path: Path) -> None:
    rb = write_runbook(RUNBOOK)
    result = run_cli("run", str(rb), "--log-dir", "team", env={"RUNBOOK_LOG_MODE": "0640"})
    assert result.code == 0, result.text
    (log,) = logs_in(tmp_path / "team")
    umask = current_umask()
    assert mode_of(log) == 0o640 & ~umask
    assert mode_of(log.parent) == 0o750 & ~umask


@pytest.mark.parametrize("value", ["rw", "0400", "1777"])
def test_a_bad_log_mode_is_invalid_input(run_cli, write_runbook, tmp_path, value) -> None:
    result = run_cli("run", str(write_runbook(RUNBOOK)), env={"RUNBOOK_LOG_MODE": value})
    assert result.code == 2
    assert_one_line_error(result.err, "RUNBOOK_LOG_MODE", "0600")
    assert logs_in(tmp_path / "logs") == []


def test_full_disk_before_the_run_is_one_line_and_leaves_no_log(
    run_cli, write_runbook, small_fs: Path
) -> None:
    logs = small_fs / "logs"
    fill(small_fs)
    result = run_cli("run", str(write_runbook(RUNBOOK)), "--log-dir", str(logs))
    assert result.code == 2
    assert_one_line_error(result.err, str(logs), "No space left on device")
    assert logs_in(logs) == []


def test_disk_filling_during_the_run_stops_it_with_one_line(
    run_cli, write_runbook, small_fs: Path, tmp_path: Path
) -> None:
    logs = small_fs / "logs"
    # The step fills the disk, then prints more than the log's first page can hold.
    command = f"cat /dev/zero > {small_fs}/filler; head -c 6000 /dev/zero | tr '\\\\0' x"
    rb = write_runbook(
        RUNBOOK.split("steps:")[0]
        + f"""steps:
  - id: fill
    phase: detect
    check: {{shell: {{command: "{command}"}}}}
  - id: after
    phase: detect
    check: {{shell: {{argv: [touch, {tmp_path / "after-ran"}]}}}}
"""
    )
    result = run_cli("run", str(rb), "--log-dir", str(logs))
    assert result.code == 2, result.text
    (log,) = logs_in(logs)
    assert_one_line_error(result.err, str(log), "No space left on device", "run stops")
    assert not (tmp_path / "after-ran").exists()
    check = verify_log(log)
    assert check.truncated and not check.tampered, check.reason


def test_read_only_log_directory_is_one_line(run_cli, write_runbook, small_fs: Path) -> None:
    logs = small_fs / "logs"
    logs.mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    rb = write_runbook(RUNBOOK)
    for where in (logs, logs / "new"):
        result = run_cli("run", str(rb), "--log-dir", str(where))
        assert result.code == 2
        assert_one_line_error(result.err, str(where), "Read-only file system")
    assert logs_in(logs) == []
