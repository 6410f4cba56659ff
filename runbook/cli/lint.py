"""`runbook validate --strict`: what is valid but unwise in a runbook.

The schema says whether a runbook *can* run; these warnings say whether it
*should*: an action nobody explains before confirming, a change nobody
verifies, a check that judges nothing, a step that can hang, a shell string
where an argv would be safer, template placeholders copied from a Markdown
page that were never filled in (`[Title]`, `<service>`, `TODO`), a `when:`
that reads a value a step that may not run never produces (the condition is
then false), and resolve-phase checks that may all be skipped (the run then
cannot pass).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbook.contract import ExecutorSpec
from runbook.load.model import Runbook, Step

_PLACEHOLDER = re.compile(
    r"\[(?:[A-Z][A-Za-z #/_-]*|[A-Z_]{2,})\]|<(?:[a-z][a-z _-]*)>|\bTODO\b|\bFIXME\b|\bXXX\b"
)
# A prose key whose unquoted value runs into " #": the rest of the line is a comment.
_PROSE_WITH_HASH = re.compile(
    r"^\s*-?\s*(title|description|prompt|message|help|confirm):\s+[^\s\"'|>#{\[][^#]*\s#"
)
_QUOTED_TEMPLATE = re.compile(r"""(['"])\s*\{\{[^}]*\}\}\s*\1""")
# `steps.<id>[.<field>]` / `vars.<name>` as a `when:` reads them; `deeper` when more follows
_NAME = r"(?:\.(?P<dotted>[A-Za-z_][\w-]*)|\[\s*['\"](?P<quoted>[^'\"]+)['\"]\s*\])"
_FIELD = r"(?:\.(?P<field>[A-Za-z_]\w*)|\[\s*['\"](?P<qfield>[^'\"]+)['\"]\s*\])?"
_PASSED_OR = re.compile(r"\s*run\.status\s*!=\s*['\"]passed['\"]\s+or\b")
_MORE = r"(?P<deeper>(?:\.[A-Za-z_]\w*|\[[^\]]*\])*)"
_READ = re.compile(rf"(?<![\w.])(?P<root>steps|vars){_NAME}{_FIELD}{_MORE}")
# What `steps.<id>` has whether or not the step ran to a result (runbook.run.state)
_ALWAYS_THERE = frozenset(
    {"passed", "failed", "status", "output", "error", "elapsed", "attempts", "message", "json"}
)


@dataclass(frozen=True)
class Warning_:
    line: int
    step: str
    code: str
    message: str

    def render(self, path: str) -> str:
        where = f"steps.{self.step}: " if self.step else ""
        return f"{path}:{self.line}: warning[{self.code}]: {where}{self.message}"


def lint(runbook: Runbook, specs: Mapping[str, ExecutorSpec]) -> list[Warning_]:
    """Every warning for one loaded runbook, in file order."""
    found: list[Warning_] = []
    for step in runbook.steps:
        found.extend(_step_warnings(step, specs.get(step.executor)))
    found.extend(_when_warnings(runbook))
    found.extend(_resolve_warnings(runbook))
    found.extend(_cut_by_comment(runbook.path))
    return sorted(found, key=lambda w: (w.line, w.code))


def _cut_by_comment(path: str) -> Iterator[Warning_]:
    """`description: Post to #incidents` silently ends at ' #': YAML reads a comment."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return
    for number, line in enumerate(lines, start=1):
        match = _PROSE_WITH_HASH.match(line)
        if match:
            yield Warning_(
                number,
                "",
                "comment",
                f"the text of `{match.group(1)}:` ends at ' #' "
                "(YAML starts a comment there); quote the value",
            )


def _step_warnings(step: Step, spec: ExecutorSpec | None) -> Iterator[Warning_]:
    def warn(code: str, message: str) -> Warning_:
        return Warning_(step.line, step.id, code, message)

    gated = spec is None or spec.needs_confirmation
    if step.kind == "action" and gated and step.confirm is None:
        yield warn(
            "confirm",
            "action has no `confirm:` text; the operator only sees a generic "
            "question — say what will change and where",
        )
    if step.kind == "action" and gated and not step.verify:
        yield warn("verify", "action has no `verify:` check; nothing proves it worked")
    # An executor that only talks to people neither hangs on a host nor changes one.
    to_person = spec is not None and spec.talks_to_person
    if step.kind == "check" and not step.expect and not to_person:
        default = ", ".join(spec.default_expect) if spec and spec.default_expect else "none"
        yield warn("expect", f"check has no `expect:`; it is judged by the default ({default})")
    bounded = step.timeout is not None or step.deadline is not None or "timeout" in step.config
    if not to_person and not bounded:
        yield warn("timeout", "no `timeout:`; an attempt may run for the default 300s at 3 a.m.")
    for key in spec.shell_fields if spec else ():
        yield from _shell_warnings(step.config.get(key), warn)
    for text in _strings(step.config):
        for match in _PLACEHOLDER.finditer(text):
            yield warn("placeholder", f"placeholder {match.group(0)!r} is never filled in")


def _when_warnings(runbook: Runbook) -> Iterator[Warning_]:
    """A `when:` that reads a result field, or a registered var, of a step that may not
    have run to a result: at run time that value is undefined and the condition false."""
    flow = _Flow(runbook)
    for step in runbook.steps:
        if not step.when:
            continue
        seen: set[str] = set()
        for match in _READ.finditer(step.when):
            name = match.group("dotted") or match.group("quoted")
            field = match.group("field") or match.group("qfield")
            ref = match.group(0)
            if ref in seen:
                continue
            seen.add(ref)
            if match.group("root") == "vars":
                why = flow.var_risk(step, name)
            else:
                reads_result = field is not None and (
                    field not in _ALWAYS_THERE or (field == "json" and bool(match.group("deeper")))
                )
                guarded = reads_result and _guarded(step.when, name)
                why = None if guarded else flow.step_risk(step, name, reads_result)
            if not why:
                continue
            guard = match.group("root") == "steps" and why.startswith(f"step '{name}'")
            yield Warning_(
                step.line,
                step.id,
                "when",
                f"`when` reads `{ref}`, which is not there when {why}; the condition is then "
                "false and the step skipped (with a note in the log)"
                + (f"; guard it: `steps.{name}.passed and ...`" if guard else ""),
            )


def _guarded(when: str, step_id: str) -> bool:
    """`steps.x.passed and steps.x.answer == ...`: the answer is read only after a pass."""
    name = re.escape(step_id)
    passed = rf"steps(?:\.{name}|\[\s*['\"]{name}['\"]\s*\])\.passed\s+and\b"
    return re.search(passed, when) is not None


class _Flow:
    """Which steps may not have run (to a result) by the time another one starts."""

    def __init__(self, runbook: Runbook) -> None:
        self.steps = runbook.steps
        self.index = {s.id: i for i, s in enumerate(runbook.steps)}
        self.by_id = {s.id: s for s in runbook.steps}

    def step_risk(self, reader: Step, name: str, reads_result: bool) -> str | None:
        target = self.by_id.get(name)
        if target is None:
            return None  # not a step: the semantic checks report it
        jumped = self._jumped_over(target, reader)
        if jumped:
            return f"'{jumped}' jumps over step '{name}' (on_failure/on_error: goto)"
        # `run.status != 'passed' or ...`: the rest is read only when the run went to its end
        stopped = reader.always and not _PASSED_OR.match(reader.when or "")
        if stopped and not target.always:
            stopper = self._can_stop_before(target)
            if stopper:
                return (
                    f"the run stopped before step '{name}' ({stopper}): an always step runs "
                    "then too; start the condition with `run.status != 'passed' or`"
                )
        if not reads_result:
            return None
        if target.when:
            return f"step '{name}' was skipped by its own `when`"
        if target.route("error")[0] != "abort" or stopped:
            return f"step '{name}' could not run (status error)"
        return None

    def var_risk(self, reader: Step, var: str) -> str | None:
        setters = [s for s in self.steps if var in s.register]
        if not setters:
            return f"no step registers it (`register: {{{var}: ...}}`)"
        for setter in setters:
            why = self.step_risk(reader, setter.id, reads_result=True)
            if why:
                return why.replace(f"'{setter.id}'", f"'{setter.id}' (which registers it)", 1)
        return None

    def _jumped_over(self, target: Step, reader: Step) -> str | None:
        """A step whose goto may skip `target` on the way to `reader`."""
        if target.always:
            return None
        where = self.index[target.id]
        until = len(self.steps) if reader.always else self.index[reader.id]
        for step in self.steps[:where]:
            for route, to in (step.route("failed"), step.route("error")):
                if route == "goto" and to in self.index and where < self.index[to] <= until:
                    return step.id
        return None

    def _can_stop_before(self, target: Step) -> str | None:
        """A normal step before `target` whose failure or error ends the run."""
        for step in self.steps[: self.index[target.id]]:
            if not step.always and "abort" in (step.route("failed")[0], step.route("error")[0]):
                return f"'{step.id}' aborts on failure"
        return None


def _resolve_warnings(runbook: Runbook) -> Iterator[Warning_]:
    """Resolve-phase checks that may all be skipped: the run then cannot end passed."""
    checks = [s for s in runbook.steps if s.phase == "resolve" and s.kind == "check"]
    if not checks or any(not s.when for s in checks):
        return
    for step in checks:
        yield Warning_(
            step.line,
            step.id,
            "resolve",
            "every resolve-phase check has a `when:`; a run where none of them runs and "
            "passes ends `failed` (nothing shows the incident resolved): make one unconditional",
        )


def _shell_warnings(command: Any, warn: Any) -> Iterator[Warning_]:
    """Warnings for one shell-string config value (a key in the spec's `shell_fields`)."""
    if not isinstance(command, str):
        return
    if _QUOTED_TEMPLATE.search(command):
        yield warn(
            "quoting",
            "a `{{ ... }}` inside quotes in a shell string is quoted twice; "
            "remove the quotes (rendered values are already shell-quoted)",
        )
    if "{{" in command:
        yield warn(
            "shell",
            "shell string with rendered values; prefer `argv:` (one value, one argument, no shell)",
        )


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)
