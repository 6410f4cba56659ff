"""A real OpenSSH server on loopback, one listen address per fake host.

`start_fleet` runs our own `sshd -D` processes (never the system one): its
own host key, a known_hosts that trusts it, a client key authorised for the
current user, and one `ListenAddress` per host 127.0.0.2.. (sshd takes at most
16, so one process per 16 hosts). `shared_fleet` starts 20 hosts once per
test session; teardown kills exactly the PIDs we started. `SetEnv PATH` puts a
directory of test shims (the `systemctl` shim) first on the remote PATH.
"""

from __future__ import annotations

import atexit
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SSHD = "/usr/sbin/sshd"
PER_PROCESS = 16
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Fleet:
    """Everything a test needs to reach the fake hosts."""

    addresses: list[str]
    port: int
    user: str
    key_file: Path
    known_hosts: Path
    host_key_line: str
    shim_dir: Path
    pids: list[int] = field(default_factory=list)

    def options(self, **extra: Any) -> dict[str, Any]:
        """Target options for an ssh target on these hosts (no ~/.ssh/config)."""
        return {
            "port": self.port,
            "user": self.user,
            "key_file": str(self.key_file),
            "known_hosts": str(self.known_hosts),
            "ssh_config": "",
            "agent": False,
            **extra,
        }

    def target_yaml(self, hosts: list[str] | None = None, **extra: Any) -> str:
        """A `targets:` entry (flow YAML) for a runbook."""
        import json

        opts = {"transport": "ssh", "hosts": hosts or self.addresses, **self.options(**extra)}
        return json.dumps(opts)

    def stop(self) -> None:
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                continue
        self.pids.clear()


def ensure_sshd() -> str | None:
    """None when sshd is there (installing it via .ci/setup-system if needed), else why not."""
    if not os.path.exists(SSHD):
        subprocess.run(["bash", str(ROOT / ".ci" / "setup-system")], check=False)
    if not os.path.exists(SSHD):
        return f"{SSHD} is missing and .ci/setup-system could not install openssh-server"
    return None


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    public = Path(str(path) + ".pub").read_text().split()
    return " ".join(public[:2])


def free_port(addresses: list[str]) -> int:
    """A port free on every address (bound and released here; sshd takes it next)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((addresses[0], 0))
            port = int(probe.getsockname()[1])
        try:
            for address in addresses[1:]:
                with socket.socket() as s:
                    s.bind((address, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no common free port on the loopback addresses")


def _config(root: Path, index: int, addresses: list[str], port: int, fleet: Fleet) -> Path:
    lines = [
        f"Port {port}",
        *[f"ListenAddress {a}" for a in addresses],
        f"HostKey {root / 'host_key'}",
        f"PidFile {root / f'sshd{index}.pid'}",
        f"AuthorizedKeysFile {root / 'authorized_keys'}",
        "UsePAM no",
        "StrictModes no",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password",
        "MaxStartups 200:30:300",
        "MaxSessions 50",
        "LogLevel ERROR",
        f"SetEnv PATH={fleet.shim_dir}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
    ]
    path = root / f"sshd{index}.conf"
    path.write_text("\n".join(lines) + "\n")
    return path


def start_fleet(root: Path, count: int = 20, first: int = 2, user: str | None = None) -> Fleet:
    """Start sshd processes for 127.0.0.{first}..; wait until every address accepts.

    `user` logs in with the fleet's key (default: the current user).
    """
    root.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)
    # past 127.0.0.254 the hosts go on in 127.0.1.1.. (all of 127/8 is loopback)
    addresses = [f"127.0.{n // 254}.{n % 254 + 1}" for n in range(first - 1, first - 1 + count)]
    host_key_line = _keygen(root / "host_key")
    client_line = _keygen(root / "client_key")
    (root / "authorized_keys").write_text(client_line + "\n")
    port = free_port(addresses)
    known = root / "known_hosts"
    known.write_text("".join(f"[{a}]:{port} {host_key_line}\n" for a in addresses))
    shim_dir = root / "shims"
    shim_dir.mkdir(exist_ok=True)
    fleet = Fleet(
        addresses,
        port,
        user or getpass.getuser(),
        root / "client_key",
        known,
        host_key_line,
        shim_dir,
    )
    for index in range(0, count, PER_PROCESS):
        group = addresses[index : index + PER_PROCESS]
        conf = _config(root, index, group, port, fleet)
        log = open(root / f"sshd{index}.log", "wb")  # noqa: SIM115 - kept open for sshd
        proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(conf)], stderr=log, stdin=subprocess.DEVNULL
        )
        fleet.pids.append(proc.pid)
    _wait_ready(fleet, root, budget=max(10.0, count / 20))
    return fleet


def _wait_ready(fleet: Fleet, root: Path, budget: float = 10.0) -> None:
    until = time.monotonic() + budget
    pending = list(fleet.addresses)
    while pending and time.monotonic() < until:
        address = pending[0]
        try:
            with socket.create_connection((address, fleet.port), timeout=0.5):
                pending.pop(0)
        except OSError:
            time.sleep(0.05)
    if pending:
        fleet.stop()
        logs = "".join(p.read_text() for p in root.glob("sshd*.log"))
        raise RuntimeError(f"sshd did not listen on {pending[0]}:{fleet.port}: {logs}")


_SHARED: dict[str, Fleet] = {}


def shared_fleet(root: Path) -> Fleet:
    """The session's 20-host fleet, started on first use and stopped at exit."""
    if "fleet" not in _SHARED:
        fleet = start_fleet(root, 20)
        _SHARED["fleet"] = fleet
        atexit.register(fleet.stop)
    return _SHARED["fleet"]


def install_shim(fleet_or_dir: Fleet | Path, name: str, script: str) -> Path:
    """Write an executable shim (e.g. `systemctl`) into the shim directory."""
    directory = fleet_or_dir.shim_dir if isinstance(fleet_or_dir, Fleet) else fleet_or_dir
    path = directory / name
    path.write_text(script)
    path.chmod(0o755)
    return path


def which(name: str) -> str | None:
    return shutil.which(name)
