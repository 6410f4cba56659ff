"""Fan a per-host function out over many hosts: bounded, batched, never raising.

A step on a group runs on all its hosts at once up to `concurrency` (hosts
start as soon as a worker is free, no lock-step), or in `serial` batches for
rolling restarts, where a batch with a failed host stops the rest so one bad
release does not take down the whole fleet. Each host gets its own
StepResult: an exception or a dead host is that host's failure with the
reason, never the step's or the run's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from runbook.contract import StepResult

DEFAULT_CONCURRENCY = 20

HostRun = Callable[[str], StepResult]


def host_passed(result: StepResult) -> bool:
    """A batch counts a host as failed when it could not run or exited non-zero."""
    return result.ok and result.fields.get("exit_code", 0) in (0, None)


def _guarded(run: HostRun, host: str, cancel: threading.Event | None) -> StepResult:
    if cancel is not None and cancel.is_set():
        return StepResult.failure("cancelled before it started")
    started = time.monotonic()
    try:
        return run(host)
    except Exception as exc:  # one host's bug or broken connection fails only that host
        return StepResult.failure(
            f"{type(exc).__name__}: {exc}", elapsed=time.monotonic() - started
        )


def _batches(hosts: Sequence[str], serial: int | None) -> list[Sequence[str]]:
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
) -> StepResult:
    """Run `run(host)` for every host; return StepResult(hosts={host: result}).

    With `serial`, batches run one after another and a batch in which any host
    did not pass (`passed`) leaves the later hosts unrun, each with a result
    saying why.
    """
    started = time.monotonic()
    results: dict[str, StepResult] = {}
    workers = max(1, min(concurrency or DEFAULT_CONCURRENCY, len(hosts)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fanout") as pool:
        batches = _batches(hosts, serial)
        for number, batch in enumerate(batches, 1):
            futures = {h: pool.submit(_guarded, run, h, cancel) for h in batch}
            results.update({h: f.result() for h, f in futures.items()})
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
