"""Fan-out: bounded concurrency, serial batches, and a failing host that fails only itself."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from runbook.contract import (
    CommandOutcome,
    ExecContext,
    Host,
    StepResult,
    Target,
    TransportSpec,
    on_target,
)
from runbook.errors import MissingExtra
from runbook.run.connections import POOL_KEY, ConnectionPool
from runbook.run.fanout import WIDE, WIDE_SWITCH_INTERVAL, fan_out


def test_concurrency_is_bounded_and_every_host_gets_a_result() -> None:
    lock, running, peak = threading.Lock(), [0], [0]

    def work(host: str) -> StepResult:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return StepResult(ok=True, fields={"exit_code": 0}, output=host)

    hosts = [f"h{i}" for i in range(12)]
    result = fan_out(hosts, work, concurrency=3)
    assert peak[0] == 3
    assert list(result.hosts) == hosts and result.fields["hosts_ok"] == 12
    assert "h5: h5" in result.output


def test_an_exception_fails_only_that_host() -> None:
    def work(host: str) -> StepResult:
        if host == "b":
            raise ConnectionResetError("connection reset by peer")
        return StepResult(ok=True, fields={"exit_code": 0})

    result = fan_out(["a", "b", "c"], work)
    assert result.ok and result.hosts["a"].ok and result.hosts["c"].ok
    assert result.hosts["b"].error == "ConnectionResetError: connection reset by peer"


def test_serial_batches_stop_after_a_failed_batch() -> None:
    ran: list[str] = []

    def work(host: str) -> StepResult:
        ran.append(host)
        return StepResult(ok=True, fields={"exit_code": 1 if host == "h6" else 0})

    hosts = [f"h{i}" for i in range(12)]
    result = fan_out(hosts, work, serial=5)
    assert sorted(ran) == sorted(hosts[:10])
    assert result.hosts["h6"].fields["exit_code"] == 1
    assert result.hosts["h11"].error == "not run: batch 2/3 (serial: 5) failed on h6"


def test_cancel_leaves_later_hosts_unstarted() -> None:
    cancel = threading.Event()
    cancel.set()
    result = fan_out(["a", "b"], lambda h: StepResult(ok=True), cancel=cancel)
    assert all(r.error == "cancelled before it started" for r in result.hosts.values())


def test_min_passing_lets_a_step_pass_with_a_failed_host(run_cli, write_runbook) -> None:
    path = write_runbook(
        """
        apiVersion: runbook/v1
        kind: Runbook
        metadata: {name: quorum, title: Quorum, severity: P3}
        targets:
          pool: {transport: local, hosts: [a.local, b.local, c.local]}
        steps:
          - id: probe
            phase: triage
            min_passing: 2
            check: {shell: {command: 'test "$0" != x', target: pool}}
          - id: strict
            phase: triage
            check: {shell: {argv: [sh, -c, 'exit 3'], target: pool}}
        """
    )
    r = run_cli("run", str(path))
    assert r.code == 1
    assert "0/3 hosts passed (need 3)" in r.text


def test_serial_batches_are_journalled_before_the_next_batch_starts() -> None:
    events: list[tuple[str, object]] = []

    def work(host: str) -> StepResult:
        events.append(("run", host))
        return StepResult(ok=True, fields={"exit_code": 0})

    fan_out(
        ["a", "b", "c"],
        work,
        serial=1,
        on_start=lambda hosts: events.append(("start", list(hosts))),
        on_finish=lambda done: events.append(("finish", [h for h, _ in done])),
    )
    assert events == [
        ("start", ["a"]),
        ("run", "a"),
        ("finish", ["a"]),
        ("start", ["b"]),
        ("run", "b"),
        ("finish", ["b"]),
        ("start", ["c"]),
        ("run", "c"),
        ("finish", ["c"]),
    ]


def test_done_hosts_are_not_run_and_are_reported_first() -> None:
    ran: list[str] = []
    finished: list[str] = []
    earlier = StepResult(ok=True, fields={"exit_code": 0}, output="before\n")

    def work(host: str) -> StepResult:
        ran.append(host)
        return StepResult(ok=True, fields={"exit_code": 0}, output="now\n")

    result = fan_out(
        ["a", "b", "c"],
        work,
        serial=1,
        done={"a": earlier},
        on_finish=lambda done: finished.extend(h for h, _ in done),
    )
    assert ran == ["b", "c"] and finished == ["a", "b", "c"]
    assert result.hosts["a"] is earlier and "a: before" in result.output


def test_a_done_host_that_failed_stops_a_serial_rollout() -> None:
    ran: list[str] = []

    def work(host: str) -> StepResult:
        ran.append(host)
        return StepResult(ok=True)

    failed = StepResult(ok=True, fields={"exit_code": 1})
    result = fan_out(["a", "b"], work, serial=1, done={"a": failed})
    assert ran == []
    assert result.hosts["b"].error == "not run: (serial: 1) a failed before the resume"


def test_a_host_that_never_started_gets_no_finish() -> None:
    cancel = threading.Event()
    finished: list[str] = []

    def work(host: str) -> StepResult:
        cancel.set()  # the run is stopped while the first host runs
        return StepResult(ok=True)

    result = fan_out(
        ["a", "b"],
        work,
        concurrency=1,
        cancel=cancel,
        on_finish=lambda done: finished.extend(h for h, _ in done),
    )
    assert finished == ["a"]
    assert result.hosts["b"].error == "cancelled before it started"


def test_a_log_that_cannot_be_written_starts_no_further_host() -> None:
    ran: list[str] = []

    def work(host: str) -> StepResult:
        ran.append(host)
        return StepResult(ok=True)

    def refuse(done: object) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        fan_out(["a", "b", "c"], work, serial=1, on_finish=refuse)
    assert ran == ["a"]


# -- a transport's per-run connector (connect_for_run) ------------------------------------------


class _Conn:
    """A connection of the test transport below: it only says which host it is."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def run(self, argv: Sequence[str], **_: Any) -> CommandOutcome:
        return CommandOutcome(0, self.host.name, "", 0.0, "exited", None)

    def close(self) -> None:
        return None


def _on_hosts(pool: ConnectionPool, hosts: list[str]) -> StepResult:
    target = Target("web", "counted", {"hosts": hosts})
    ctx = ExecContext(step_id="s", target=target, resources={POOL_KEY: pool})
    return on_target(ctx, "web", lambda conn, host: StepResult(ok=True, output=conn.host.name))


def test_a_transports_run_connector_is_made_once_per_run_before_hosts_fan_out() -> None:
    made: list[str] = []

    def connect_for_run() -> Callable[[Host, Mapping[str, Any]], _Conn]:
        made.append(threading.current_thread().name)
        return lambda host, options: _Conn(host)

    def connect(host: Host, options: Mapping[str, Any]) -> _Conn:
        raise AssertionError("a run connects with its run connector")

    spec = TransportSpec("counted", connect, connect_for_run=connect_for_run)
    pool = ConnectionPool({"counted": spec})
    hosts = [f"h{i}" for i in range(30)]
    for _ in range(3):  # three steps of one run
        result = _on_hosts(pool, hosts)
        assert result.fields["hosts_ok"] == 30 and result.hosts["h7"].output == "h7"
    assert made == [threading.current_thread().name]  # once, and not in a fan-out worker
    _on_hosts(ConnectionPool({"counted": spec}), hosts)  # another run: a connector of its own
    assert len(made) == 2


def test_a_run_connector_that_fails_fails_each_host_with_its_reason() -> None:
    def connect_for_run() -> Callable[[Host, Mapping[str, Any]], _Conn]:
        raise MissingExtra("fakessh", "fake")

    spec = TransportSpec("counted", lambda h, o: _Conn(h), connect_for_run=connect_for_run)
    result = _on_hosts(ConnectionPool({"counted": spec}), ["a", "b"])
    assert result.fields["hosts_failed"] == 2
    assert all(
        "pip install 'runbook-as-code[fake]'" in (r.error or "") for r in result.hosts.values()
    )


def test_a_wide_fan_out_lengthens_the_switch_interval_and_puts_it_back() -> None:
    before = sys.getswitchinterval()
    seen: list[float] = []

    def work(host: str) -> StepResult:
        seen.append(sys.getswitchinterval())
        if host == "h0":  # a second wide fan-out overlapping this one
            fan_out([f"i{i}" for i in range(WIDE)], lambda h: StepResult(ok=True))
        return StepResult(ok=True)

    fan_out(["x"], work)  # a narrow one leaves it alone
    assert seen == [before]
    fan_out([f"h{i}" for i in range(WIDE)], work, concurrency=WIDE)
    assert min(seen[1:]) == pytest.approx(WIDE_SWITCH_INTERVAL)
    assert sys.getswitchinterval() == before
