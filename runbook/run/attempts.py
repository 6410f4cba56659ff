"""Run one executor attempt on a worker thread, within a time budget.

Executors enforce their own timeouts (the shell kills its process group, HTTP
has socket timeouts), but a runbook must never hang at 3 a.m. because a plugin
forgot to: the runner waits on the worker with a hard limit a little past the
budget, sets `ctx.cancel`, and moves on. Waiting happens on the main thread in
short slices so Ctrl-C is seen at once and progress can be reported. A result
that timed out at the budget says which bound set it (`limit`: the attempt's
timeout, the step's deadline or the run's deadline).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from runbook.contract import ExecContext, ExecutorSpec, StepResult
from runbook.errors import OperatorDeclined, RunbookError

GRACE_SECONDS = 3.0
POLL_SECONDS = 0.05
_BUDGET_SPENT = 0.95  # a timeout this close to the budget is the budget's


class _Box:
    """The worker's result, and an Event set when it is there.

    Waiting on an Event rather than `Thread.join` matters: on CPython before
    3.13 a `join()` interrupted by Ctrl-C can mark the thread finished, and the
    process would then exit without letting the executor kill its processes.
    """

    def __init__(self) -> None:
        self.result: StepResult | None = None
        self.exception: BaseException | None = None
        self.done = threading.Event()


def _work(spec: ExecutorSpec, config: Mapping[str, Any], ctx: ExecContext, box: _Box) -> None:
    try:
        box.result = spec.run(config, ctx)
    except OperatorDeclined as exc:
        box.exception = exc
    except RunbookError as exc:
        box.result = StepResult.failure(str(exc))
    except Exception as exc:  # a plugin bug fails its step, never the run's log
        box.result = StepResult.failure(
            f"executor '{spec.name}' crashed: {type(exc).__name__}: {exc}"
        )
    finally:
        box.done.set()


def run_attempt(
    spec: ExecutorSpec,
    config: Mapping[str, Any],
    ctx: ExecContext,
    on_progress: Callable[[float], None],
    limit: str = "attempt timeout",
) -> StepResult:
    """Run `spec.run` and return its result, a timeout failure, or re-raise a decline.

    `limit` names the bound `ctx.timeout` comes from, for the error of a result
    that ran out of it. KeyboardInterrupt propagates to the caller after the
    attempt was told to stop.
    """
    box = _Box()
    worker = threading.Thread(
        target=_work, args=(spec, config, ctx, box), name=f"step-{ctx.step_id}", daemon=True
    )
    start = time.monotonic()
    worker.start()
    hard_limit = None if ctx.timeout is None else ctx.timeout + GRACE_SECONDS
    next_progress = 1.0
    try:
        while not box.done.wait(POLL_SECONDS):
            elapsed = time.monotonic() - start
            if elapsed >= next_progress:
                on_progress(elapsed)
                next_progress = float(int(elapsed) + 1)
            if hard_limit is not None and elapsed > hard_limit:
                ctx.cancel.set()
                box.done.wait(GRACE_SECONDS)
                return StepResult.failure(
                    f"timed out after {ctx.timeout:g}s ({limit}; the executor did not stop "
                    "by itself)",
                    timed_out=True,
                    elapsed=elapsed,
                )
    except KeyboardInterrupt:
        ctx.cancel.set()
        _wait_through_interrupts(box.done, GRACE_SECONDS)
        raise
    if box.exception is not None:
        raise box.exception
    result = box.result or StepResult.failure("executor returned nothing")
    if not result.elapsed:
        result = replace(result, elapsed=time.monotonic() - start)
    return _naming_the_bound(result, ctx.timeout, limit)


def _naming_the_bound(result: StepResult, budget: float | None, limit: str) -> StepResult:
    """A result that timed out when the budget ran out says which bound that was.

    One that timed out well before (the executor's own, shorter timeout, such as
    an http check's `timeout:`) already says so in its own words.
    """
    if not result.timed_out or result.error is None or budget is None:
        return result
    if result.elapsed < budget * _BUDGET_SPENT or f"({limit}" in result.error:
        return result
    return replace(result, error=f"{result.error} ({limit})")


def _wait_through_interrupts(done: threading.Event, seconds: float) -> None:
    """Give the executor time to clean up even if the operator presses Ctrl-C again."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        try:
            if done.wait(max(until - time.monotonic(), 0.0)):
                return
        except KeyboardInterrupt:
            continue
