"""Turn `-p key=value` strings into typed, validated parameter values.

Everything is checked before any step runs: an unknown key, a missing required
value, a wrong type, a value outside `values`/`pattern`/`min`/`max` is an exit-2
error naming the parameter and what is allowed. A `pattern` must match the whole
value (`matches_whole`). Secret params may come from `RUNBOOK_PARAM_<NAME>` so
they never appear in `ps` or shell history.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

from runbook.errors import ParamError
from runbook.load.model import Param, Runbook

_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}


def parse_assignments(pairs: Iterable[str]) -> dict[str, str]:
    """`["a=1", "b=x=y"]` -> `{"a": "1", "b": "x=y"}`; a pair without `=` is an error."""
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ParamError(f"-p {pair!r}: expected KEY=VALUE")
        values[key.strip()] = value
    return values


def coerce(param: Param, raw: Any) -> Any:
    """Convert a raw value (string from the CLI, or a YAML default) to the param's type."""
    kind = param.type
    try:
        if kind == "int":
            if isinstance(raw, bool):
                raise ValueError
            return int(raw) if not isinstance(raw, str) else int(raw.strip(), 10)
        if kind == "number":
            if isinstance(raw, bool):
                raise ValueError
            number = float(raw)
            if not math.isfinite(number):  # "inf", "nan", "1e999": nothing to compare with
                raise ValueError
            return number
        if kind == "bool":
            return _coerce_bool(raw)
    except (ValueError, OverflowError):
        raise ParamError(
            f"param '{param.name}': {_show(param, raw)} is not a valid {kind}"
        ) from None
    if kind == "enum" and not isinstance(raw, str):
        return raw
    return raw if isinstance(raw, str) else str(raw)


def _coerce_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(raw)


def _show(param: Param, value: Any) -> str:
    return "***" if param.secret else repr(value)


def matches_whole(param: Param, value: str) -> bool:
    """Whether `value` matches the param's `pattern` from its first character to its last.

    Full-match, not search: `^[a-z]+$` searched would accept "api\n", because `$`
    also matches before a final newline. The pattern runs on RE2 (linear time).
    """
    from runbook.expr.patterns import compile_pattern

    return param.pattern is None or compile_pattern(param.pattern).fullmatch(value)


def check(param: Param, value: Any) -> None:
    """Raise ParamError when `value` breaks the param's values/pattern/min/max,
    or is a secret too short to be masked."""
    if param.secret and value is not None:
        from runbook.run.secrets import check_secret_length

        check_secret_length(str(value), param.name)
    if param.type == "enum" and value not in param.values:
        allowed = ", ".join(str(v) for v in param.values)
        hint = difflib.get_close_matches(str(value), [str(v) for v in param.values], n=1)
        extra = f"; did you mean '{hint[0]}'?" if hint else ""
        raise ParamError(
            f"param '{param.name}': {_show(param, value)} is not one of: {allowed}{extra}"
        )
    if param.pattern is not None and isinstance(value, str) and not matches_whole(param, value):
        raise ParamError(
            f"param '{param.name}': {_show(param, value)} does not match pattern "
            f"{param.pattern!r} (the whole value must match)"
        )
    if isinstance(value, int | float) and not isinstance(value, bool):
        if param.minimum is not None and value < param.minimum:
            raise ParamError(
                f"param '{param.name}': {value} is below the minimum {param.minimum:g}"
            )
        if param.maximum is not None and value > param.maximum:
            raise ParamError(
                f"param '{param.name}': {value} is above the maximum {param.maximum:g}"
            )


def resolve_params(
    runbook: Runbook,
    given: Mapping[str, str],
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Typed values for every declared param: given, else env (secrets), else default."""
    env = os.environ if environ is None else environ
    declared = runbook.params
    unknown = [k for k in given if k not in declared]
    if unknown:
        raise ParamError(_unknown_message(runbook, unknown[0]))
    values: dict[str, Any] = {}
    missing: list[str] = []
    for name, param in declared.items():
        if name in given:
            raw: Any = given[name]
        elif param.secret and param.env_var in env:
            raw = env[param.env_var]
        elif param.default is not None:
            raw = param.default
        elif param.required:
            missing.append(name)
            continue
        else:
            values[name] = None
            continue
        value = coerce(param, raw)
        check(param, value)
        values[name] = value
    if missing:
        raise ParamError(_missing_message(runbook, missing))
    return values


def _unknown_message(runbook: Runbook, key: str) -> str:
    names = sorted(runbook.params)
    close = difflib.get_close_matches(key, names, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    accepted = ", ".join(names) if names else "none"
    return f"unknown param '{key}' for runbook '{runbook.name}'{hint} (accepted: {accepted})"


def _missing_message(runbook: Runbook, missing: list[str]) -> str:
    parts = []
    for name in missing:
        param = runbook.params[name]
        how = f"-p {name}=..."
        if param.secret:
            how += f" or {param.env_var}"
        if param.example is not None:
            how += f" (e.g. {param.example})"
        parts.append(f"'{name}' ({how})")
    return f"runbook '{runbook.name}' needs required param(s): " + ", ".join(parts)


def example_params(runbook: Runbook) -> dict[str, str]:
    """Required params filled from their declared `example`, for CI dry-runs."""
    return {
        name: str(p.example)
        for name, p in runbook.params.items()
        if p.required and p.default is None and p.example is not None
    }
