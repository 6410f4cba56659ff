"""Every hook a plugin can implement: the one page a plugin author reads.

Plugins are modules (or objects) registered under the `runbook` entry-point
group; the built-in executors in `runbook_plugins` use exactly the same route.
Implement a hook by decorating a function with `runbook.contract.hookimpl` and
naming it as below; every type a hook takes or returns is in `runbook.contract`,
the only module this one imports. Collecting hooks (all results are gathered)
return lists; observer hooks return None. Nothing here is `firstresult`: every
plugin is heard.
"""

from __future__ import annotations

from runbook.contract import (
    ExecutorSpec,
    ReportFormat,
    RunEvent,
    StepEvent,
    TransportSpec,
    hookspec,
)


@hookspec
def runbook_executors() -> list[ExecutorSpec]:  # type: ignore[empty-body]
    """Return the executors this plugin provides.

    Called once per process, when the plugin is imported: by a scan of every
    plugin (the first start after the installed plugins change), else when one of
    its executors is first needed. Executor names are global: two
    plugins returning the same name is an error that names both plugins. Keep
    heavy imports (SDKs) inside `run()`, not at module import, so the CLI stays
    fast and a missing optional dependency only fails the steps that need it.
    """


@hookspec
def runbook_transports() -> list[TransportSpec]:  # type: ignore[empty-body]
    """Return the transports this plugin provides (how commands reach a host).

    Called once per process, when the plugin is imported: by a scan of every
    plugin, else when the first step needs a connection through one of them.
    A target's `transport:` names one (`local`, `ssh`, ...). `connect()` opens
    one connection per host, reused by every step of a run and closed when the
    run ends; it raises `runbook.contract.TransportError` for a host that
    cannot be reached or trusted, which fails only that host. Two plugins
    returning the same name is an error naming both. Import client libraries
    inside `connect()`, never at module import.
    """


@hookspec
def runbook_report_formats() -> list[ReportFormat]:  # type: ignore[empty-body]
    """Return report formats (`runbook report LOG --format NAME`) this plugin adds.

    Called when a report is requested. A format name claimed twice is an error.
    """


@hookspec
def runbook_step_finished(event: StepEvent) -> None:
    """Observe a step that has finished (passed, failed, skipped, planned...).

    Called on the runner's thread after the step's records are in the log.
    An exception here is recorded as an observer error and never fails the run:
    observers (notifications, metrics) must not change an incident's outcome.
    """


@hookspec
def runbook_run_finished(event: RunEvent) -> None:
    """Observe a run whose incident log is complete: send its final hash out.

    Called once per run, on the runner's thread, after the log's final record
    (`run.finished`, or `run.interrupted` after a signal) is durable -- whatever
    ended the run: its end, an abort, the run deadline, SIGINT/SIGTERM/SIGHUP, an
    internal error. `event.final_hash` is the hash `runbook run` prints; an observer
    that sends it somewhere the log's editor cannot reach makes it an anchor. Not
    called when the log itself could not be written (no final record). Nothing can
    be added to the log any more, so an exception here is shown on the console,
    never recorded, and never changes the run's outcome or exit code.
    """
