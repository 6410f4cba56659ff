"""`pytest runbooks/`: every runbook validated, dry-run planned and scenario-tested in CI.

Registered through the `pytest11` entry point, so installing runbook-as-code
with pytest is all a repository of runbooks needs. Each runbook YAML becomes
items `validate` (schema and semantics, with the real executor plugins),
`plan` (the full dry-run plan with the runbook's declared example params) and
one `scenario[NAME]` per scenario in `scenarios/<runbook>.yaml`. A failure is
printed as `file:line:column: message`, the way `runbook validate` prints
it, never as a traceback into our code: a runbook author needs the line to
fix, not our stack. The `runbook_scenario` fixture gives Python tests the same
scenario engine. Everything heavy is imported lazily: this module is loaded by
every pytest run in an environment where the package is installed.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from runbook.errors import RunbookError

if TYPE_CHECKING:
    from runbook.load.model import Runbook
    from runbook.registry import PluginRegistry
    from runbook.session import Session
    from runbook.testing.scenario import Scenario
    from runbook.testing.scenario_file import ScenarioCase

RUNBOOK_SUFFIXES = (".yaml", ".yml")
RUNBOOK_DIR = "runbooks"
SCENARIO_DIR = "scenarios"
_SESSION = pytest.StashKey["Session"]()


class RunbookCheckFailed(RunbookError):
    """A runbook item failed; the message is already `file:line:column: ...` lines."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "runbook_dirs",
        "directory names whose YAML files are collected as runbooks (default: runbooks)",
        type="linelist",
        default=[RUNBOOK_DIR],
    )


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Collect runbook YAML under a `runbooks/` directory (or named on the command line)."""
    if file_path.suffix not in RUNBOOK_SUFFIXES:
        return None
    dirs = set(parent.config.getini("runbook_dirs"))
    if file_path.parent.name == SCENARIO_DIR and file_path.parent.parent.name in dirs:
        if _runbook_of(file_path) is None:
            return OrphanScenarios.from_parent(parent, path=file_path)
        return None  # collected with its runbook
    if file_path.parent.name in dirs or parent.session.isinitpath(file_path):
        return RunbookFile.from_parent(parent, path=file_path)
    return None


def _runbook_of(scenario_path: Path) -> Path | None:
    for suffix in RUNBOOK_SUFFIXES:
        candidate = scenario_path.parent.parent / (scenario_path.stem + suffix)
        if candidate.is_file():
            return candidate
    return None


def _session(config: pytest.Config) -> Session:
    """The front door with the real plugins, loaded once per pytest run."""
    if _SESSION not in config.stash:
        from runbook.session import Session

        config.stash[_SESSION] = Session()
    return config.stash[_SESSION]


def _shown(config: pytest.Config, path: Path) -> str:
    """The path as the user would type it: relative to where pytest was started."""
    try:
        return str(path.relative_to(config.invocation_params.dir))
    except ValueError:
        return str(path)


class RunbookFile(pytest.File):
    """One runbook: validate, plan, and its scenarios when it has a scenario file."""

    runbook: Runbook | None = None
    load_errors: list[str] = []

    def collect(self) -> Iterator[pytest.Item]:
        self._load()
        yield RunbookItem.from_parent(self, name="validate", check=_validate)
        if self.runbook is None:
            return
        yield RunbookItem.from_parent(self, name="plan", check=_plan)
        yield from self._scenarios()

    def _load(self) -> None:
        from runbook.errors import InvalidRunbook, RunbookError

        name = _shown(self.config, self.path)
        try:
            self.runbook = _session(self.config).load_file(name)
        except InvalidRunbook as exc:
            self.load_errors = list(exc.errors)
        except RunbookError as exc:
            self.load_errors = [f"{name}:1:1: {exc}"]

    def _scenarios(self) -> Iterator[pytest.Item]:
        from runbook.testing.scenario import all_steps
        from runbook.testing.scenario_file import (
            InvalidScenarioFile,
            load_scenarios,
            scenario_file_for,
        )

        assert self.runbook is not None
        path = scenario_file_for(self.path)
        if path is None:
            return
        name = _shown(self.config, path)
        try:
            cases = load_scenarios(path, name, list(all_steps(self.runbook)))
        except InvalidScenarioFile as exc:
            errors = exc.errors
            yield RunbookItem.from_parent(self, name="scenarios", check=lambda _: errors)
            return
        for case in cases:
            yield ScenarioItem.from_parent(
                self, name=f"scenario[{case.name}]", case=case, file_name=name
            )


class RunbookItem(pytest.Item):
    """A check of one runbook; `check(file)` returns the located problems (none: pass)."""

    def __init__(self, *, check: Callable[[Any], list[str]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check = check

    def runtest(self) -> None:
        problems = self.check(self.parent)
        if problems:
            raise RunbookCheckFailed("\n".join(problems))

    def repr_failure(
        self,
        excinfo: pytest.ExceptionInfo[BaseException],
        style: Any = None,
    ) -> str | Any:
        if isinstance(excinfo.value, RunbookCheckFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, self.name


def _validate(file: RunbookFile) -> list[str]:
    return file.load_errors


def _plan(file: RunbookFile) -> list[str]:
    """Plan every step with the declared example params; problems point at their line."""
    from runbook.errors import RunbookError
    from runbook.load.params import example_params

    runbook, name, session = file.runbook, _shown(file.config, file.path), _session(file.config)
    assert runbook is not None
    missing = [
        f"{name}:{_param_line(file.path, p)}: required param '{p}' has no `example:`; "
        "add one so `pytest runbooks/` can plan the runbook"
        for p, param in runbook.params.items()
        if param.required and param.default is None and param.example is None
    ]
    if missing:
        return missing
    try:
        params = session.params(runbook, example_params(runbook), environ={})
    except RunbookError as exc:
        return [f"{name}:{_param_line(file.path, None)}: example params: {exc}"]
    return _plan_steps(session, runbook, params, name)


def _plan_steps(session: Session, runbook: Runbook, params: dict[str, Any], name: str) -> list[str]:
    from runbook.errors import RunbookError

    try:
        session.plan(runbook, params).to_json()
    except RunbookError as exc:
        step = _failing_step(runbook, params, session.executors)
        line = step.line if step is not None else 1
        where = f"step '{step.id}': " if step is not None else ""
        return [f"{name}:{line}: {where}cannot plan: {exc}"]
    return []


def _failing_step(runbook: Runbook, params: dict[str, Any], executors: Any) -> Any:
    """The first step whose plan raises, so the failure names its line."""
    from runbook.expr.values import UNKNOWN
    from runbook.plan.planner import PLAN_RUN, plan_entry

    steps = {s.id: UNKNOWN for s in runbook.steps}
    namespace = {"params": params, "steps": steps, "vars": UNKNOWN, "run": PLAN_RUN}
    for step in runbook.steps:
        try:
            plan_entry(step, executors, namespace, runbook)
        except Exception:
            return step
    return None


def _param_line(path: Path, param: str | None) -> str:
    from runbook.load.marked_yaml import locate, read_yaml_file

    tree, _ = read_yaml_file(path)
    line, column = locate(tree, ("params", param) if param else ("params",), key=True)
    return f"{line}:{column}"


class ScenarioItem(pytest.Item):
    """One scenario from `scenarios/<runbook>.yaml`, run against stubbed executors."""

    def __init__(self, *, case: ScenarioCase, file_name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.file_name = file_name

    def runtest(self) -> None:
        from runbook.errors import RunbookError
        from runbook.testing.scenario import Scenario
        from runbook.testing.scenario_file import check_expectations

        parent = self.parent
        assert isinstance(parent, RunbookFile) and parent.runbook is not None
        log_dir = _scenario_log_dir(self.config)
        executors = _session(self.config).executors
        where = f"{self.file_name}:{self.case.line}: scenario '{self.case.name}'"
        try:
            result = self.case.run(Scenario(parent.runbook, executors, log_dir))
        except RunbookError as exc:
            raise RunbookCheckFailed(f"{where}: {exc}") from None
        problems = check_expectations(self.case, result, self.file_name)
        if problems:
            raise RunbookCheckFailed("\n".join([*problems, f"{where}: {result.describe()}"]))
        shutil.rmtree(log_dir, ignore_errors=True)  # kept when failing, for a look

    repr_failure = RunbookItem.repr_failure

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, self.case.line - 1, self.name


def _scenario_log_dir(config: pytest.Config) -> Path:
    """A fresh directory under pytest's basetemp (pruned by pytest), else a temp dir."""
    factory = getattr(config, "_tmp_path_factory", None)  # absent with -p no:tmpdir
    if isinstance(factory, pytest.TempPathFactory):
        return factory.mktemp("runbook-scenario")
    return Path(tempfile.mkdtemp(prefix="runbook-scenario-"))


class OrphanScenarios(pytest.File):
    """A scenario file whose runbook does not exist: an error, not silence."""

    def collect(self) -> Iterator[pytest.Item]:
        name = _shown(self.config, self.path)
        message = f"{name}:1:1: no runbook '{self.path.stem}' next to this scenarios/ directory"
        yield RunbookItem.from_parent(self, name="scenarios", check=lambda _: [message])


@pytest.fixture(scope="session")
def runbook_registry(pytestconfig: pytest.Config) -> PluginRegistry:
    """The real executor plugins (entry points), loaded once per session."""
    return _session(pytestconfig).registry


@pytest.fixture(scope="session")
def runbook_session(pytestconfig: pytest.Config) -> Session:
    """The `runbook.session.Session` the plugin itself uses: real plugins, loaded once."""
    return _session(pytestconfig)


@pytest.fixture
def runbook_scenario(tmp_path: Path, runbook_session: Session) -> Callable[[str | Path], Scenario]:
    """`runbook_scenario("service-outage")` -> a Scenario to stub and run (see docs/testing.md).

    The runbook is loaded by NAME or PATH and validated by the real plugins;
    incident logs go to this test's `tmp_path` and are verified after each run.
    """
    from runbook.testing.scenario import Scenario

    def make(name_or_path: str | Path) -> Scenario:
        return Scenario.load(name_or_path, tmp_path / "incident-logs", runbook_session)

    return make
