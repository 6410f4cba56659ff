"""Building the frozen `Runbook` model from a marked tree that passed every check.

`runbook.load.loader` validates first and only then calls `build_runbook`, so
nothing here re-validates or reports problems: it turns YAML shapes (a string or
a mapping for `confirm`, an int or a mapping for `retries`, `goto <id>`) into the
model's typed fields and strips the line marks. The semantic pass builds a
`Param` with `build_param` to check a param spec's default and values against it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runbook.load.marked_yaml import unmarked
from runbook.load.model import Confirm, Param, RetryPolicy, Runbook, Step, StepKind, Target
from runbook.load.schema import parse_duration


def build_param(name: str, spec: Mapping[str, Any]) -> Param:
    """The `Param` that a well-typed `params.<name>` spec declares."""
    low, high = spec.get("min"), spec.get("max")
    return Param(
        name=name,
        type=spec.get("type", "string"),
        default=unmarked(spec.get("default")),
        required=bool(spec.get("required", False)),
        pattern=spec.get("pattern"),
        values=tuple(unmarked(spec.get("values", []))),
        minimum=None if low is None else float(low),
        maximum=None if high is None else float(high),
        secret=bool(spec.get("secret", False)),
        description=spec.get("description", ""),
        example=unmarked(spec.get("example")),
    )


# -- building the model -------------------------------------------------------------------
def build_runbook(tree: Mapping[str, Any], *, path: str = "", sha256: str = "") -> Runbook:
    """The frozen model of a tree that passed `check_tree` (not re-validated here)."""
    meta = tree["metadata"]
    return Runbook(
        name=meta["name"],
        title=meta["title"],
        severity=meta["severity"],
        steps=tuple(_build_step(step) for step in tree["steps"]),
        params={n: build_param(n, s) for n, s in tree.get("params", {}).items()},
        targets={n: _build_target(n, t) for n, t in tree.get("targets", {}).items()},
        owners=tuple(meta.get("owners", ())),
        tags=tuple(meta.get("tags", ())),
        description=meta.get("description", ""),
        deadline=_duration(tree.get("deadline")),
        path=path,
        sha256=sha256,
        api_version=tree["apiVersion"],
    )


def _build_target(name: str, spec: Mapping[str, Any]) -> Target:
    options = {k: unmarked(v) for k, v in spec.items() if k != "transport"}
    return Target(name=name, transport=spec.get("transport", "local"), options=options)


def _build_step(raw: Mapping[str, Any]) -> Step:
    kind: StepKind = "check" if "check" in raw else "action"
    on_failure, goto = _route(raw.get("on_failure", "abort"))
    on_error, error_goto = _route(raw["on_error"]) if "on_error" in raw else (None, None)
    return Step(
        id=raw["id"],
        phase=raw["phase"],
        kind=kind,
        **_call_fields(raw, kind),
        deadline=_duration(raw.get("deadline")),
        when=raw.get("when"),
        on_failure=on_failure,
        goto=goto,
        on_error=on_error,
        error_goto=error_goto,
        always=bool(raw.get("always", False)),
        confirm=_confirm(raw.get("confirm")),
        register=_register(raw.get("register")),
        concurrency=raw.get("concurrency"),
        serial=raw.get("serial"),
        min_passing=raw.get("min_passing"),
        mark=raw.get("mark"),
        verify=tuple(
            Step(
                id=f"{raw['id']}.verify-{n}",
                phase=raw["phase"],
                kind="check",
                **_call_fields(entry, "check"),
            )
            for n, entry in enumerate(raw.get("verify", ()), start=1)
        ),
    )


def _route(value: str) -> tuple[str, str | None]:
    """`continue`/`abort`, or `goto <id>` as ("goto", id)."""
    if value.startswith("goto "):
        return "goto", value[len("goto ") :].strip()
    return value, None


def _call_fields(raw: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """What a step and a `verify:` entry have in common."""
    ((executor, config),) = raw[kind].items()
    return {
        "executor": executor,
        "config": unmarked(config),
        "title": raw.get("title", ""),
        "expect": _expect(raw.get("expect")),
        "retries": _retries(raw.get("retries")),
        "timeout": _duration(raw.get("timeout")),
        "line": _line(raw),
    }


def _line(raw: Any) -> int:
    mark = getattr(raw, "mark", None)
    return mark.line if mark is not None else 0


def _expect(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _duration(value: Any) -> float | None:
    return None if value is None else parse_duration(value)


def _retries(value: Any) -> RetryPolicy:
    if value is None:
        return RetryPolicy()
    if isinstance(value, int):
        return RetryPolicy(attempts=value)
    defaults = RetryPolicy()
    return RetryPolicy(
        attempts=value["attempts"],
        delay=_duration(value.get("delay")) or defaults.delay,
        backoff=float(value.get("backoff", defaults.backoff)),
        max_delay=_duration(value.get("max_delay", defaults.max_delay)) or 0.0,
        on=tuple(value.get("on", defaults.on)),
    )


def _confirm(value: Any) -> Confirm | None:
    if value is None:
        return None
    if isinstance(value, str):
        return Confirm(prompt=value)
    return Confirm(prompt=value["prompt"], require=value.get("require"))


def _register(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, str):
        return {value: ""}  # the whole result
    return dict(value)
