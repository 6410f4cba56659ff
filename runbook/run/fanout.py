"""Fan a per-host function out over many hosts: bounded, batched, journalled host by host.

A step on a group runs on all its hosts at once up to `concurrency` (hosts
start as soon as a worker is free, no lock-step), or in `serial` batches for
rolling restarts, where a batch with a failed host stops the rest so one bad
release does not take down the whole fleet. Each host gets its own
StepResult: an exception or a dead host is that host's failure with the
reason, never the step's or the run's.

Exactly-once across crashes rests on two records per host (`HostRecorder`):
the hosts about to start are journalled before they start, and each host's
result as it finishes (hosts finishing together share one fsync), so a batch is
on disk before the next one starts. A resumed run passes the hosts that already
finished as `done`: they are not run again, and they count as the first batch.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from queue import SimpleQueue
from typing import Any

from runbook.contract import ExecContext, StepResult
from runbook.errors import RunbookError
from runbook.log.records import RecordType

DEFAULT_CONCURRENCY = 20
WIDE = 64
"""From this many hosts at once, a fan-out lengthens the interpreter's switch interval."""
WIDE_SWITCH_INTERVAL = 0.05

HostRun = Callable[[str], StepResult]
HostsStarting = Callable[[Sequence[str]], None]
"""Told the hosts about to start, before any of them does; raising starts none of them."""
HostsFinished = Callable[[Sequence[tuple[str, StepResult]]], None]
"""Told hosts that finished (or were carried over as `done`), as soon as they have."""


def host_passed(result: StepResult) -> bool:
    """A batch counts a host as failed when it could not run or exited non-zero."""
    return result.ok and result.fields.get("exit_code", 0) in (0, None)


def _guarded(run: HostRun, host: str, cancel: threading.Event | None) -> tuple[StepResult, bool]:
    """The host's result, and whether `run` was called at all (a cancelled host never was)."""
    if cancel is not None and cancel.is_set():
        return StepResult.failure("cancelled before it started"), False
    started = time.monotonic()
    try:
        return run(host), True
    except Exception as exc:  # one host's bug or broken connection fails only that host
        failure = StepResult.failure(
            f"{type(exc).__name__}: {exc}", elapsed=time.monotonic() - started
        )
        return failure, True


def _batches(hosts: Sequence[str], serial: int | None) -> list[Sequence[str]]:
    if not hosts:
        return []
    if not serial or serial >= len(hosts):
        return [hosts]
    return [hosts[i : i + serial] for i in range(0, len(hosts), serial)]


def fan_out(
    hosts: Sequence[str],
    run: HostRun,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    serial: int | None = None,
    cancel: threading.Event | None = None,
    passed: Callable[[StepResult], bool] = host_passed,
    done: Mapping[str, StepResult] | None = None,
    on_start: HostsStarting | None = None,
    on_finish: HostsFinished | None = None,
) -> StepResult:
    """Run `run(host)` for every host; return StepResult(hosts={host: result}).

    With `serial`, batches run one after another and a batch in which any host
    did not pass (`passed`) leaves the later hosts unrun, each with a result
    saying why. Hosts in `done` are not run: their results are taken as they
    are, reported to `on_finish` first, and judged as a batch of their own.
    Only the callbacks can make this raise (the log cannot be written); then no
    further host starts.
    """
    started = time.monotonic()
    carried = {h: done[h] for h in hosts if done and h in done}
    results: dict[str, StepResult] = dict(carried)
    if carried and on_finish is not None:
        on_finish([(h, carried[h]) for h in hosts if h in carried])
    batches = _batches([h for h in hosts if h not in carried], serial)
    failed_before = [h for h in carried if not passed(carried[h])]
    if serial and failed_before and batches:
        reason = f"not run: (serial: {serial}) {', '.join(failed_before)} failed before the resume"
        results.update({h: StepResult.failure(reason) for batch in batches for h in batch})
        batches = []
    workers = max(1, min(concurrency or DEFAULT_CONCURRENCY, len(hosts) or 1))
    with (
        _switch_interval.lengthened(workers >= WIDE),
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fanout") as pool,
    ):
        for number, batch in enumerate(batches, 1):
            if cancel is not None and cancel.is_set():
                for later in batches[number - 1 :]:
                    results.update(
                        {h: StepResult.failure("cancelled before it started") for h in later}
                    )
                break
            if on_start is not None:
                on_start(batch)
            results.update(_run_batch(pool, batch, run, cancel, on_finish))
            bad = [h for h in batch if not passed(results[h])]
            if bad and number < len(batches):
                reason = (
                    f"not run: batch {number}/{len(batches)} (serial: {serial}) failed "
                    f"on {', '.join(bad)}"
                )
                for later in batches[number:]:
                    results.update({h: StepResult.failure(reason) for h in later})
                break
    return _summary(hosts, results, time.monotonic() - started)


class _SwitchInterval:
    """The interpreter's switch interval, lengthened while any wide fan-out runs.

    Every thread waiting for the GIL wakes once per switch interval (5 ms) to ask
    for it; with a thousand hosts' threads (a worker and an SSH reader each) that
    storm of futex calls cost more CPU than the SSH work: measured at 1,000 hosts,
    23 s of CPU of which 12.5 s in the kernel, 1.2M context switches; at 50 ms,
    15 s, 7 s and 0.58M. Threads blocked on I/O do not wait on the GIL, and one
    that releases it wakes a waiter at once: the longer interval only delays
    forcing a busy thread to yield, which a fan-out of I/O-bound hosts does not
    need. The first wide fan-out to start saves the interval, the last to end puts
    it back.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0
        self._saved = 0.0

    @contextmanager
    def lengthened(self, wide: bool) -> Iterator[None]:
        if not wide:
            yield
            return
        with self._lock:
            if self._running == 0:
                self._saved = sys.getswitchinterval()
                sys.setswitchinterval(max(WIDE_SWITCH_INTERVAL, self._saved))
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
                if self._running == 0:
                    sys.setswitchinterval(self._saved)


_switch_interval = _SwitchInterval()


def _run_batch(
    pool: ThreadPoolExecutor,
    batch: Sequence[str],
    run: HostRun,
    cancel: threading.Event | None,
    on_finish: HostsFinished | None,
) -> dict[str, StepResult]:
    """Run one batch; hosts that finish together are reported together (one fsync).

    Finished hosts arrive on a queue (each future's done-callback), so waiting
    costs the same per host however many are still running; `wait()` on the
    pending set would walk all of them at every wake-up (quadratic at 1,000).
    """
    order = {h: i for i, h in enumerate(batch)}
    arrived: SimpleQueue[Future[tuple[StepResult, bool]]] = SimpleQueue()
    futures: dict[Future[tuple[StepResult, bool]], str] = {}
    for host in batch:
        future = pool.submit(_guarded, run, host, cancel)
        futures[future] = host
        future.add_done_callback(arrived.put)
    results: dict[str, StepResult] = {}
    waiting = len(futures)
    try:
        while waiting:
            finished = [arrived.get()]
            while not arrived.empty():
                finished.append(arrived.get())
            waiting -= len(finished)
            ran: list[tuple[str, StepResult]] = []
            for future in finished:
                host = futures[future]
                results[host], called = future.result()
                if called:
                    ran.append((host, results[host]))
            if ran and on_finish is not None:
                on_finish(sorted(ran, key=lambda item: order[item[0]]))
    except BaseException:
        for future in futures:
            future.cancel()  # queued hosts never start once their results cannot be kept
        raise
    return results


def _summary(hosts: Sequence[str], results: dict[str, StepResult], elapsed: float) -> StepResult:
    """The step-level view: counts as fields, each host's output prefixed by its name."""
    ok = [h for h in hosts if results[h].ok]
    lines = []
    for host in hosts:
        r = results[host]
        text = r.output.rstrip("\n") if r.ok else f"ERROR: {r.error}"
        lines += [f"{host}: {line}" for line in (text.splitlines() or [""])]
    fields = {"hosts_total": len(hosts), "hosts_ok": len(ok), "hosts_failed": len(hosts) - len(ok)}
    return StepResult(
        ok=True,
        fields=fields,
        output="\n".join(lines) + "\n",
        elapsed=elapsed,
        hosts={h: results[h] for h in hosts},
    )


# -- the log's view of a fan-out -------------------------------------------------------------

HOST_RECORDER = "runbook.host_recorder"
"""Where the runner puts the running attempt's HostRecorder in `ExecContext.resources`."""

EmitMany = Callable[[list[tuple[RecordType, dict[str, Any]]]], None]


class HostRecorder:
    """Journals one attempt's fan-out host by host; made by the runner for each attempt.

    `restored` holds the hosts a resumed run must not run again (they finished in
    the interrupted run, whose id is `restored_from`). Once the runner closes the
    recorder (the attempt ended, was abandoned at its time limit, or the run was
    interrupted), nothing more is written for it and no further host may start: a
    host whose end the log does not show is one a resumed run asks about.
    """

    def __init__(
        self,
        step_id: str,
        attempt: int,
        emit_many: EmitMany,
        restored: Mapping[str, StepResult] | None = None,
        restored_from: str | None = None,
    ) -> None:
        self.step_id = step_id
        self.attempt = attempt
        self.restored: Mapping[str, StepResult] = dict(restored or {})
        self._restored_from = restored_from
        self._emit_many = emit_many
        self._lock = threading.Lock()
        self._closed = False

    def started(self, hosts: Sequence[str]) -> None:
        with self._lock:
            if self._closed:
                raise RunbookError(f"step '{self.step_id}': the attempt ended; no host starts now")
            data = {"step": self.step_id, "attempt": self.attempt, "hosts": list(hosts)}
            self._emit_many([(RecordType.STEP_HOSTS_STARTED, data)])

    def finished(self, results: Sequence[tuple[str, StepResult]]) -> None:
        from runbook.run.judging import host_data

        with self._lock:
            if self._closed:
                return  # too late for this attempt: the host stays unfinished in the log
            events = []
            for host, result in results:
                data = {"step": self.step_id, "attempt": self.attempt, "host": host}
                data.update(host_data(result))
                if self._restored_from is not None and self.restored.get(host) is result:
                    data["restored_from"] = self._restored_from
                events.append((RecordType.STEP_HOST_FINISHED, data))
            self._emit_many(events)

    def close(self) -> None:
        with self._lock:
            self._closed = True


def recorder_for(ctx: ExecContext) -> HostRecorder | None:
    """The running attempt's recorder, if `ctx` is that attempt's (None outside a run)."""
    recorder = ctx.resources.get(HOST_RECORDER)
    if isinstance(recorder, HostRecorder) and recorder.step_id == ctx.step_id:
        return recorder
    return None
