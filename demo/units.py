"""The demo's systemd: a real unit managed by docker-systemctl-replacement, a real journal.

`UnitDemo` lays out a root directory (`STATE/systemd`) with
`etc/systemd/system/demo-api.service` (ExecStart: this interpreter running the
demo service, stdout appended to `var/log/demo-api.log`) and a `bin/` with two
shims that the tour puts first on PATH for the `runbook run` it starts:

- `systemctl` execs `systemctl3.py --root=ROOT -c MinimumYield=0.1`, which reads
  the real unit file and starts/stops/restarts the real process, no systemd as PID 1;
- `journalctl` rebuilds `ROOT/journal/demo.journal` from the unit's log with
  `systemd-journal-remote`, then execs the real `/usr/bin/journalctl` on it.

Nothing here needs root; everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from runbook_demo import journal
from runbook_demo.supervisor import _wait_listening

UNIT_FILE = """\
# Written by `runbook-demo tour`: the demo HTTP service as a real systemd unit.
[Unit]
Description=runbook demo API ({name})

[Service]
Type=simple
ExecStart={python} -m runbook_demo.service {port}
StandardOutput=append:{log}
StandardError=inherit
"""


def systemctl3() -> str | None:
    """docker-systemctl-replacement's `systemctl3.py` (pip install -e '.[dev]'), if installed."""
    beside = Path(sys.executable).parent / "systemctl3.py"
    return str(beside) if beside.exists() else shutil.which("systemctl3.py")


def missing_tools() -> list[str]:
    """What the systemd act needs and this machine lacks, each with how to install it."""
    missing = []
    if systemctl3() is None:
        missing.append(
            "docker-systemctl-replacement (systemctl3.py): pip install -e '.[dev]' "
            "(or pip install docker-systemctl-replacement)"
        )
    for tool, package in (
        (journal.JOURNAL_REMOTE, "systemd-journal-remote"),
        (journal.JOURNALCTL, "systemd"),
    ):
        if not os.access(tool, os.X_OK):
            missing.append(f"{tool}: bash .ci/setup-system as root (apt-get install {package})")
    return missing


class UnitDemo:
    def __init__(self, root: Path, name: str) -> None:
        self.root, self.name = root, name
        self.bin = root / "bin"
        self.unit = root / "etc" / "systemd" / "system" / f"{name}.service"
        self.log = root / "var" / "log" / f"{name}.log"
        self.pids: set[int] = set()  # every MainPID seen, killed at cleanup if still alive

    def prepare(self, port: int) -> None:
        """Write the shims, stop what a previous tour may have left, write the unit."""
        tool = systemctl3()
        assert tool is not None, "missing_tools() is checked first"
        for folder in (self.unit.parent, self.log.parent, self.bin):
            folder.mkdir(parents=True, exist_ok=True)
        q = shlex.quote
        self._shim(
            "systemctl",
            "# docker-systemctl-replacement managing the units under this root\n"
            f"exec {q(sys.executable)} {q(tool)} --root={q(str(self.root))} "
            '-c MinimumYield=0.1 "$@"\n',
        )
        self._shim(
            "journalctl",
            "# the real journalctl on a journal file systemd-journal-remote makes from the log\n"
            f'exec {q(sys.executable)} -m runbook_demo.journal {q(str(self.root))} "$@"\n',
        )
        if self.unit.exists():
            self.main_pid()  # a crashed tour's service: stopped here, killed at cleanup if need be
            self.systemctl("stop", self.name)
        for stale in (self.log, self.root / "journal" / "demo.journal"):
            stale.unlink(missing_ok=True)
        self.unit.write_text(
            UNIT_FILE.format(name=self.name, python=sys.executable, port=port, log=self.log)
        )

    def _shim(self, name: str, body: str) -> None:
        path = self.bin / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)

    def env(self, base: dict[str, str]) -> dict[str, str]:
        return {**base, "PATH": str(self.bin) + os.pathsep + base.get("PATH", "")}

    def systemctl(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / "systemctl"), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    def main_pid(self) -> int:
        shown = self.systemctl("show", "-p", "MainPID", self.name).stdout
        value = shown.strip().partition("=")[2]
        pid = int(value) if value.isdigit() else 0
        if pid:
            self.pids.add(pid)
        return pid

    def start(self, port: int) -> str | None:
        """Start the unit and wait for it to listen; None, or why it did not come up."""
        started = self.systemctl("start", self.name)
        if started.returncode != 0:
            return f"systemctl start {self.name} failed: {started.stderr.strip()}"
        self.main_pid()
        if not _wait_listening(port):
            return f"{self.name} did not listen on 127.0.0.1:{port}; see {self.log}"
        return None

    def wedge(self) -> int:
        pid = self.main_pid()
        if pid:
            os.kill(pid, signal.SIGUSR1)
        return pid

    def cleanup(self) -> None:
        """Stop the unit, then kill any process of it still alive (by the pids seen)."""
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            self.main_pid()
            self.systemctl("stop", self.name)
        for pid in self.pids:
            if _alive(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Running (not a zombie) and still the demo service, not a recycled pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X") and b"runbook_demo.service" in cmdline
