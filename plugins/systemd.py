"""The `systemd` executor: status, is-active, is-enabled and start/stop/restart/reload of units.

Written once on top of a transport, so a unit is checked the same way on this
machine, on one host over SSH, or across a fleet. Every operation ends with
`systemctl show -p ...` (parsed, because not every systemctl has `show
--value`), so `expect: ["active_state == 'active'"]` reads the unit's state
after the operation, whatever it was. The verdict of a read (`healthy`) is
computed here from each unit's ActiveState (or UnitFileState), never taken from
systemctl's exit code: with several units `systemctl is-active` exits 0 when
*any* is active, `systemctl status` only when *all* are, and compatible tools
differ again. Which of the two a step wants is `require: all` (the default) or
`require: any`. Mutating operations are actions; their plan is the exact argv,
`sudo -n` included, which never waits for a password.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from runbook.contract import (
    ExecContext,
    ExecutorSpec,
    PlanContext,
    PlannedCall,
    StepResult,
    hookimpl,
    on_target,
    run_command,
)

from .unit_commands import ONE_OR_MORE_STRINGS, planned_command

READ_OPS = ("status", "is_active", "is_enabled")
WRITE_OPS = ("start", "stop", "restart", "reload")
OPS = READ_OPS + WRITE_OPS
PROPERTIES = "Id,LoadState,ActiveState,SubState,MainPID,ActiveEnterTimestamp,UnitFileState"
UNIT_NAME = re.compile(r"^[A-Za-z0-9@_][A-Za-z0-9@:._\\-]*$")

UP_STATES = frozenset({"active", "reloading", "refreshing"})
"""ActiveStates in which a unit is up: those `systemctl is-active` answers 0 for
(systemctl-is-active.c). activating, deactivating, inactive, failed and
maintenance are not up; a service waiting to be restarted after a crash is
`activating`. The table with what each state means is in docs/peers.md."""

ENABLED_STATES = frozenset(
    {"enabled", "enabled-runtime", "alias", "static", "indirect", "generated", "transient"}
)
"""UnitFileStates `systemctl is-enabled` answers 0 for (systemctl(1), "is-enabled
output"); linked, linked-runtime, masked, masked-runtime, disabled and bad are not."""

REQUIRE = ("all", "any")

SCHEMA: Mapping[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "systemd",
    "description": "One operation on one or more systemd units, e.g. `{restart: fastapi}` or "
    "`{status: [fastapi, nginx]}`, here or on a target's hosts.",
    "type": "object",
    "properties": {
        **{
            op: {**ONE_OR_MORE_STRINGS, "description": f"Unit(s) to {op.replace('_', '-')}."}
            for op in OPS
        },
        "require": {
            "enum": list(REQUIRE),
            "default": "all",
            "description": "With several units, whether `healthy` (the default expectation) "
            "needs every unit up (`all`, as `systemctl status` judges) or at least one "
            "(`any`, as the exit code of `systemctl is-active`/`is-enabled` does). Up: "
            "ActiveState active, reloading or refreshing; for `is_enabled`, an enabled "
            "UnitFileState. Only for status, is_active and is_enabled. Default: `all`.",
        },
        "target": {"type": "string", "minLength": 1, "description": "Target to run on."},
        "sudo": {
            "type": "boolean",
            "default": False,
            "description": "Run mutating operations with `sudo -n` (fails at once, never "
            "prompts, when a password would be needed).",
        },
        "systemctl": {
            "type": "string",
            "minLength": 1,
            "default": "systemctl",
            "description": "The systemctl program on the host (a path, or a compatible tool).",
        },
    },
    "oneOf": [{"required": [op]} for op in OPS],
    "if": {"required": ["require"]},
    "then": {
        "anyOf": [{"required": [op]} for op in READ_OPS],
        "errorMessage": "`require` judges reads: use it with status, is_active or "
        "is_enabled, not with start/stop/restart/reload",
    },
    "additionalProperties": False,
}

RESULT_FIELDS: Mapping[str, str] = {
    "healthy": "the verdict (the default expectation): for status and is_active, every unit "
    "up (ActiveState active, reloading or refreshing) or, with `require: any`, at least one; "
    "for is_enabled the same over enabled UnitFileStates; for start/stop/restart/reload, "
    "systemctl exited 0",
    "active_state": "ActiveState of the unit (of the first one failing the operation's test "
    "when several, else the first)",
    "sub_state": "SubState (running, dead, exited, reload, auto-restart, ...)",
    "main_pid": "MainPID as an int (0 when none)",
    "since": "ActiveEnterTimestamp as systemctl printed it (None if unknown)",
    "load_state": "LoadState (loaded, masked, ...; a not-found unit is an error)",
    "unit_file_state": "UnitFileState (enabled, disabled, static, masked, ...)",
    "all_active": "whether every unit is up (active, reloading or refreshing)",
    "any_active": "whether at least one unit is up (the rule of systemctl is-active's exit code)",
    "units": "per unit: the same fields plus `up` and `enabled` (booleans), keyed by unit name",
    "exit_code": "exit status of the operation's systemctl command, as that systemctl chose it "
    "(not the verdict: see healthy)",
    "stdout": "its standard output (status text for `status`)",
    "stderr": "its standard error",
}


def _operation(config: Mapping[str, Any]) -> tuple[str, list[str]]:
    op = next(o for o in OPS if o in config)
    units = config[op]
    return op, [units] if isinstance(units, str) else [str(u) for u in units]


def op_argv(config: Mapping[str, Any]) -> list[str]:
    """The operation's exact argv (what the plan shows and the host runs)."""
    op, units = _operation(config)
    program = str(config.get("systemctl", "systemctl"))
    verb = op.replace("_", "-")
    argv = [program, verb, *(["--no-pager"] if op == "status" else []), *units]
    if config.get("sudo") and op in WRITE_OPS:
        argv = ["sudo", "-n", "--", *argv]
    return argv


def show_argv(config: Mapping[str, Any]) -> list[str]:
    _op, units = _operation(config)
    return [str(config.get("systemctl", "systemctl")), "show", "-p", PROPERTIES, *units]


def read_only(config: Mapping[str, Any]) -> bool:
    return _operation(config)[0] in READ_OPS


def plan(config: Mapping[str, Any], ctx: PlanContext) -> PlannedCall:
    extra = {"require": config["require"]} if "require" in config else {}
    return planned_command(op_argv(config), config, then=show_argv(config), **extra)


def parse_show(text: str) -> list[dict[str, Any]]:
    """`systemctl show -p` output: one blank-line separated block of Key=Value per unit."""
    blocks: list[dict[str, Any]] = []
    current: dict[str, str] = {}
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if current:
                blocks.append(_unit_fields(current))
            current = {}
            continue
        key, _, value = line.partition("=")
        current[key.strip()] = value.strip()
    return blocks


def _unit_fields(props: Mapping[str, str]) -> dict[str, Any]:
    pid = props.get("MainPID", "")
    active_state = props.get("ActiveState", "unknown")
    unit_file_state = props.get("UnitFileState", "")
    return {
        "id": props.get("Id", ""),
        "active_state": active_state,
        "sub_state": props.get("SubState", ""),
        "main_pid": int(pid) if pid.isdigit() else 0,
        "since": props.get("ActiveEnterTimestamp") or None,
        "load_state": props.get("LoadState", ""),
        "unit_file_state": unit_file_state,
        "up": active_state in UP_STATES,
        "enabled": unit_file_state in ENABLED_STATES,
    }


def verdict(op: str, units: Mapping[str, Mapping[str, Any]], require: str, exit_code: int) -> bool:
    """`healthy`: the units' own states judged by `require`, or a write's exit status."""
    if op in WRITE_OPS:
        return exit_code == 0
    key = "enabled" if op == "is_enabled" else "up"
    judge = any if require == "any" else all
    return judge(bool(u[key]) for u in units.values())


def _host_result(config: Mapping[str, Any], ctx: ExecContext, conn: Any) -> StepResult:
    call = plan(config, ctx_plan(ctx)).detail
    op_result = run_command(conn, op_argv(config), ctx, call=call, program_required=True)
    if not op_result.ok:
        return op_result
    shown = run_command(conn, show_argv(config), ctx, call=call, program_required=True)
    if not shown.ok:
        return shown
    op, names = _operation(config)
    where = f" on {conn.host.name}" if conn.host.name != "localhost" else ""
    if shown.fields.get("exit_code") and not str(shown.fields.get("stdout", "")).strip():
        # `systemctl show` printed nothing and failed: systemd itself is not reachable
        # (e.g. "System has not been booted with systemd as init system"), not a unit.
        reason = str(shown.fields.get("stderr", "")).strip().splitlines() or ["no output"]
        return StepResult.failure(f"systemctl failed{where}: {reason[0]}", call=call)
    units = dict(zip(names, parse_show(str(shown.fields["stdout"])), strict=False))
    missing = [n for n, u in units.items() if u["load_state"] == "not-found"]
    if missing or len(units) < len(set(names)):
        gone = missing or names[len(units) :]
        return StepResult.failure(f"unit not found{where}: {', '.join(gone)}", call=call)
    test = "enabled" if op == "is_enabled" else "up"
    worst = next((u for u in units.values() if not u[test]), None)
    head = worst or next(iter(units.values()))
    exit_code = int(op_result.fields.get("exit_code", 0))
    require = str(config.get("require", "all"))
    fields = {
        **dict(op_result.fields),
        **{k: v for k, v in head.items() if k not in ("id", "up", "enabled")},
        "healthy": verdict(op, units, require, exit_code),
        "all_active": all(u["up"] for u in units.values()),
        "any_active": any(u["up"] for u in units.values()),
        "units": units,
    }
    return StepResult(ok=True, fields=fields, output=op_result.output, call=call)


def ctx_plan(ctx: ExecContext) -> PlanContext:
    return PlanContext(ctx.step_id, ctx.target)


def run(config: Mapping[str, Any], ctx: ExecContext) -> StepResult:
    """Run the operation (and the `show` after it) on every host of the target."""
    bad = [u for u in _operation(config)[1] if not UNIT_NAME.match(u)]
    if bad:  # a rendered value must never become an option or a second unit list
        return StepResult.failure(f"invalid unit name {bad[0]!r}: expected e.g. 'nginx.service'")
    return on_target(ctx, config.get("target"), lambda conn, host: _host_result(config, ctx, conn))


def side_effect_free(config: Mapping[str, Any]) -> bool:
    """`status`, `is_active`, `is_enabled`: the host's own `systemctl` with a fixed verb
    and checked unit names, which only reads. Not start/stop/restart/reload, and not a
    step that names another `systemctl` program (that could be any program)."""
    return read_only(config) and config.get("systemctl", "systemctl") == "systemctl"


SPEC = ExecutorSpec(
    name="systemd",
    schema=SCHEMA,
    plan=plan,
    run=run,
    read_only=False,
    read_only_when=read_only,
    side_effect_free_when=side_effect_free,
    default_expect=("healthy",),
    description="Status, is-active, is-enabled, start/stop/restart/reload of systemd units, "
    "here or over a target's transport; fields parsed from `systemctl show -p`, the verdict "
    "computed from each unit's state (`require: all` or `any`), not from systemctl's exit code.",
    result_fields=RESULT_FIELDS,
)


@hookimpl
def runbook_executors() -> list[ExecutorSpec]:
    """The systemd executor."""
    return [SPEC]
