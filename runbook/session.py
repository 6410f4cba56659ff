"""The one front door: what the `runbook` verbs, the Python API and the pytest plugin share.

A `Session` holds the plugin registry (loaded once, on first use) and does
everything between "someone named a runbook" and "the run's log is closed":
resolve NAME|PATH and load it, type the params, build or check a plan, check
the run options, and run with a fresh incident log. Every caller goes through
it, so `--only typo` is refused with the same error whether it came from the
command line, a script or a scenario test. Heavy modules (pluggy, YAML,
jsonschema, the runner) are imported when a session first needs them, never by
`runbook --help`, and a plugin when one of its executors is first looked up.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runbook.errors import InvalidInput, OperatorDeclined
from runbook.run.watcher import RunWatcher, SilentWatcher

if TYPE_CHECKING:
    from runbook.contract import ExecutorSpec, OperatorIO
    from runbook.load.model import Runbook
    from runbook.plan.planner import Plan
    from runbook.registry import PluginRegistry
    from runbook.run.inventory import Inventory
    from runbook.run.resume import ResumePoint
    from runbook.run.runner import RunOptions, RunOutcome

DEFAULT_LOG_DIR = "incident-logs"


@dataclass(frozen=True)
class RunResult:
    """The outcome of one run and where its incident log is."""

    outcome: RunOutcome
    log_path: Path
    final_hash: str = ""
    """sha256 of the log's last record: print it, send it, `log verify --expect` it."""
    signed_by: str = ""
    """Fingerprint of the key that signed the log (`SHA256:...`); empty if unsigned."""

    @property
    def exit_code(self) -> int:
        """What `runbook run` exits with for this outcome (see `runbook.errors.ExitCode`)."""
        return int(self.outcome.exit_code)

    def records(self) -> list[dict[str, Any]]:
        """The records of the incident log, header first."""
        from runbook.log.journal import read_log

        return read_log(self.log_path)


class Session:
    """Load, plan and run runbooks with one set of plugins; what every front end uses.

    `registry` defaults to every plugin installed under the `runbook` entry
    point, loaded on first use; a scenario passes a registry of stubs instead.
    Incident logs go to `log_dir`, else `$RUNBOOK_LOG_DIR`, else
    `./incident-logs`. Errors are `runbook.errors.RunbookError`s carrying the
    message and exit code the CLI prints.
    """

    def __init__(
        self, registry: PluginRegistry | None = None, *, log_dir: str | Path | None = None
    ) -> None:
        self._registry = registry
        self.log_dir = Path(log_dir or os.environ.get("RUNBOOK_LOG_DIR") or DEFAULT_LOG_DIR)

    # -- plugins ---------------------------------------------------------------------
    @property
    def registry(self) -> PluginRegistry:
        """The plugins this session runs with (entry points are scanned once)."""
        if self._registry is None:
            from runbook.registry import PluginRegistry

            self._registry = PluginRegistry.from_entry_points()
        return self._registry

    @property
    def executors(self) -> Mapping[str, ExecutorSpec]:
        """Executor specs by name; raises DuplicateExecutor when two plugins claim one.

        A plugin is imported when one of its executors is first looked up, so loading a
        runbook imports only the plugins it names."""
        return self.registry.executor_specs()

    # -- loading ---------------------------------------------------------------------
    def load(self, name_or_path: str | Path) -> Runbook:
        """Resolve NAME|PATH (a path, ./runbooks, $RUNBOOK_PATH, the library) and load it."""
        from runbook.load.resolve import resolve_runbook

        return self.load_file(resolve_runbook(os.fspath(name_or_path)))

    def load_file(self, path: str | Path) -> Runbook:
        """Load and validate the runbook at `path`; errors name the file as given."""
        from runbook.load.loader import load_runbook

        return load_runbook(path, self.executors, self.registry.unknown_executor_message)

    def params(
        self,
        runbook: Runbook,
        given: Mapping[str, str] | None = None,
        *,
        resume: ResumePoint | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Typed values for every param: `given` (`-p`), else the environment (secrets), else
        defaults. With `resume`, the interrupted run's params, which `given` may not contradict.
        `environ` defaults to `os.environ`. Raises ParamError (exit 2)."""
        from runbook.load.params import resolve_params

        values: Mapping[str, str] = given or {}
        if resume is not None:
            from runbook.run.resume import merge_params

            values = merge_params(resume, values)
        return resolve_params(runbook, values, environ)

    def resume_point(self, log: str | Path, runbook: Runbook) -> ResumePoint:
        """What the run recorded in `log` finished (`--resume LOG`), for `RunOptions.resume`.

        Refuses a log that is missing, tampered, from another runbook or another version of
        its file, a dry-run, a run that passed, or one a later run (in its directory or
        `log_dir`) already resumed and acted on."""
        from runbook.run.resume import load_resume

        return load_resume(Path(log), runbook, [self.log_dir])

    # -- plans -----------------------------------------------------------------------
    def plan(
        self, runbook: Runbook, params: Mapping[str, Any], inventory: Inventory | None = None
    ) -> Plan:
        """The dry-run plan with its digest (`runbook plan`); secrets are masked in it."""
        from runbook.plan.planner import build_plan

        masked = _masked_params(runbook, params)
        return build_plan(runbook, params, self.executors, masked, inventory)

    def check_plan(
        self,
        saved: str | Path,
        runbook: Runbook,
        params: Mapping[str, Any],
        inventory: Inventory | None = None,
    ) -> None:
        """Raise PlanMismatch (exit 2) unless the plan saved at `saved` is what would run now."""
        from runbook.plan.saved import check_saved_plan

        masked = _masked_params(runbook, params)
        check_saved_plan(Path(saved), runbook, params, self.executors, masked, inventory)

    # -- running ---------------------------------------------------------------------
    def check_run(
        self,
        runbook: Runbook,
        params: Mapping[str, Any],
        *,
        only: Iterable[str] = (),
        from_step: str | None = None,
        plan: str | Path | None = None,
        inventory: Inventory | None = None,
    ) -> None:
        """Refuse (exit 2) what `runbook run` refuses before it opens a log: `--only` or
        `--from` naming no step, and a saved `--plan` that no longer matches."""
        steps = {s.id for s in runbook.steps}
        for step_id in [*only, *([from_step] if from_step else [])]:
            if step_id not in steps:
                raise InvalidInput(f"no step '{step_id}' in runbook '{runbook.name}'")
        if plan is not None:
            self.check_plan(plan, runbook, params, inventory)

    def run(
        self,
        runbook: Runbook,
        params: Mapping[str, Any],
        options: RunOptions | None = None,
        *,
        plan: str | Path | None = None,
        console: RunWatcher | None = None,
        io: OperatorIO | None = None,
        header_extra: Mapping[str, Any] | None = None,
    ) -> RunResult:
        """Run `runbook` with params from `params()`, recording a new incident log in `log_dir`.

        Checks the options first (`check_run`, with `plan` if given; with `options.resume`,
        that the targets resolve to the hosts the interrupted run had and that
        `options.rerun_unfinished` names only actions it left unfinished). The log is signed
        with `options.signing_key`, else `$RUNBOOK_SIGNING_KEY`, if either is set (a key
        that cannot be read is InvalidInput, before the log is opened). Unattended unless
        `console`/`io` say otherwise: nothing is shown, and a confirmation that `options`
        does not answer (`yes`, `answers`) is declined. Returns once the log is closed.
        """
        from runbook.log.journal import JournalWriter
        from runbook.log.signing import load_signer
        from runbook.run.connections import check_targets
        from runbook.run.runner import Runner, RunOptions
        from runbook.run.secrets import Masker

        options = options or RunOptions()
        self.check_run(
            runbook,
            params,
            only=options.only,
            from_step=options.from_step,
            plan=plan,
            inventory=options.inventory,
        )
        console = console or SilentWatcher()
        targets = check_targets(runbook.targets, self.registry.transports(), options.inventory)
        masker = Masker(_secret_values(runbook, params))
        if options.resume is not None:  # the same hosts as before, and reruns it left open
            options.resume.check_run(masker.mask_value(targets), options.rerun_unfinished)
        elif options.rerun_unfinished:
            raise InvalidInput("--rerun-unfinished applies only with --resume LOG")
        extra = {
            **_targets_header(targets, options),
            **(options.resume.header() if options.resume else {}),
            **({"severity": options.severity} if options.severity else {}),
            **(header_extra or {}),
        }
        signer = load_signer(options.signing_key)
        run_id = os.urandom(6).hex()  # what uuid4().hex[:12] was, without importing uuid
        header = self._header(runbook, run_id, params, options, extra)
        journal = JournalWriter.create(
            self.log_dir, runbook.name, run_id, header, masker, signer=signer
        )
        console.record(journal.header_record)
        with journal:
            outcome = Runner(
                runbook, params, self.registry, journal, console, io or _NoTerminal(), options
            ).run()
        signed_by = signer.fingerprint if signer is not None else ""
        return RunResult(outcome, journal.path, journal.last_hash, signed_by)

    def _header(
        self,
        runbook: Runbook,
        run_id: str,
        params: Mapping[str, Any],
        options: RunOptions,
        extra: Mapping[str, Any],
    ) -> dict[str, Any]:
        """The first record of every incident log (DESIGN.md: Incident log)."""
        import platform
        from datetime import UTC, datetime

        from runbook import __version__
        from runbook.run.operator import os_identity

        data: dict[str, Any] = {
            "run_id": run_id,
            "runbook": {
                "name": runbook.name,
                "title": runbook.title,
                "severity": runbook.severity,
                "path": str(runbook.path),
                "sha256": runbook.sha256,
                "owners": list(runbook.owners),
                "tags": list(runbook.tags),
            },
            "params": _masked_params(runbook, params),
            "operator": options.operator,
            "identity": os_identity(options.operator_source),
            "host": platform.node(),  # socket.gethostname(), without importing socket
            "dry_run": options.dry_run,
            "started": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "versions": {
                "runbook": __version__,
                "python": platform.python_version(),
                "plugins": self.registry.versions(),
            },
            "argv": [Path(sys.argv[0]).name, *sys.argv[1:]],
        }
        data.update(extra)
        return data


def _masked_params(runbook: Runbook, values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: ("***" if runbook.params[k].secret and v is not None else v) for k, v in values.items()
    }


def _secret_values(runbook: Runbook, values: Mapping[str, Any]) -> list[str]:
    return [str(values[k]) for k in runbook.secret_params if values.get(k) not in (None, "")]


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


class _NoTerminal:
    """Operator I/O for unattended runs: nobody is there to answer."""

    interactive = False

    def ask(self, prompt: str, choices: tuple[str, ...] = ()) -> str:
        raise OperatorDeclined(f"'{prompt}' needs an answer but the run is unattended")
