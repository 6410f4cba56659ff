"""Runbook YAML -> validated, typed `Runbook`, or every problem with file:line:column.

Loading is three passes over one marked tree (see `marked_yaml`): the core JSON
Schema, each step's executor config against that executor's own schema, and
semantic checks a schema cannot express (unique ids, references to earlier
steps and declared params, goto targets, defaults that satisfy their own
param). All three always run, on whatever parts are well-formed, so a user
fixing a file sees every independent problem at once, sorted by line. Only a
clean tree is turned into the frozen model.

`validate` runs in pre-commit hooks, so nothing here imports Jinja or an SDK:
references are found by regular expressions (`runbook.load.refs`) and expressions
are compiled by `runbook.expr.expression`, which needs only the standard library.
"""

from __future__ import annotations

import gc
import hashlib
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runbook.contract import ExecutorSpec
from runbook.errors import InvalidRunbook
from runbook.load.build import build_runbook
from runbook.load.marked_yaml import MarkedDict, parse_yaml_bytes, read_yaml_file
from runbook.load.model import Runbook
from runbook.load.schema import (
    Check,
    Issue,
    PathT,
    core_check,
    core_validator,
    executor_schema,
    explain,
    fast_check_for,
    is_valid_fast,
    issue_at,
    unknown_executor_message,
    validator_for,
)
from runbook.load.semantics import iter_steps, semantic_issues

UnknownExecutorHint = Callable[[str], str]


def load_runbook(
    path: str | Path,
    executors: Mapping[str, ExecutorSpec],
    unknown_executor: UnknownExecutorHint | None = None,
) -> Runbook:
    """Load, validate and build the runbook at `path`.

    `executors` maps executor name -> ExecutorSpec; `unknown_executor(name)`,
    when given, explains a name no plugin provides (what is installed, which
    extra would provide it). Raises InvalidRunbook whose `errors` holds every
    problem as `path:line:column: json.path: message`, sorted by line.
    """
    name = os.fspath(path)
    with without_gc():
        tree, data = read_yaml_file(path, name)
        return _validated(tree, data, name, executors, unknown_executor)


def loads_runbook(
    text: str,
    executors: Mapping[str, ExecutorSpec],
    *,
    path: str = "<string>",
    unknown_executor: UnknownExecutorHint | None = None,
) -> Runbook:
    """`load_runbook` for YAML text already in memory; `path` is used in messages."""
    data = text.encode("utf-8")
    with without_gc():
        return _validated(parse_yaml_bytes(data, path), data, path, executors, unknown_executor)


@contextmanager
def without_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while a runbook is loaded.

    Loading builds a large tree of acyclic containers (marks, schema errors, the
    model) and drops nothing that needs the collector. With it running, every
    collection of the oldest generation walks the whole tree built so far, and a
    long runbook triggers enough of them to make loading superlinear (12k steps:
    ~3x slower). The file is at most 1 MiB, which bounds what is held meanwhile.
    The collector is restarted only if it was running (another thread or the
    caller may have paused it too).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _validated(
    tree: Any,
    data: bytes,
    name: str,
    executors: Mapping[str, ExecutorSpec],
    unknown_executor: UnknownExecutorHint | None,
) -> Runbook:
    issues = check_tree(tree, executors, unknown_executor)
    if issues:
        messages = [issue.render(name) for issue in issues]
        raise InvalidRunbook(messages[0], errors=messages)
    return build_runbook(tree, path=name, sha256=hashlib.sha256(data).hexdigest())


def check_tree(
    tree: Any,
    executors: Mapping[str, ExecutorSpec],
    unknown_executor: UnknownExecutorHint | None = None,
) -> list[Issue]:
    """Every problem in a marked tree: core schema, executor configs, semantics."""
    valid = is_valid_fast(core_check(), tree)  # most files: jsonschema only explains problems
    issues = [] if valid else explain(core_validator().iter_errors(tree), tree)
    issues += _executor_issues(tree, executors, unknown_executor)
    if isinstance(tree, MarkedDict):
        issues += semantic_issues(tree)
    return sorted(set(issues))


# -- executor configs ---------------------------------------------------------------------
def _executor_calls(tree: Any) -> Iterator[tuple[PathT, Any]]:
    """(path, call) of every `check:`/`action:`, including those under `verify:`."""
    for i, step in iter_steps(tree):
        for kind in ("check", "action"):
            if kind in step:
                yield ("steps", i, kind), step[kind]
        verify = step.get("verify")
        for j, entry in enumerate(verify if isinstance(verify, list) else []):
            if isinstance(entry, dict) and "check" in entry:
                yield ("steps", i, "verify", j, "check"), entry["check"]


def _executor_issues(
    tree: Any, executors: Mapping[str, ExecutorSpec], unknown_executor: UnknownExecutorHint | None
) -> list[Issue]:
    issues: list[Issue] = []
    # By executor name. Most configs pass the fast check, so jsonschema (slow to import and
    # to compile) is reached only by a config with a problem.
    checks: dict[str, tuple[dict[str, Any], Check | None]] = {}
    validators: dict[str, Any] = {}
    for path, call in _executor_calls(tree):
        if not (isinstance(call, dict) and len(call) == 1):
            continue  # the core schema already said what is wrong with its shape
        ((name, config),) = call.items()
        if name not in executors:
            explain_unknown = unknown_executor or (lambda n: unknown_executor_message(n, executors))
            issues.append(issue_at(tree, path + (name,), explain_unknown(name), key=True))
        elif isinstance(config, dict):
            if name not in checks:
                schema = executor_schema(name, executors)
                checks[name] = (schema, fast_check_for(schema))
            schema, fast = checks[name]
            if not is_valid_fast(fast, config):
                if name not in validators:
                    validators[name] = validator_for(schema)
                errors = validators[name].iter_errors(config)
                issues += explain(errors, tree, prefix=path + (name,))
    return issues
