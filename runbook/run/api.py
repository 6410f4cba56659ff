"""Run a runbook from Python: what the CLI, the pytest plugin and scenario tests share.

`run_runbook` does what `runbook run` does after argument parsing: it opens
the incident log, runs, closes the log and returns the outcome with the log's
path. Callers pick the registry (the real plugins, or a scenario's stubs), the
console and the operator I/O, so nothing needs patching to test a runbook.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbook import session
from runbook.cli.console import Console
from runbook.contract import OperatorIO
from runbook.load.model import Runbook
from runbook.registry import PluginRegistry
from runbook.run.runner import RunOptions, RunOutcome


@dataclass(frozen=True)
class RunResult:
    """The outcome of one run and where its incident log is."""

    outcome: RunOutcome
    log_path: Path

    @property
    def exit_code(self) -> int:
        return int(self.outcome.exit_code)

    def records(self) -> list[dict[str, Any]]:
        from runbook.log.journal import read_log

        return read_log(self.log_path)


class _Silent(Console):
    def record(self, rec: dict[str, Any]) -> None:
        return None


class _NoTerminal:
    """Operator I/O for unattended runs: nobody is there to answer."""

    interactive = False

    def ask(self, prompt: str, choices: tuple[str, ...] = ()) -> str:
        from runbook.errors import OperatorDeclined

        raise OperatorDeclined(f"'{prompt}' needs an answer but the run is unattended")


def run_runbook(
    runbook: Runbook,
    params: Mapping[str, Any],
    registry: PluginRegistry,
    log_dir: Path,
    options: RunOptions | None = None,
    console: Console | None = None,
    io: OperatorIO | None = None,
    header_extra: Mapping[str, Any] | None = None,
) -> RunResult:
    """Run with already resolved params (see `runbook.load.params.resolve_params`)."""
    from runbook.log.journal import JournalWriter
    from runbook.run.connections import check_targets
    from runbook.run.runner import Runner
    from runbook.run.secrets import Masker

    options = options or RunOptions()
    console = console or _Silent()
    targets = check_targets(runbook.targets, registry.transports(), options.inventory)
    header_extra = {**_targets_header(targets, options), **(header_extra or {})}
    masker = Masker(session.secret_values(runbook, params))
    run_id = session.new_run_id()
    header = session.header(
        runbook, run_id, params, options.operator, registry, options.dry_run, header_extra
    )
    journal = JournalWriter.create(log_dir, runbook.name, run_id, header, masker)
    console.record(journal.header_record)
    with journal:
        outcome = Runner(
            runbook, params, registry, journal, console, io or _NoTerminal(), options
        ).run()
    return RunResult(outcome, journal.path)


def _targets_header(targets: Mapping[str, Any], options: RunOptions) -> dict[str, Any]:
    """Resolved hosts per target, the inventory, and any host-key checking turned off."""
    extra: dict[str, Any] = {}
    if targets:
        extra["targets"] = dict(targets)
    if options.inventory is not None:
        extra["inventory"] = options.inventory.path
    unchecked = sorted(n for n, t in targets.items() if t.get("host_key_check") is False)
    if unchecked:
        extra["host_key_check_off"] = unchecked
    return extra
