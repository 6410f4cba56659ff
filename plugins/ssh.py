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

A run reads each known_hosts file (and ~/.ssh/config) once, when its first
step on an ssh target starts (`connect_for_run`, which also imports paramiko
before the hosts fan out), and gives each connection only its own host's
keys: paramiko's own loader is quadratic in the file's length and every client
would hold a copy of the whole file, which at a few hundred hosts cost more
than the SSH itself. Names match as paramiko matches them (exact names,
`[host]:port` off port 22, hashed `|1|` names); `@revoked` keys are refused for
the hosts their patterns match, as OpenSSH does, and a host trusted only
through `@cert-authority` is refused with a message saying that host
certificates are not checked here.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import hashlib
import hmac
import os
import re
import shlex
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
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
IDLE_CHECK = 1.0
"""Seconds between a connection's checks for being closed while nothing arrives (paramiko's
reader thread polls its socket; at its default 0.1 s, 1,000 idle connections of a run cost
10,000 wake-ups a second). Data, EOF and errors still wake it at once."""


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


def _ssh_config(host: Host, options: Mapping[str, Any], run: SshRun) -> dict[str, Any]:
    """The ~/.ssh/config entry for this host (paramiko understands most keywords)."""
    path = options.get("ssh_config", "~/.ssh/config")
    if not path:
        return {}
    path = os.path.expanduser(str(path))
    if not os.path.isfile(path):
        return {}
    return dict(run.ssh_config(path).lookup(host.address))


def settings(host: Host, options: Mapping[str, Any], run: SshRun | None = None) -> Settings:
    conf = _ssh_config(host, options, run or SshRun())
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


# -- known_hosts, read once per run ----------------------------------------------------------

Entry = tuple[int, str, str]
"""A known_hosts line as kept: its number (file order), key type, base64 key."""


@dataclass(frozen=True)
class KnownKeys:
    """What the run's known_hosts files say about one host name."""

    trusted: tuple[tuple[str, bytes], ...] = ()
    """(key type, key blob), file order, revoked keys left out."""
    revoked: frozenset[bytes] = frozenset()
    authorities: tuple[str, ...] = ()
    """`path:line` of each `@cert-authority` line whose patterns match the host."""

    def paramiko_keys(self, paramiko: Any) -> list[Any]:
        """The trusted keys as paramiko keys, the first of each type only (as paramiko looks up)."""
        keys: dict[str, Any] = {}
        for key_type, blob in self.trusted:
            try:
                key = paramiko.PKey.from_type_string(key_type, blob)
            except Exception:  # a key type paramiko cannot use: skipped, as its loader does
                continue
            keys.setdefault(key.get_name(), key)
        return list(keys.values())


def _hashed(name: str) -> tuple[bytes, bytes] | None:
    """Salt and HMAC-SHA1 of a hashed name `|1|salt|hash`, None when it is malformed."""
    _, _, salt, digest = (name.split("|") + ["", "", "", ""])[:4]
    try:
        return base64.b64decode(salt, validate=True), base64.b64decode(digest, validate=True)
    except binascii.Error:
        return None


def _hash_matches(salt_digest: tuple[bytes, bytes], name: str) -> bool:
    salt, digest = salt_digest
    return hmac.compare_digest(hmac.digest(salt, name.encode(), hashlib.sha1), digest)


def _patterns_match(patterns: Sequence[str], name: str) -> bool:
    """OpenSSH's host pattern lists (`*`, `?`, `!negation`, hashed names), for marker lines."""
    matched = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.removeprefix("!")
        if pattern.startswith("|1|"):
            salt_digest = _hashed(pattern)
            hit = salt_digest is not None and _hash_matches(salt_digest, name)
        else:
            glob = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
            hit = re.fullmatch(glob, name, re.IGNORECASE) is not None
        if hit and negated:
            return False
        matched = matched or hit
    return matched


@dataclass
class KnownHostsFile:
    """One known_hosts file, parsed in one pass: names to keys, hashed names, marker lines."""

    path: str
    plain: dict[str, list[Entry]] = field(default_factory=dict)
    hashed: list[tuple[tuple[bytes, bytes], Entry]] = field(default_factory=list)
    revoked: list[tuple[tuple[str, ...], Entry]] = field(default_factory=list)
    authorities: list[tuple[tuple[str, ...], Entry]] = field(default_factory=list)

    @classmethod
    def read(cls, path: str) -> KnownHostsFile:
        parsed = cls(path)
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return parsed
        except OSError as exc:
            raise TransportError(f"cannot read known_hosts {path}: {_reason(exc)}") from None
        for number, line in enumerate(lines, 1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            marker = fields.pop(0) if fields[0].startswith("@") else None
            if len(fields) < 3:
                continue
            names, entry = fields[0].split(","), (number, fields[1], fields[2])
            if marker == "@revoked":
                parsed.revoked.append((tuple(names), entry))
            elif marker == "@cert-authority":
                parsed.authorities.append((tuple(names), entry))
            elif marker is None:  # a line with another marker is ignored, as OpenSSH does
                for name in names:
                    if not name.startswith("|1|"):
                        parsed.plain.setdefault(name, []).append(entry)
                    elif (salt_digest := _hashed(name)) is not None:
                        parsed.hashed.append((salt_digest, entry))
        return parsed

    def lookup(self, name: str) -> tuple[list[Entry], list[Entry], list[Entry]]:
        """The trusted, revoked and certificate-authority lines for `name`, in file order.

        Trusted lines match by exact name or hashed name, as paramiko matches them
        (patterns there are not expanded); marker lines match by pattern, as in OpenSSH.
        """
        trusted = list(self.plain.get(name, ()))
        trusted += [entry for salt_digest, entry in self.hashed if _hash_matches(salt_digest, name)]
        revoked = [entry for patterns, entry in self.revoked if _patterns_match(patterns, name)]
        authorities = [e for patterns, e in self.authorities if _patterns_match(patterns, name)]
        return sorted(trusted), revoked, authorities


def _blob(entry: Entry) -> bytes | None:
    try:
        return base64.b64decode(entry[2], validate=True)
    except binascii.Error:
        return None


class KnownHosts:
    """The known_hosts files of one run: each read once, then looked up host by host."""

    def __init__(self) -> None:
        self._files: dict[str, KnownHostsFile] = {}
        self._lock = threading.Lock()

    @property
    def parsed(self) -> list[str]:
        """The files read so far in this run, in the order they were read."""
        return list(self._files)

    def file(self, path: str) -> KnownHostsFile:
        with self._lock:  # the first host reads it; the hosts after it reuse it
            parsed = self._files.get(path)
            if parsed is None:
                parsed = self._files[path] = KnownHostsFile.read(path)
            return parsed

    def lookup(self, paths: Sequence[str], name: str) -> KnownKeys:
        trusted: list[tuple[str, bytes]] = []
        revoked: set[bytes] = set()
        authorities: list[str] = []
        for path in paths:
            good, bad, cas = self.file(path).lookup(name)
            revoked.update(b for b in map(_blob, bad) if b is not None)
            trusted += [(e[1], b) for e in good if (b := _blob(e)) is not None]
            authorities += [f"{path}:{e[0]}" for e in cas]
        return KnownKeys(
            tuple((t, b) for t, b in trusted if b not in revoked),
            frozenset(revoked),
            tuple(authorities),
        )


@dataclass
class SshRun:
    """What one run's ssh connections share: known_hosts and ~/.ssh/config, each read once."""

    known_hosts: KnownHosts = field(default_factory=KnownHosts)
    _configs: dict[str, Any] = field(default_factory=dict)
    _keys: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def private_key(self, path: str) -> Any:
        """The key file loaded once (a `-cert.pub` beside it too), or None when paramiko
        cannot load it on its own (a passphrase): then each connect loads it as before."""
        with self._lock:
            if path not in self._keys:
                import paramiko  # type: ignore[import-untyped]

                try:
                    self._keys[path] = paramiko.PKey.from_path(path)
                except Exception:  # connect with key_filename reports it in its own words
                    self._keys[path] = None
            return self._keys[path]

    def ssh_config(self, path: str) -> Any:
        """The parsed ssh_config file at `path`."""
        with self._lock:
            config = self._configs.get(path)
            if config is None:
                import paramiko

                config = self._configs[path] = paramiko.SSHConfig.from_path(path)
            return config

    def connect(self, host: Host, options: Mapping[str, Any]) -> Connection:
        """Open a verified connection to `host` (the run's `connect`)."""
        s = settings(host, options, self)
        return SshConnection(host, _open_client(host, options, s, self), s, options, self)


# -- trust messages and connecting -----------------------------------------------------------


def _fingerprint(key: Any) -> str:
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


def _unknown_key_message(s: Settings, key: Any, known: KnownKeys) -> str:
    through_ca = (
        f" known_hosts trusts it only through @cert-authority ({', '.join(known.authorities)}), "
        "and host certificates are not checked by this transport: trust the host's own key."
        if known.authorities
        else ""
    )
    return (
        f"host key of {s.key_name} is not in known_hosts ({', '.join(s.known_hosts)}): "
        f"it offered {_fingerprint(key)}.{through_ca} Check that fingerprint out of band, then "
        f"trust it with: ssh-keyscan -p {s.port} -t {key.get_name()} {s.address} >> "
        f"{s.known_hosts[0]} (or set `host_key_check: false` on the target, which the log "
        "header records)"
    )


def _changed_key_message(s: Settings, got: Any, expected: Any) -> str:
    return (
        f"HOST KEY CHANGED for {s.key_name}: known_hosts has {_fingerprint(expected)} but the "
        f"host offered {_fingerprint(got)}. This may be an attack (or a reinstalled host); if "
        f"the change is expected, remove the old key with: ssh-keygen -R '{s.key_name}' "
        f"-f {s.known_hosts[0]} and trust the new one with ssh-keyscan"
    )


def _revoked_key_message(s: Settings, key: Any) -> str:
    return (
        f"REVOKED HOST KEY for {s.key_name}: it offered {_fingerprint(key)}, which known_hosts "
        f"({', '.join(s.known_hosts)}) marks @revoked. Refused; the host needs a new key"
    )


def _make_policy(s: Settings, known: KnownKeys) -> Any:
    import paramiko

    class RefuseUnknown(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            if key.asbytes() in known.revoked:
                raise TransportError(_revoked_key_message(s, key))
            raise TransportError(_unknown_key_message(s, key, known))

    return RefuseUnknown() if s.host_key_check else paramiko.AutoAddPolicy()


def _jump_socket(s: Settings, options: Mapping[str, Any], run: SshRun) -> tuple[Any, Any]:
    """Open the jump host (verified like any host) and a direct-tcpip channel through it."""
    spec = str(s.jump)
    user, _, rest = spec.rpartition("@")
    address, _, port = rest.partition(":")
    jump_host = Host(address, {})
    jump_opts = {**options, "address": address, "port": int(port or 22), "jump": None}
    if user:
        jump_opts["user"] = user
    jump = _open_client(jump_host, jump_opts, run=run)
    transport = jump.get_transport()
    assert transport is not None
    try:
        channel = transport.open_channel("direct-tcpip", (s.address, s.port), ("127.0.0.1", 0))
    except Exception as exc:
        jump.close()
        raise TransportError(f"jump host {spec} cannot reach {s.key_name}: {exc}") from None
    return jump, channel


def _open_client(
    host: Host, options: Mapping[str, Any], s: Settings | None = None, run: SshRun | None = None
) -> Any:
    paramiko = import_optional("paramiko", "ssh")
    run = run or SshRun()
    s = s or settings(host, options, run)
    if s.key_file and not os.path.isfile(s.key_file):
        raise TransportError(f"{host.name}: SSH key file not found: {s.key_file}")
    try:
        known = run.known_hosts.lookup(s.known_hosts, s.key_name) if s.host_key_check else None
    except TransportError as exc:
        raise TransportError(f"{host.name}: {exc}") from None
    known = known or KnownKeys()
    client = paramiko.SSHClient()
    host_keys = client.get_host_keys()  # this host's keys only, not a copy of the whole file
    for key in known.paramiko_keys(paramiko):
        host_keys.add(s.key_name, key.get_name(), key)
    client.set_missing_host_key_policy(_make_policy(s, known))
    jump, sock = _jump_socket(s, options, run) if s.jump else (None, None)
    pkey = run.private_key(s.key_file) if s.key_file else None
    try:
        client.connect(
            s.address,
            port=s.port,
            username=s.user,
            pkey=pkey,
            key_filename=s.key_file if pkey is None else None,
            timeout=s.connect_timeout,
            banner_timeout=s.connect_timeout,
            auth_timeout=s.connect_timeout,
            allow_agent=s.agent,
            look_for_keys=s.key_file is None,
            sock=sock,
            transport_factory=functools.partial(_transport, s),
        )
    except Exception as exc:
        client.close()
        if jump is not None:
            jump.close()
        raise TransportError(f"{host.name}: {_connect_error(exc, s, known)}") from None
    transport = client.get_transport()
    if transport is not None and s.keepalive:
        transport.set_keepalive(s.keepalive)
    client._runbook_jump = jump  # closed with the client
    return client


@functools.cache
def _quiet_transport() -> type:
    import paramiko

    class QuietTransport(paramiko.Transport):  # type: ignore[misc]
        """A paramiko transport whose reader thread checks for close every IDLE_CHECK s."""

        _active_check_timeout = IDLE_CHECK

    return QuietTransport


def _transport(s: Settings, sock: Any, **kwargs: Any) -> Any:
    """The connection's paramiko transport; `connect_timeout` bounds its key exchange too
    (paramiko's own limit, 15 s, is kept as the least)."""
    transport = _quiet_transport()(sock, **kwargs)
    transport.handshake_timeout = max(transport.handshake_timeout, s.connect_timeout)
    return transport


def _connect_error(exc: Exception, s: Settings, known: KnownKeys) -> str:
    import paramiko

    where = f"{s.user + '@' if s.user else ''}{s.address}:{s.port}"
    if isinstance(exc, TransportError):
        return str(exc)
    if isinstance(exc, paramiko.BadHostKeyException):
        if exc.key.asbytes() in known.revoked:
            return _revoked_key_message(s, exc.key)
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
        self,
        host: Host,
        client: Any,
        s: Settings,
        options: Mapping[str, Any] | None = None,
        run: SshRun | None = None,
    ) -> None:
        self.host = host
        self._client = client
        self._settings = s
        self._options = dict(options or {})
        self._run = run or SshRun()

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
        on_stdout: Callable[[bytes], None] | None = None,
    ) -> CommandOutcome:
        from .process import BoundedBuffer

        started = time.monotonic()
        try:
            transport = self._client.get_transport()
            channel = transport.open_session(timeout=self._settings.connect_timeout)
            channel.exec_command(remote_command(argv, env, cwd))
            if stdin:
                channel.sendall(stdin)
            channel.shutdown_write()
        except Exception as exc:
            raise TransportError(
                f"connection to {self._where} lost before the command started: {_reason(exc)}"
            ) from None
        out: BoundedBuffer | _PidThenStream = (
            BoundedBuffer(max_output + 32) if on_stdout is None else _PidThenStream(on_stdout)
        )
        err = BoundedBuffer(max_output)
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
            client = _open_client(self.host, self._options, quick, self._run)
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


class _PidThenStream:
    """Stdout when streaming: keeps the remote shell's pid line, hands the rest to `sink`."""

    def __init__(self, sink: Callable[[bytes], None]) -> None:
        self.data = bytearray()
        self._sink = sink
        self._streaming = False

    def feed(self, chunk: bytes) -> None:
        if not self._streaming:
            head, newline, chunk = chunk.partition(b"\n")
            self.data += head[: max(32 - len(self.data), 0)] + newline
            self._streaming = bool(newline)
        if self._streaming and chunk:
            self._sink(chunk)

    def text(self) -> str:
        return ""


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
    """One connection on its own (outside a run's pool, which uses `connect_for_run`)."""
    return SshRun().connect(host, options)


def connect_for_run() -> Callable[[Host, Mapping[str, Any]], Connection]:
    """A run's connector: paramiko imported now, known_hosts read once for all its hosts."""
    import_optional("paramiko", "ssh")
    return SshRun().connect


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
    connect_for_run=connect_for_run,
    description="SSH with paramiko: known_hosts verified, one connection per host per run, "
    "key file or agent, jump host, ~/.ssh/config.",
)


@hookimpl
def runbook_transports() -> list[TransportSpec]:
    """The ssh transport."""
    return [SPEC]
