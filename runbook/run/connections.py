"""The per-run pool of open connections, and taking a step to a target's hosts.

The transport types (`TransportSpec`, `Connection`, `CommandOutcome`,
`TransportError`) are part of the plugin contract (`runbook.contract`); this
module is the runtime behind them. The `ConnectionPool` lives in
`ExecContext.resources` for the whole run, so every step on a host reuses that
host's single connection, and the runner closes them all when the run ends.
`run_on_target()` implements `runbook.contract.on_target`, the one entry point an
executor calls: it runs a per-host function locally, or fans it out over the
target's hosts and returns per-host results.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runbook.contract import (
    ConnectFn,
    Connection,
    ExecContext,
    Host,
    HostWork,
    StepResult,
    Target,
    TransportError,
    TransportSpec,
)
from runbook.errors import RunbookError
from runbook.run.inventory import Inventory, resolve_hosts

POOL_KEY = "runbook.connections"
"""Where the run's ConnectionPool sits in `ExecContext.resources`."""


@dataclass
class ConnectionPool:
    """One connection per (target, host) for a run; closed by the runner at the end.

    Connecting is done under a per-key lock so concurrent steps never open two
    connections to one host, while different hosts connect in parallel. Each
    transport's `connect_for_run()` is called once per pool (`prepare`, before a
    step fans out), so what it shares across hosts is built once per run.
    """

    transports: Mapping[str, TransportSpec]
    inventory: Inventory | None = None
    _open: dict[tuple[str, str], Connection] = field(default_factory=dict)
    _locks: dict[tuple[str, str], threading.Lock] = field(default_factory=dict)
    _connectors: dict[str, ConnectFn] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def transport(self, name: str) -> TransportSpec:
        spec = self.transports.get(name)
        if spec is None:
            known = ", ".join(sorted(self.transports)) or "none"
            raise TransportError(f"unknown transport '{name}' (installed transports: {known})")
        return spec

    def hosts(self, target: Target) -> list[Host]:
        """The target's hosts, groups expanded through the inventory."""
        remote = self.transport(target.transport).remote
        return resolve_hosts(target, self.inventory, remote=remote)

    def prepare(self, target: Target) -> None:
        """Make the run's connector for the target's transport now, before hosts fan out.

        A failure (a missing extra) is left for each host's connect to report.
        """
        try:
            self._connector(target.transport)
        except RunbookError:
            return

    def _connector(self, transport: str) -> ConnectFn:
        spec = self.transport(transport)
        if spec.connect_for_run is None:
            return spec.connect
        with self._guard:
            connect = self._connectors.get(transport)
            if connect is None:
                connect = self._connectors[transport] = spec.connect_for_run()
            return connect

    def connect(self, target: Target, host: Host) -> Connection:
        connect = self._connector(target.transport)
        key = (target.name, host.name)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            conn = self._open.get(key)
            if conn is None:
                conn = connect(host, {**target.options, **host.vars})
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


def run_on_target(ctx: ExecContext, target_name: str | None, work: HostWork) -> StepResult:
    """`runbook.contract.on_target`: here, or on each of the target's hosts.

    A local target without `hosts` gives a plain result; any target with hosts
    gives one result per host (`StepResult.hosts`), judged per host by the runner,
    which journals each host as it starts and finishes (`HostRecorder`) and, when
    resuming, names the hosts that must not run again.
    """
    from runbook.run.fanout import fan_out, recorder_for

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
    except RunbookError as exc:  # an unknown transport or host: TransportError, InventoryError
        return StepResult.failure(str(exc))
    if not spec.remote and not target.options.get("hosts"):
        return _on_host(pool, target, hosts[0], work)
    pool.prepare(target)  # here, not in the first of many workers, which the rest wait for
    recorder = recorder_for(ctx)
    by_name = {h.name: h for h in reversed(hosts)}  # the first of a name, as listed
    return fan_out(
        [h.name for h in hosts],
        lambda name: _on_host(pool, target, by_name[name], work),
        concurrency=ctx.concurrency,
        serial=ctx.serial,
        cancel=ctx.cancel,
        done=recorder.restored if recorder else None,
        on_start=recorder.started if recorder else None,
        on_finish=recorder.finished if recorder else None,
    )


def _on_host(pool: ConnectionPool, target: Target, host: Host, work: HostWork) -> StepResult:
    """Connect (or reuse) and run; an unreachable host becomes its own failed result."""
    try:
        conn = pool.connect(target, host)
    except RunbookError as exc:  # TransportError, or e.g. MissingExtra
        return StepResult.failure(str(exc))
    try:
        return work(conn, host)
    except TransportError as exc:
        pool.discard(target, host)
        return StepResult.failure(str(exc))


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
        hosts = resolve_hosts(target, inventory, remote=spec.remote)
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
