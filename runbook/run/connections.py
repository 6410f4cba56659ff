"""Transports: how a command reaches a host, and the per-run pool of open connections.

Executors that run commands (shell, systemd, journald) are written once, on
top of `Connection.run(argv)`, and work the same on this machine or over SSH
(testinfra's design). A transport plugin contributes a `TransportSpec` through
the `runbook_transports` hook; `connect()` opens one `Connection` to one host.
The `ConnectionPool` lives in `ExecContext.resources` for the whole run, so
every step on a host reuses that host's single connection, and the runner
closes them all when the run ends. `on_target()` is the one entry point an
executor calls: it runs a per-host function locally, or fans it out over the
target's hosts and returns per-host results.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from runbook.contract import ExecContext, StepResult
from runbook.errors import RunbookError
from runbook.load.model import Target
from runbook.run.inventory import Host, Inventory, resolve_hosts

POOL_KEY = "runbook.connections"
"""Where the run's ConnectionPool sits in `ExecContext.resources`."""


class TransportError(Exception):
    """One host cannot be reached or trusted; fails that host's result, never the run."""


@dataclass(frozen=True)
class CommandOutcome:
    """What one command did on one host, whatever the transport."""

    exit_code: int | None
    stdout: str
    stderr: str
    elapsed: float
    stopped: str = "exited"  # exited | timeout | cancelled
    pid: int | None = None


class Connection(Protocol):
    """An open way to run commands on one host; safe to use from several threads."""

    host: Host

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
        """Run argv (never through a shell a value could escape) and wait for it."""
        ...

    def close(self) -> None: ...


ConnectFn = Callable[[Host, Mapping[str, Any]], Connection]


@dataclass(frozen=True)
class TransportSpec:
    """A named transport contributed by a plugin through `runbook_transports`.

    - `connect(host, options)`: open a connection (raise TransportError with a
      message fit for the operator when the host cannot be reached or trusted).
      `options` are the target's options merged with the host's inventory vars.
    - `check(options)`: input problems found before anything runs (a missing key
      file), returned as messages; they stop the run with exit 2.
    - `remote`: False for the local transport, which needs no host list.
    """

    name: str
    connect: ConnectFn
    description: str = ""
    check: Callable[[Mapping[str, Any]], list[str]] | None = None
    remote: bool = True


@dataclass
class ConnectionPool:
    """One connection per (target, host) for a run; closed by the runner at the end.

    Connecting is done under a per-key lock so concurrent steps never open two
    connections to one host, while different hosts connect in parallel.
    """

    transports: Mapping[str, TransportSpec]
    inventory: Inventory | None = None
    _open: dict[tuple[str, str], Connection] = field(default_factory=dict)
    _locks: dict[tuple[str, str], threading.Lock] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def transport(self, name: str) -> TransportSpec:
        spec = self.transports.get(name)
        if spec is None:
            known = ", ".join(sorted(self.transports)) or "none"
            raise TransportError(f"unknown transport '{name}' (installed transports: {known})")
        return spec

    def hosts(self, target: Target) -> list[Host]:
        """The target's hosts, groups expanded through the inventory."""
        return resolve_hosts(target, self.inventory)

    def connect(self, target: Target, host: Host) -> Connection:
        spec = self.transport(target.transport)
        key = (target.name, host.name)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            conn = self._open.get(key)
            if conn is None:
                conn = spec.connect(host, {**target.options, **host.vars})
                self._open[key] = conn
            return conn

    def discard(self, target: Target, host: Host) -> None:
        """Forget a connection that broke, so the next step reconnects."""
        conn = self._open.pop((target.name, host.name), None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for conn in list(self._open.values()):
            try:
                conn.close()
            except Exception:  # closing must never mask a run's outcome
                continue
        self._open.clear()


def pool_of(ctx: ExecContext) -> ConnectionPool:
    """The run's pool; an executor called outside a run gets a private one."""
    pool = ctx.resources.get(POOL_KEY)
    if not isinstance(pool, ConnectionPool):
        from runbook.registry import PluginRegistry

        pool = ConnectionPool(PluginRegistry.from_entry_points().transports())
        ctx.resources[POOL_KEY] = pool
    return pool


HostFn = Callable[[Connection, Host], StepResult]


def on_target(ctx: ExecContext, target_name: str | None, work: HostFn) -> StepResult:
    """Run `work` where the step's target says: here, or on each of the target's hosts.

    A local target without `hosts` gives a plain result; any target with hosts
    gives one result per host (`StepResult.hosts`), judged per host by the runner.
    """
    from runbook.run.fanout import fan_out

    target = ctx.target
    if target is None:
        if target_name not in (None, "", "local"):
            return StepResult.failure(
                f"target '{target_name}' was not resolved: the runner passed no target details"
            )
        target = Target("local", "local")
    pool = pool_of(ctx)
    try:
        spec = pool.transport(target.transport)
        hosts = pool.hosts(target)
    except (TransportError, RunbookError) as exc:
        return StepResult.failure(str(exc))
    if not spec.remote and not target.options.get("hosts"):
        return _on_host(pool, target, hosts[0], work)
    return fan_out(
        [h.name for h in hosts],
        lambda name: _on_host(pool, target, _by_name(hosts, name), work),
        concurrency=ctx.concurrency,
        serial=ctx.serial,
        cancel=ctx.cancel,
    )


def _by_name(hosts: Sequence[Host], name: str) -> Host:
    return next(h for h in hosts if h.name == name)


def _on_host(pool: ConnectionPool, target: Target, host: Host, work: HostFn) -> StepResult:
    """Connect (or reuse) and run; an unreachable host becomes its own failed result."""
    try:
        conn = pool.connect(target, host)
    except (TransportError, RunbookError) as exc:  # RunbookError: e.g. MissingExtra
        return StepResult.failure(str(exc))
    try:
        return work(conn, host)
    except TransportError as exc:
        pool.discard(target, host)
        return StepResult.failure(str(exc))


def run_command(
    conn: Connection,
    argv: Sequence[str],
    ctx: ExecContext,
    *,
    call: Mapping[str, Any],
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    max_output: int = 1024 * 1024,
    program_required: bool = False,
) -> StepResult:
    """Run argv on a connection and shape the one result every command executor returns.

    Fields: exit_code, stdout, stderr, pid, elapsed. A program missing on the
    host, sudo wanting a password, a timeout or a cancel is `ok=False` with a
    reason naming the host; any other exit status is for `expect` to judge.
    With `program_required`, a remote shell's 127 "not found" is an error too
    (systemctl/journalctl missing); the shell executor leaves 127 to `expect`.
    """
    where = f" on {conn.host.name}" if conn.host.name != "localhost" else ""
    try:
        out = conn.run(
            argv,
            timeout=ctx.timeout,
            cancel=ctx.cancel,
            stdin=stdin,
            env=env,
            cwd=cwd,
            max_output=max_output,
        )
    except FileNotFoundError as exc:
        if cwd is not None and exc.filename == cwd:
            return StepResult.failure(
                f"working directory is not usable: {cwd} ({exc.strerror})", call=call
            )
        return StepResult.failure(f"command not found{where}: {argv[0]}", call=call)
    except PermissionError:
        return StepResult.failure(f"permission denied{where}: {argv[0]}", call=call)
    except OSError as exc:
        return StepResult.failure(f"cannot start {argv[0]}{where}: {exc}", call=call)
    fields = {
        "exit_code": out.exit_code,
        "stdout": out.stdout,
        "stderr": out.stderr,
        "pid": out.pid,
        "elapsed": out.elapsed,
    }
    error = _command_error(out, argv, where, ctx.timeout, program_required)
    return StepResult(
        ok=error is None,
        fields=fields,
        output=out.stdout,
        error=error,
        timed_out=out.stopped == "timeout",
        elapsed=out.elapsed,
        call=dict(call),
    )


def _command_error(
    out: CommandOutcome, argv: Sequence[str], where: str, timeout: float | None, required: bool
) -> str | None:
    if out.stopped == "timeout":
        return f"timed out after {float(timeout or 0)}s{where}"
    if out.stopped == "cancelled":
        return "cancelled"
    if out.exit_code == 1 and "a password is required" in out.stderr and argv[:1] == ["sudo"]:
        return (
            f"sudo needs a password{where}; runbook runs `sudo -n` and never waits for one: "
            "allow these commands without a password (NOPASSWD) or connect as a user that may"
        )
    if required and out.exit_code == 127 and "not found" in out.stderr:
        program = argv[3] if argv[:1] == ["sudo"] and len(argv) > 3 else argv[0]
        return f"command not found{where}: {program} (is it installed there?)"
    return None


def check_targets(
    targets: Mapping[str, Target],
    transports: Mapping[str, TransportSpec],
    inventory: Inventory | None,
) -> dict[str, Any]:
    """Resolve every command target before the run: InvalidInput (exit 2) on bad input.

    Returns what the log header records per target: transport, resolved host
    names, and `host_key_check: false` when a target turned verification off.
    Targets of transports no plugin here provides (kubernetes, aws, ...) are
    left to their executors.
    """
    from runbook.errors import InvalidInput

    summary: dict[str, Any] = {}
    for name, target in targets.items():
        spec = transports.get(target.transport)
        if spec is None:
            continue
        hosts = resolve_hosts(target, inventory)
        problems = spec.check(target.options) if spec.check else []
        for host in hosts:
            if spec.check and host.vars:
                problems += spec.check({**target.options, **host.vars})
        if problems:
            raise InvalidInput(f"target '{name}': " + "; ".join(dict.fromkeys(problems)))
        entry: dict[str, Any] = {"transport": target.transport, "hosts": [h.name for h in hosts]}
        if target.options.get("host_key_check") is False:
            entry["host_key_check"] = False
        summary[name] = entry
    return summary
