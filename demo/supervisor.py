"""A minimal process supervisor for the demo: start, stop, restart, status, logs.

It plays the part systemd plays in production, so the shipped service-outage
runbook can restart a real process on a machine without systemd as PID 1.
State (pid, port, log) lives in `$RUNBOOK_DEMO_DIR` (default: a per-user
directory under /tmp); everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


def state_dir() -> Path:
    default = Path("/tmp") / f"runbook-demo-{os.getuid()}"
    path = Path(os.environ.get("RUNBOOK_DEMO_DIR") or default)
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    name: str
    root: Path

    @property
    def meta(self) -> Path:
        return self.root / f"{self.name}.json"

    @property
    def log(self) -> Path:
        return self.root / f"{self.name}.log"

    def read(self) -> dict[str, int | float]:
        try:
            return dict(json.loads(self.meta.read_text()))
        except (OSError, ValueError):
            return {}

    def pid(self) -> int | None:
        pid = self.read().get("pid")
        if not pid:
            return None
        try:
            with open(f"/proc/{int(pid)}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return None
        # An exited service whose parent is gone stays a zombie where PID 1 never reaps.
        return None if state in ("Z", "X") else int(pid)

    def port(self) -> int:
        return int(self.read().get("port") or 0) or free_port()

    def start(self, port: int | None = None) -> int:
        if self.pid():
            return 0
        port = port or self.port()
        with open(self.log, "ab") as log:  # appended: `logs` shows what happened before the restart
            proc = subprocess.Popen(
                [sys.executable, "-m", "runbook_demo.service", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.meta.write_text(json.dumps({"pid": proc.pid, "port": port, "since": time.time()}))
        return 0 if _wait_listening(port) else 1

    def stop(self) -> int:
        pid = self.pid()
        if pid:
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                if self.pid() is None:
                    break
                time.sleep(0.05)
        meta = self.read()
        meta["pid"] = 0
        self.meta.write_text(json.dumps(meta))
        return 0

    def status(self) -> int:
        pid, meta = self.pid(), self.read()
        if pid:
            since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(meta["since"])))
            print(
                f"● {self.name} - runbook demo service\n"
                f"     Active: active (running) since {since}\n"
                f"   Main PID: {pid}\n"
                f"     Listen: http://127.0.0.1:{meta.get('port')}"
            )
            return 0
        print(f"○ {self.name} - runbook demo service\n     Active: inactive (dead)")
        return 3  # what `systemctl status` returns for an inactive unit

    def logs(self, lines: int) -> int:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            text = []
        print("\n".join(text[-lines:]))
        return 0

    def wedge(self) -> int:
        pid = self.pid()
        if not pid:
            print(f"{self.name} is not running", file=sys.stderr)
            return 1
        os.kill(pid, signal.SIGUSR1)
        return 0


def _wait_listening(port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False
