"""`runbook validate --strict`: what is valid but unwise in a runbook.

The schema says whether a runbook *can* run; these warnings say whether it
*should*: an action nobody explains before confirming, a change nobody
verifies, a check that judges nothing, a step that can hang, a shell string
where an argv would be safer, and template placeholders copied from a Markdown
page that were never filled in (`[Title]`, `<service>`, `TODO`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbook.contract import ExecutorSpec
from runbook.load.model import Runbook, Step

# Executors that only talk to people; they neither hang on a host nor change one.
_HUMAN = frozenset({"manual", "notify"})
_PLACEHOLDER = re.compile(
    r"\[(?:[A-Z][A-Za-z #/_-]*|[A-Z_]{2,})\]|<(?:[a-z][a-z _-]*)>|\bTODO\b|\bFIXME\b|\bXXX\b"
)
# A prose key whose unquoted value runs into " #": the rest of the line is a comment.
_PROSE_WITH_HASH = re.compile(
    r"^\s*-?\s*(title|description|prompt|message|help|confirm):\s+[^\s\"'|>#{\[][^#]*\s#"
)
_QUOTED_TEMPLATE = re.compile(r"""(['"])\s*\{\{[^}]*\}\}\s*\1""")


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
    if step.kind == "check" and not step.expect and step.executor not in _HUMAN:
        default = ", ".join(spec.default_expect) if spec and spec.default_expect else "none"
        yield warn("expect", f"check has no `expect:`; it is judged by the default ({default})")
    bounded = step.timeout is not None or step.deadline is not None or "timeout" in step.config
    if step.executor not in _HUMAN and not bounded:
        yield warn("timeout", "no `timeout:`; an attempt may run for the default 300s at 3 a.m.")
    yield from _shell_warnings(step, warn)
    for text in _strings(step.config):
        for match in _PLACEHOLDER.finditer(text):
            yield warn("placeholder", f"placeholder {match.group(0)!r} is never filled in")


def _shell_warnings(step: Step, warn: Any) -> Iterator[Warning_]:
    command = step.config.get("command") if step.executor == "shell" else None
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
