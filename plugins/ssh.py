"""The `ssh` transport (paramiko, extra `ssh`): one verified connection per host per run.

Host keys are checked against known_hosts by default; an unknown or changed
key fails that host with its fingerprint and the exact command to trust it,
because during an incident "yes, connect anyway" is exactly the habit an
attacker counts on. `host_key_check: false` turns checking off explicitly (the
run's log header says so). argv is joined with `shlex.join`, so a rendered
value is one argument to the remote shell whatever it contains. The remote
shell prints its pid (the session's process group, sshd calls setsid) before
exec'ing the command, so a timeout can kill the command and all it spawned
instead of leaving it running on the host. A connection lost mid-command (the
channel closes with no exit status and the transport is gone) fails that host
with the reason, never a made-up exit code; the command's process group is
then ended over a new connection. Sessions are pty-less on purpose: stdout and
stderr stay apart, and without a pty OpenSSH's sshd sends the command no
SIGHUP when the connection dies -- the command only notices when it next
writes (SIGPIPE) -- so a fresh connection running `kill -- -PGID` is the one
way that works whatever the command does. paramiko is imported on first
connect, so a CLI without the extra still works for everything else.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runbook.contract import (
    CommandOutcome,
    Connection,
    Host,
    TransportError,
    TransportSpec,
    hookimpl,
    import_optional,
)

POLL = 0.05
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_KEEPALIVE = 30
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
KILL_GRACE = 0.3
RECONNECT_TIMEOUT = 5.0
LOSS_SETTLE = 1.0
"""Seconds to wait, after a channel closed without an exit status, for paramiko to mark
the whole transport dead (it closes the channels first, then the transport)."""


@dataclass(frozen=True)
class Settings:
    """Where and how to connect, after target options, inventory vars and ~/.ssh/config."""

    address: str
    port: int
    user: str | None
    key_file: str | None
    known_hosts: tuple[str, ...]
    host_key_check: bool
    connect_timeout: float
    keepalive: int
    agent: bool
    jump: str | None

    @property
    def key_name(self) -> str:
        """How known_hosts names this host: `addr` on port 22, `[addr]:port` otherwise."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"


def _ssh_config(host: Host, options: Mapping[str, Any]) -> dict[str, Any]:
    """The ~/.ssh/config entry for this host (paramiko understands most keywords)."""
    path = options.get("ssh_config", "~/.ssh/config")
    if not path:
        return {}
    path = os.path.expanduser(str(path))
    if not os.path.isfile(path):
        return {}
    import paramiko  # type: ignore[import-untyped]

    return dict(paramiko.SSHConfig.from_path(path).lookup(host.address))


def settings(host: Host, options: Mapping[str, Any]) -> Settings:
    conf = _ssh_config(host, options)
    identity = conf.get("identityfile") or [None]
    known = options.get("known_hosts") or conf.get("userknownhostsfile") or DEFAULT_KNOWN_HOSTS
    known_files = [known] if isinstance(known, str) else list(known)
    key_file = options.get("key_file") or (identity[0] if "key_file" not in options else None)
    return Settings(
        address=str(options.get("address") or conf.get("hostname") or host.address),
        port=int(options.get("port") or conf.get("port") or 22),
        user=str(options.get("user") or conf.get("user") or "") or None,
        key_file=os.path.expanduser(str(key_file)) if key_file else None,
        known_hosts=tuple(os.path.expanduser(str(k)) for k in known_files),
        host_key_check=bool(options.get("host_key_check", True)),
        connect_timeout=float(options.get("connect_timeout") or DEFAULT_CONNECT_TIMEOUT),
        keepalive=int(options.get("keepalive", DEFAULT_KEEPALIVE)),
        agent=bool(options.get("agent", True)),
        jump=options.get("jump") or conf.get("proxyjump"),
    )


def _fingerprint(key: Any) -> str:
    import base64
    import hashlib

    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


def _unknown_key_message(s: Settings, key: Any) -> str:
    return (
        f"host key of {s.key_name} is not in known_hosts ({', '.join(s.known_hosts)}): "
        f"it offered {_fingerprint(key)}. Check that fingerprint out of band, then trust it "
        f"with: ssh-keyscan -p {s.port} -t {key.get_name()} {s.address} >> {s.known_hosts[0]} "
        "(or set `host_key_check: false` on the target, which the log header records)"
    )


def _changed_key_message(s: Settings, got: Any, expected: Any) -> str:
    return (
        f"HOST KEY CHANGED for {s.key_name}: known_hosts has {_fingerprint(expected)} but the "
        f"host offered {_fingerprint(got)}. This may be an attack (or a reinstalled host); if "
        f"the change is expected, remove the old key with: ssh-keygen -R '{s.key_name}' "
        f"-f {s.known_hosts[0]} and trust the new one with ssh-keyscan"
    )


def _make_policy(s: Settings) -> Any:
    import paramiko

    class RefuseUnknown(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            raise TransportError(_unknown_key_message(s, key))

    return RefuseUnknown() if s.host_key_check else paramiko.AutoAddPolicy()


def _jump_socket(s: Settings, options: Mapping[str, Any]) -> tuple[Any, Any]:
    """Open the jump host and a direct-tcpip channel through it (ProxyJump)."""
    spec = str(s.jump)
    user, _, rest = spec.rpartition("@")
    address, _, port = rest.partition(":")
    jump_host = Host(address, {})
    jump_opts = {**options, "address": address, "port": int(port or 22), "jump": None}
    if user:
        jump_opts["user"] = user
    jump = _open_client(jump_host, jump_opts)
    transport = jump.get_transport()
    assert transport is not None
    try:
        channel = transport.open_channel("direct-tcpip", (s.address, s.port), ("127.0.0.1", 0))
    except Exception as exc:
        jump.close()
        raise TransportError(f"jump host {spec} cannot reach {s.key_name}: {exc}") from None
    return jump, channel


def _open_client(host: Host, options: Mapping[str, Any], s: Settings | None = None) -> Any:
    paramiko = import_optional("paramiko", "ssh")
    s = s or settings(host, options)
    if s.key_file and not os.path.isfile(s.key_file):
        raise TransportError(f"{host.name}: SSH key file not found: {s.key_file}")
    client = paramiko.SSHClient()
    if s.host_key_check:
        for path in s.known_hosts:
            if os.path.isfile(path):
                client.load_host_keys(path)
    client.set_missing_host_key_policy(_make_policy(s))
    jump, sock = _jump_socket(s, options) if s.jump else (None, None)
    try:
        client.connect(
            s.address,
            port=s.port,
            username=s.user,
            key_filename=s.key_file,
            timeout=s.connect_timeout,
            banner_timeout=s.connect_timeout,
            auth_timeout=s.connect_timeout,
            allow_agent=s.agent,
            look_for_keys=s.key_file is None,
            sock=sock,
        )
    except Exception as exc:
        client.close()
        if jump is not None:
            jump.close()
        raise TransportError(f"{host.name}: {_connect_error(exc, s)}") from None
    transport = client.get_transport()
    if transport is not None and s.keepalive:
        transport.set_keepalive(s.keepalive)
    client._runbook_jump = jump  # closed with the client
    return client


def _connect_error(exc: Exception, s: Settings) -> str:
    import paramiko

    where = f"{s.user + '@' if s.user else ''}{s.address}:{s.port}"
    if isinstance(exc, TransportError):
        return str(exc)
    if isinstance(exc, paramiko.BadHostKeyException):
        return _changed_key_message(s, exc.key, exc.expected_key)
    if isinstance(exc, paramiko.AuthenticationException):
        how = f"key file {s.key_file}" if s.key_file else "agent and default keys"
        return f"authentication failed for {where} (tried {how}): {exc}"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"connect to {where} timed out after {s.connect_timeout:g}s"
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError | ConnectionRefusedError):
        return f"cannot connect to {where}: connection refused (is sshd running there?)"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host name {s.address}: {exc.strerror}"
    return f"cannot connect to {where}: {type(exc).__name__}: {exc}"


def remote_command(argv: Sequence[str], env: Mapping[str, str] | None, cwd: str | None) -> str:
    """The remote shell line: print the session's pid, then exec argv, all quoted."""
    line = shlex.join(argv)
    if env:
        line = "env " + " ".join(shlex.quote(f"{k}={v}") for k, v in env.items()) + " " + line
    prefix = f"cd {shlex.quote(cwd)} && " if cwd else ""
    return f"echo $$; {prefix}exec {line}"


class SshConnection:
    """One paramiko client to one host; each command is its own channel."""

    def __init__(
        self, host: Host, client: Any, s: Settings, options: Mapping[str, Any] | None = None
    ) -> None:
        self.host = host
        self._client = client
        self._settings = s
        self._options = dict(options or {})

    @property
    def _where(self) -> str:
        return f"{self.host.name} ({self._settings.address}:{self._settings.port})"

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None,
        cancel: threading.Event,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        max_output: int = 1024 * 1024,
    ) -> CommandOutcome:
        from .process import BoundedBuffer

        started = time.monotonic()
        try:
            channel = self._client.get_transport().open_session(timeout=DEFAULT_CONNECT_TIMEOUT)
            channel.exec_command(remote_command(argv, env, cwd))
            if stdin:
                channel.sendall(stdin)
            channel.shutdown_write()
        except Exception as exc:
            raise TransportError(
                f"connection to {self._where} lost before the command started: {_reason(exc)}"
            ) from None
        out, err = BoundedBuffer(max_output + 32), BoundedBuffer(max_output)
        deadline = None if timeout is None else started + timeout
        stopped = _pump(channel, out, err, deadline, cancel)
        pid_line, _, stdout = bytes(out.data).partition(b"\n")
        pid = int(pid_line) if pid_line.strip().isdigit() else None
        if stopped != "exited":
            self._kill(pid)
        elif channel.exit_status < 0:  # closed without an exit status: no code to report
            channel.close()
            raise self._lost(pid)
        code = channel.exit_status if stopped == "exited" else None
        channel.close()
        out.data = bytearray(stdout)
        return CommandOutcome(
            code, out.text(), err.text(), time.monotonic() - started, stopped, pid
        )

    def _kill(self, pid: int | None) -> None:
        """TERM then KILL the command's process group on the host, over a new channel."""
        try:
            _kill_group(self._client, pid)
        except Exception:  # the host is gone: nothing left to kill from here
            return

    def _lost(self, pid: int | None) -> TransportError:
        """Why a channel closed without an exit status, after ending what is left of it."""
        transport = self._client.get_transport()
        deadline = time.monotonic() + LOSS_SETTLE
        while transport is not None and transport.is_active() and time.monotonic() < deadline:
            time.sleep(POLL / 5)
        if transport is not None and transport.is_active():
            # sshd closed this channel alone (e.g. the command died of a signal, which
            # paramiko does not report): the connection is fine, the status unknown
            self._kill(pid)
            return TransportError(
                f"command on {self._where} ended without an exit status "
                "(killed by a signal, or the server closed the session)"
            )
        exc = transport.get_exception() if transport is not None else None
        reason = "EOF" if exc is None or isinstance(exc, EOFError) else _reason(exc)
        return TransportError(
            f"connection to {self._where} lost during command: {reason}; {self._end_orphan(pid)}"
        )

    def _end_orphan(self, pid: int | None) -> str:
        """Kill the process group of a command whose connection died, over a new connection."""
        if pid is None:
            return "its pid was not received, so it may still be running there"
        quick = dataclasses.replace(
            self._settings, connect_timeout=min(self._settings.connect_timeout, RECONNECT_TIMEOUT)
        )
        try:
            client = _open_client(self.host, self._options, quick)
        except Exception as exc:
            return f"the command (pid {pid}) may still be running there: cannot reconnect: {exc}"
        try:
            _kill_group(client, pid)
        except Exception as exc:
            return f"the command (pid {pid}) may still be running there: {_reason(exc)}"
        finally:
            _close_client(client)
        return f"its process group (pid {pid}) was ended over a new connection"

    def close(self) -> None:
        _close_client(self._client)


def _close_client(client: Any) -> None:
    jump = getattr(client, "_runbook_jump", None)
    client.close()
    if jump is not None:
        jump.close()


def _kill_group(client: Any, pid: int | None) -> None:
    """TERM, then KILL, the process group `pid` leads (sshd made it a session leader)."""
    if pid is None:
        return
    group = f"-- -{pid} 2>/dev/null"
    line = f"kill -TERM {group}; sleep {KILL_GRACE}; kill -KILL {group}; true"
    channel = client.get_transport().open_session(timeout=DEFAULT_CONNECT_TIMEOUT)
    channel.exec_command(line)
    channel.status_event.wait(KILL_GRACE + 5)
    channel.close()


def _reason(exc: BaseException) -> str:
    """A short reason for a broken connection: the OS words when there are some."""
    if isinstance(exc, EOFError):
        return "EOF"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _pump(channel: Any, out: Any, err: Any, deadline: float | None, cancel: threading.Event) -> str:
    """Read both streams until exit, the deadline, or cancel; returns why it stopped."""
    channel.settimeout(POLL)
    eof = False
    while True:
        if cancel.is_set():
            return "cancelled"
        if deadline is not None and time.monotonic() >= deadline:
            return "timeout"
        if not eof:
            try:
                chunk = channel.recv(65536)
                eof = chunk == b""
                out.feed(chunk)
            except TimeoutError:
                pass
        else:
            channel.status_event.wait(POLL)
        while channel.recv_stderr_ready():
            err.feed(channel.recv_stderr(65536))
        if eof and channel.exit_status_ready():
            while channel.recv_stderr_ready():
                err.feed(channel.recv_stderr(65536))
            return "exited"


def connect(host: Host, options: Mapping[str, Any]) -> Connection:
    s = settings(host, options)
    return SshConnection(host, _open_client(host, options, s), s, options)


def check(options: Mapping[str, Any]) -> list[str]:
    """Input problems found before a run starts (exit 2)."""
    problems = []
    key_file = options.get("key_file")
    if key_file and not os.path.isfile(os.path.expanduser(str(key_file))):
        problems.append(f"SSH key file not found: {key_file}")
    return problems


SPEC = TransportSpec(
    name="ssh",
    connect=connect,
    check=check,
    description="SSH with paramiko: known_hosts verified, one connection per host per run, "
    "key file or agent, jump host, ~/.ssh/config.",
)


@hookimpl
def runbook_transports() -> list[TransportSpec]:
    """The ssh transport."""
    return [SPEC]
