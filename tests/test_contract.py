"""The plugin contract: one exported module, and the built-ins use nothing else.

`runbook.contract` is everything a plugin may import (types, helpers, errors,
`hookimpl`); `runbook` re-exports a short part of it, lazily. These tests pin
that surface, hold the built-in plugins and the hook specs to it by reading
their imports, keep the module graph free of cycles, and run a third-party
executor written only against the contract through the real CLI, capability
flags included, so "a third party can do what a built-in does" stays true.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import runbook_plugins
from support.cli import ROOT, RunCli
from support.helpers import logs_in, make_plugin_dist

import runbook
from runbook import contract
from runbook.errors import ExitCode, RunbookError
from runbook.log.journal import read_log

RUNBOOK_SURFACE = [
    "CommandOutcome",
    "Connection",
    "ExecContext",
    "ExecutorSpec",
    "Host",
    "PlanContext",
    "PlannedCall",
    "ReportFormat",
    "RunbookError",
    "StepEvent",
    "StepResult",
    "Target",
    "TransportError",
    "TransportSpec",
    "__version__",
    "hookimpl",
]

CONTRACT_SURFACE = [
    # hooks and executors
    "hookimpl",
    "ExecutorSpec",
    "PlannedCall",
    "PlanContext",
    "ExecContext",
    "StepResult",
    "OperatorIO",
    "Target",
    # commands on hosts
    "TransportSpec",
    "Connection",
    "CommandOutcome",
    "Host",
    "HostWork",
    "on_target",
    "run_command",
    # schemas and optional dependencies
    "prop",
    "TEMPLATE",
    "import_optional",
    "compile_pattern",
    # observers and reports
    "StepEvent",
    "RunEvent",
    "ReportFormat",
    "RecordType",
    "StepStatus",
    "builtin_report_formats",
    "update_cadence",
    "format_duration",
    # errors
    "RunbookError",
    "InvalidInput",
    "ExecutorError",
    "MissingExtra",
    "TransportError",
    "OperatorDeclined",
    "PatternError",
]

STAGES = ("load", "expr", "plan", "run", "log", "report", "testing")
PLUGIN_DOCS = ROOT / "docs" / "plugins.md"


# -- the public surface ---------------------------------------------------------------------
def test_runbook_exports_a_short_surface_taken_from_the_contract() -> None:
    assert sorted(runbook.__all__) == sorted(RUNBOOK_SURFACE)
    for name in runbook.__all__:
        if name != "__version__":
            assert getattr(runbook, name) is getattr(contract, name), name
    with pytest.raises(AttributeError):
        _ = runbook.PluginRegistry  # type: ignore[attr-defined]


def test_contract_surface_is_pinned() -> None:
    assert sorted(contract.__all__) == sorted(CONTRACT_SURFACE)
    namespace: dict[str, object] = {}
    exec("from runbook.contract import *", namespace)
    assert set(CONTRACT_SURFACE) <= set(namespace)


@pytest.mark.parametrize("name", CONTRACT_SURFACE)
def test_every_contract_name_is_documented(name: str) -> None:
    """In docs/plugins.md, and with a docstring of its own when it is a class or function."""
    assert f"`{name}`" in PLUGIN_DOCS.read_text(encoding="utf-8"), name
    obj = getattr(contract, name)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        assert (obj.__doc__ or "").strip(), f"{name} has no docstring"


def test_every_capability_flag_is_documented() -> None:
    docs = PLUGIN_DOCS.read_text(encoding="utf-8")
    for flag in ("needs_confirmation", "talks_to_person", "shows_output"):
        assert f"| `{flag}`" in docs, flag
        assert f"`{flag}`" in (contract.ExecutorSpec.__doc__ or ""), flag


def test_importing_runbook_imports_nothing_else() -> None:
    import subprocess
    import sys

    code = "import sys, runbook; print(sorted(m for m in sys.modules if m.startswith('runbook')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['runbook']"


# -- every exception is a RunbookError --------------------------------------------------------
def _our_modules() -> Iterator[str]:
    for package in (runbook, runbook_plugins):
        yield package.__name__
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not info.name.endswith("__main__"):
                yield info.name


def test_every_exception_raised_on_purpose_is_a_runbook_error() -> None:
    strays = []
    for name in _our_modules():
        module = importlib.import_module(name)
        for obj in vars(module).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == name
                and not issubclass(obj, RunbookError)
            ):
                strays.append(f"{name}.{obj.__qualname__}")
    assert strays == []


def test_exceptions_brought_under_the_tree_keep_their_exit_codes() -> None:
    from runbook_plugins.kubernetes.client import ClusterError

    from runbook.load.marked_yaml import YamlProblem
    from runbook.testing.pytest_plugin import RunbookCheckFailed

    assert contract.TransportError.exit_code == ExitCode.FAILED  # fails a host, not the input
    assert ClusterError.exit_code == ExitCode.FAILED
    assert YamlProblem.exit_code == ExitCode.INVALID  # always reported as InvalidRunbook
    assert RunbookCheckFailed.exit_code == ExitCode.FAILED


# -- who imports what ------------------------------------------------------------------------
def _imports(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, absolute module) of every import anywhere in the tree (functions included)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def _engine_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for line, module in _imports(tree)
        if (module == "runbook" or module.startswith("runbook."))
        and module not in ("runbook", "runbook.contract")
    ]


def test_plugins_import_only_the_public_contract() -> None:
    sources = [*sorted((ROOT / "plugins").rglob("*.py"))]
    sources += sorted((ROOT / "docs" / "examples" / "plugin").glob("*.py"))
    assert len(sources) > 10
    assert [hit for path in sources for hit in _engine_imports(path)] == []


def test_hookspecs_import_only_the_contract() -> None:
    tree = ast.parse((ROOT / "runbook" / "hookspecs.py").read_text(encoding="utf-8"))
    modules = {module for _, module in _imports(tree)} - {"__future__"}
    assert modules == {"runbook.contract"}


def _module_files() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package) for runbook and runbook_plugins (plugins/)."""
    found = {}
    for directory, package in (
        (ROOT / "runbook", "runbook"),
        (ROOT / "plugins", "runbook_plugins"),
    ):
        for path in sorted(directory.rglob("*.py")):
            parts = list(path.relative_to(directory).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            found[".".join([package, *parts])] = (path, is_package)
    return found


def _at_import_time(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: not in functions, not TYPE_CHECKING."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            test = node.test
            guarded = (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
            )
            if not guarded:
                yield from _at_import_time(node.body)
            yield from _at_import_time(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                yield from _at_import_time(block)
            for handler in node.handlers:
                yield from _at_import_time(handler.body)
        elif isinstance(node, ast.With | ast.ClassDef):
            yield from _at_import_time(node.body)


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of runbook/runbook_plugins it imports at import time."""
    known = _module_files()
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in known.items():
        package = name if is_package else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in _at_import_time(ast.parse(path.read_text(encoding="utf-8")).body):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join([*parts[: len(parts) - node.level + 1], *filter(None, [base])])
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                    for alias in node.names
                ]
            edges.update(t for t in targets if t in known and t != name)
        graph[name] = edges
    return graph


def _cycle_from(graph: dict[str, set[str]], start: str) -> list[str] | None:
    path: list[str] = []
    on_path: set[str] = set()
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        path.append(node)
        on_path.add(node)
        for nxt in sorted(graph[node]):
            if nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in done:
                found = visit(nxt)
                if found:
                    return found
        on_path.discard(path.pop())
        done.add(node)
        return None

    return visit(start)


def test_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    assert {"runbook.contract", "runbook.hookspecs", "runbook_plugins.shell"} <= set(graph)
    for module in sorted(graph):
        cycle = _cycle_from(graph, module)
        assert cycle is None, " -> ".join(cycle)


def test_no_stage_pulls_in_the_cli_at_import_time() -> None:
    graph = import_graph()

    def reachable(start: str) -> set[str]:
        seen: set[str] = set()
        todo = [start]
        while todo:
            for nxt in graph[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        return seen

    stages = [m for m in graph if any(m.startswith(f"runbook.{s}") for s in STAGES)]
    assert len(stages) > 20
    offenders = {
        stage: sorted(m for m in reachable(stage) if m.startswith("runbook.cli"))
        for stage in stages
    }
    assert {stage: cli for stage, cli in offenders.items() if cli} == {}


def test_the_graph_reader_sees_a_cycle_when_there_is_one() -> None:
    assert _cycle_from({"a": {"b"}, "b": {"c"}, "c": {"a"}}, "a") == ["a", "b", "c", "a"]
    assert _cycle_from({"a": {"b"}, "b": set()}, "a") is None


# -- a third party, written only against the contract ----------------------------------------
THIRD_PARTY = """
from runbook.contract import (
    ExecutorSpec, PlannedCall, StepResult, hookimpl, on_target, prop, run_command,
)

SAY = {
    "type": "object", "additionalProperties": False, "required": ["text"],
    "properties": {
        "text": prop("string", "What to tell the incident channel."),
        "times": prop("integer", "How often to say it.", minimum=1),
    },
}
ECHO = {
    "type": "object", "additionalProperties": False, "required": ["text"],
    "properties": {"text": prop("string", "Echoed by /bin/echo on the target.")},
}


def plan_say(config, ctx):
    return PlannedCall(summary=f"say {config['text']!r}", detail=dict(config))


def run_say(config, ctx):
    text = " ".join([config["text"]] * int(config.get("times", 1)))
    return StepResult(ok=True, fields={"said": text}, output=text)


def plan_echo(config, ctx):
    argv = ["echo", config["text"]]
    return PlannedCall(summary="$ " + " ".join(argv), detail={"argv": argv})


def run_echo(config, ctx):
    argv = ["echo", config["text"]]
    work = lambda conn, host: run_command(conn, argv, ctx, call={"argv": argv})
    return on_target(ctx, config.get("target"), work)


@hookimpl
def runbook_executors():
    return [
        ExecutorSpec(
            name="say", schema=SAY, plan=plan_say, run=run_say, description="tell people",
            needs_confirmation=not PERSON, talks_to_person=PERSON, shows_output=PERSON,
        ),
        ExecutorSpec(
            name="echo_here", schema=ECHO, plan=plan_echo, run=run_echo,
            default_expect=("exit_code == 0",), description="echo on the target's hosts",
        ),
    ]
"""

THIRD_PARTY_RUNBOOK = """
apiVersion: runbook/v1
kind: Runbook
metadata: {name: third-party, title: Third party, severity: P3, owners: [t@example.com]}
params:
  times: {type: int, default: 2}
steps:
  - id: hello
    phase: detect
    check: {echo_here: {text: "hello from a third party"}}
    expect: ["exit_code == 0", "'third party' in stdout"]
    timeout: 5
  - id: tell
    phase: mitigate
    action: {say: {text: "all clear", times: "{{ params.times }}"}}
"""


def _third_party(tmp_path: Path, *, person: bool) -> dict[str, str]:
    source = THIRD_PARTY.replace("PERSON", repr(person))
    assert "runbook." not in source.replace("runbook.contract", "")  # the contract, only
    site = make_plugin_dist(tmp_path / "site", "runbook-say", "runbook_say", source)
    return {"PYTHONPATH": str(site)}


def test_third_party_executor_gets_the_built_ins_treatment(
    run_cli: RunCli, write_runbook, tmp_path: Path
) -> None:
    env = _third_party(tmp_path, person=True)
    path = str(write_runbook(THIRD_PARTY_RUNBOOK))

    listed = run_cli("plugins", env=env)
    assert listed.code == 0, listed.text
    assert any(li.startswith("say ") and "runbook-say" in li for li in listed.out.splitlines())
    strict = run_cli("validate", "--strict", path, env=env)  # talks_to_person: no timeout asked
    assert strict.code == 0, strict.text
    plan = run_cli("plan", path, env=env)
    assert plan.code == 0, plan.text
    assert "say 'all clear'" in plan.out and "$ echo hello from a third party" in plan.out

    result = run_cli("run", path, env=env)  # needs_confirmation=False: nothing to confirm
    assert result.code == 0, result.text
    assert "all clear all clear" in result.out  # shows_output: the message is on the console
    records = read_log(logs_in(tmp_path / "logs")[0])
    results = {r["data"]["step"]: r["data"] for r in records if r["type"] == "step.result"}
    assert results["tell"]["ok"] and results["tell"]["fields"]["said"] == "all clear all clear"
    assert results["hello"]["fields"]["stdout"] == "hello from a third party\n"
    shown = [r["data"]["text"] for r in records if r["type"] == "step.output"]
    assert shown == ["all clear all clear"]
    assert "runbook-say 1.0" in json.dumps(records[0]["data"])
    assert records[-1]["type"] == "run.finished" and records[-1]["data"]["status"] == "passed"


def test_without_the_flags_the_same_executor_is_treated_like_any_other(
    run_cli: RunCli, write_runbook, tmp_path: Path
) -> None:
    env = _third_party(tmp_path, person=False)
    path = str(write_runbook(THIRD_PARTY_RUNBOOK))

    strict = run_cli("validate", "--strict", path, env=env)
    assert strict.code != 0
    assert "warning[timeout]" in strict.text and "warning[confirm]" in strict.text
    result = run_cli("run", path, "--yes", env=env)
    assert result.code == 0, result.text
    records = read_log(logs_in(tmp_path / "logs")[0])
    assert not [r for r in records if r["type"] == "step.output"]
    assert "all clear all clear" not in result.out
