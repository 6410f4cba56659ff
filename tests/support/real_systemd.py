"""A real systemd service manager (`systemd --user`) in a sandbox, for differential tests.

On a machine (or container) where systemd is not PID 1, real `systemctl` has
nothing to talk to, which is why most tests use docker-systemctl-replacement.
The peer itself is still here: `/lib/systemd/systemd --user` runs as a
private manager when it believes the system was booted with systemd, i.e.
when `/run/systemd/system` exists. `user_manager()` gives it that belief in a
private mount namespace (`unshare --mount`, a tmpfs on /run) and keeps it
inside a cgroup of its own: a manager takes the cgroup it starts in as its
root and moves every process found there into `init.scope`, so started in the
machine's root cgroup it would move everybody's processes (PID 1 included).
The guard below checks that PID 1's cgroups did not change and undoes it if
they did. Units live in a temporary `XDG_CONFIG_HOME`; HOME and the runtime
directory are temporary too. Teardown stops the manager by PID, kills what is
left in its cgroup, and removes the cgroups it created.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SYSTEMD = next(
    (p for p in ("/lib/systemd/systemd", "/usr/lib/systemd/systemd") if os.path.exists(p)), ""
)
SYSTEMCTL = shutil.which("systemctl") or ""
# The manager's default unit: an empty target, so nothing of /etc/systemd/user starts.
IDLE_TARGET = "[Unit]\nDescription=runbook test manager\nDefaultDependencies=no\n"


def unavailable() -> str | None:
    """Why a real systemd manager cannot be started here, or None when it can."""
    if not SYSTEMD or not SYSTEMCTL:
        return "systemd and systemctl are not installed"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    if os.geteuid() != 0:
        return "needs root (a private mount namespace and a cgroup of its own)"
    if Path("/proc/1/comm").read_text().strip() == "systemd":
        return "systemd is PID 1 here: the test starts its own manager only where none runs"
    if not _hierarchies():
        return "no writable cgroup hierarchy found"
    return None


@dataclass
class UserManager:
    """A running `systemd --user` and how to reach it."""

    root: Path
    pid: int
    env: dict[str, str]
    shim: Path
    cgroups: list[Path] = field(default_factory=list)

    @property
    def unit_dir(self) -> Path:
        return self.root / "config" / "systemd" / "user"

    def systemctl(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Real `systemctl --user ARGS` against this manager."""
        return subprocess.run(
            [SYSTEMCTL, "--user", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=check,
        )

    def write_unit(self, name: str, text: str) -> None:
        (self.unit_dir / name).write_text(text)

    def wait_for(self, unit: str, state: str, timeout: float = 20.0) -> None:
        """Poll until `unit`'s ActiveState is `state`."""
        until = time.monotonic() + timeout
        seen = ""
        while time.monotonic() < until:
            seen = self.systemctl("show", "-p", "ActiveState", unit).stdout.strip()
            if seen == f"ActiveState={state}":
                return
            time.sleep(0.05)
        raise AssertionError(f"{unit} never became {state} (last: {seen})")


def _hierarchies() -> list[tuple[Path, str]]:
    """(mount point, this process's cgroup path in it) for every cgroup hierarchy we are in."""
    mounts: list[tuple[Path, set[str], bool]] = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        fstype, _source, options = (post.split() + ["", "", ""])[:3]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        mounts.append((Path(pre.split()[4]), set(options.split(",")), fstype == "cgroup2"))
    found: list[tuple[Path, str]] = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        hid, controllers, path = line.split(":", 2)
        wanted = set(filter(None, controllers.split(",")))
        for mount, options, v2 in mounts:
            if (hid == "0" and v2) or (wanted and not v2 and wanted <= options):
                if os.access(mount / path.lstrip("/"), os.W_OK):
                    found.append((mount, path))
                break
    return found


def _own_cgroups(name: str) -> list[Path]:
    """A fresh cgroup `name` beside ours in every hierarchy (cpuset: with our cpus/mems)."""
    made: list[Path] = []
    for mount, path in _hierarchies():
        parent = mount / path.lstrip("/")
        child = parent / name
        child.mkdir()
        made.append(child)
        for knob in ("cpuset.cpus", "cpuset.mems"):
            if (parent / knob).exists():
                with contextlib.suppress(OSError):
                    (child / knob).write_text((parent / knob).read_text())
    return made


def _pids_in(cgroup: Path) -> list[int]:
    pids: list[int] = []
    for procs in cgroup.rglob("cgroup.procs"):
        with contextlib.suppress(OSError):
            pids += [int(p) for p in procs.read_text().split()]
    return pids


def _remove(cgroups: list[Path]) -> None:
    for _ in range(50):
        left = {pid for cg in cgroups if cg.exists() for pid in _pids_in(cg)}
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if not left:
            break
        time.sleep(0.1)
    for cg in cgroups:
        if cg.exists():
            for sub in sorted((p for p in cg.rglob("*") if p.is_dir()), reverse=True):
                with contextlib.suppress(OSError):
                    sub.rmdir()
            with contextlib.suppress(OSError):
                cg.rmdir()


def _undo_root_migration(before: str, existed: set[Path]) -> None:
    """If a manager moved PID 1's processes into a root `init.scope`, move them back."""
    if Path("/proc/1/cgroup").read_text() == before:
        return
    for mount, _path in _hierarchies():
        scope = mount / "init.scope"
        if scope in existed or not scope.exists():
            continue
        for _ in range(3):
            for pid in _pids_in(scope):
                with contextlib.suppress(OSError):
                    (mount / "cgroup.procs").write_text(str(pid))
        with contextlib.suppress(OSError):
            scope.rmdir()


@contextlib.contextmanager
def user_manager() -> Iterator[UserManager]:
    """Start a private `systemd --user`; stop it and everything it started afterwards."""
    root = Path(tempfile.mkdtemp(prefix="runbook-systemd-"))
    xdg = root / "xdg"
    xdg.mkdir(mode=0o700)
    (root / "home").mkdir()
    (root / "config" / "systemd" / "user").mkdir(parents=True)
    (root / "config" / "systemd" / "user" / "runbook-test.target").write_text(IDLE_TARGET)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root / "home"),
        "XDG_RUNTIME_DIR": str(xdg),
        "XDG_CONFIG_HOME": str(root / "config"),
        "XDG_DATA_HOME": str(root / "home" / "data"),
        "XDG_STATE_HOME": str(root / "home" / "state"),
        "XDG_CACHE_HOME": str(root / "home" / "cache"),
        "LANG": "C.UTF-8",
    }
    shim = root / "bin" / "systemctl"
    shim.parent.mkdir()
    shim.write_text(
        "#!/bin/sh\n"
        + "".join(f"export {k}='{v}'\n" for k, v in env.items() if k.startswith("XDG_"))
        + f'exec {SYSTEMCTL} --user "$@"\n'
    )
    shim.chmod(0o755)
    pid1_before = Path("/proc/1/cgroup").read_text()
    scopes_before = {m / "init.scope" for m, _ in _hierarchies() if (m / "init.scope").exists()}
    cgroups = _own_cgroups(f"runbook-test-{uuid.uuid4().hex[:12]}")
    launcher = root / "start"
    launcher.write_text(
        "#!/bin/sh\nset -e\n"
        + "".join(f"echo $$ > {cg / 'cgroup.procs'}\n" for cg in cgroups)
        + "exec unshare --mount --propagation private sh -c "
        "'mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system && "
        f"exec {SYSTEMD} --user --unit=runbook-test.target'\n"
    )
    launcher.chmod(0o755)
    log = (root / "manager.log").open("wb")
    proc = subprocess.Popen([str(launcher)], env=env, stdout=log, stderr=subprocess.STDOUT)
    manager = UserManager(root, proc.pid, env, shim, cgroups)
    try:
        _wait_ready(manager, proc)
        if Path("/proc/1/cgroup").read_text() != pid1_before:
            raise RuntimeError("the test systemd manager moved PID 1 to another cgroup")
        yield manager
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1)  # units that stop slowly are killed below, not waited for
        _remove(cgroups)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
        _undo_root_migration(pid1_before, scopes_before)
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(manager: UserManager, proc: subprocess.Popen[bytes]) -> None:
    until = time.monotonic() + 15
    while time.monotonic() < until:
        if proc.poll() is not None:
            break
        if (Path(manager.env["XDG_RUNTIME_DIR"]) / "systemd" / "private").exists():
            # not `is-system-running`: that asks this namespace, where systemd is not booted
            state = manager.systemctl("show", "-p", "SystemState").stdout.strip()
            if state in ("SystemState=running", "SystemState=degraded"):
                return
        time.sleep(0.05)
    output = (manager.root / "manager.log").read_text(errors="replace").strip()
    raise RuntimeError(f"systemd --user did not come up: {output[-500:] or 'no output'}")
