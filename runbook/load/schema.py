"""The runbook JSON Schema: the packaged core, executors merged in, and durations.

The core schema in `schemas/runbook.schema.json` is the format contract; it
leaves every executor's config open. Editors need the opposite (completion for
`http: {url: ...}`), so `full_schema()` embeds each installed executor's own
schema as a separate resource under `$defs` and closes `check`/`action` over
the known names. Validators are compiled once per schema and kept in-process,
so validating many files in one `runbook validate` pays the cost once.

Two non-standard keywords, understood by VS Code and yaml-language-server,
carry human messages: `patternErrorMessage` (used when a `pattern` fails) and
`errorMessage` (used when a composite rule such as `oneOf` or `maxProperties`
fails). The loader uses them too.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import re
import reprlib
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, NamedTuple

from runbook.errors import UnknownExecutor

if TYPE_CHECKING:
    # jsonschema ships no type information (types-jsonschema is optional).
    from jsonschema.exceptions import ValidationError  # type: ignore[import-untyped,unused-ignore]
    from jsonschema.protocols import Validator  # type: ignore[import-untyped,unused-ignore]

    from runbook.contract import ExecutorSpec

DIALECT = "https://json-schema.org/draft/2020-12/schema"
EXECUTOR_ID_PREFIX = "urn:runbook-as-code:schema:executor:"

_NUMBER = r"[0-9]+(?:\.[0-9]+)?"
# Units must come in decreasing order ("1h30m", not "30m1h"); a bare number is seconds.
DURATION_PATTERN = (
    rf"^(?:{_NUMBER}|(?=[0-9])(?:{_NUMBER}d)?(?:{_NUMBER}h)?(?:{_NUMBER}m(?!s))?"
    rf"(?:{_NUMBER}s)?(?:{_NUMBER}ms)?)$"
)
_DURATION = re.compile(DURATION_PATTERN)
_PART = re.compile(rf"({_NUMBER})(ms|d|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """Seconds in a duration: a non-negative number, or text like '500ms', '1h30m'."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a duration, got {type(value).__name__} {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if not _DURATION.match(text):
            raise ValueError(
                f"{value!r} is not a duration; use seconds (30, 0.5) or text like "
                "'500ms', '30s', '5m', '1h30m'"
            )
        if _PART.search(text) is None:
            return float(text)
        return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(text))
    seconds = float(value)
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(f"a duration must be a finite number of seconds >= 0, got {value!r}")
    return seconds


@cache
def core_schema() -> dict[str, Any]:
    """The packaged core schema (executor configs left open). Do not mutate it."""
    text = resources.files("runbook.schemas").joinpath("runbook.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def core_validator() -> Validator:
    """The compiled validator for the core schema."""
    return validator_for(core_schema())


def executor_schema(name: str, executors: Mapping[str, ExecutorSpec]) -> dict[str, Any]:
    """One executor's config schema, standalone (with `$schema`, `$id` and a title)."""
    spec = executors.get(name)
    if spec is None:
        raise UnknownExecutor(unknown_executor_message(name, executors))
    return _standalone(spec)


def unknown_executor_message(name: str, executors: Mapping[str, ExecutorSpec]) -> str:
    """ "unknown executor 'htp'; did you mean 'http'? (installed executors: http, shell)"."""
    close = difflib.get_close_matches(name, list(executors), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    installed = ", ".join(sorted(executors)) or "none"
    return f"unknown executor '{name}'{hint} (installed executors: {installed})"


def _standalone(spec: ExecutorSpec) -> dict[str, Any]:
    schema = copy.deepcopy(dict(spec.schema))
    schema.setdefault("$schema", DIALECT)
    schema.setdefault("$id", EXECUTOR_ID_PREFIX + spec.name)
    schema.setdefault("title", f"{spec.name} executor config")
    if spec.description:
        schema.setdefault("description", spec.description)
    return schema


def full_schema(executors: Mapping[str, ExecutorSpec]) -> dict[str, Any]:
    """The core schema with `check`/`action`/verify `check` closed over known executors.

    Each executor schema is embedded as its own resource (it keeps its `$id`,
    so its internal `#/...` references still resolve inside it).
    """
    schema = copy.deepcopy(core_schema())
    defs = schema["$defs"]
    names = sorted(executors)
    for name in names:
        defs[f"executor.{name}"] = _standalone(executors[name])
    call = dict(defs["executorCall"])
    call.pop("additionalProperties", None)
    call["properties"] = {
        name: {
            "$ref": defs[f"executor.{name}"]["$id"],
            "description": executors[name].description or f"The {name} executor's config.",
        }
        for name in names
    }
    call["additionalProperties"] = False
    call["errorMessage"] = "Name exactly one executor with its config; installed: " + (
        ", ".join(names) or "none"
    )
    defs["executorCall"] = call
    return schema


def validator_for(schema: Mapping[str, Any]) -> Validator:
    """A compiled Draft 2020-12 validator for `schema`, cached by `$id` and content."""
    # Keyed by content, not identity: two registries may give one name different schemas.
    return _compiled(json.dumps(schema, sort_keys=True, default=repr))


@cache
def _compiled(text: str) -> Validator:
    # jsonschema costs ~50 ms to import: only paid by commands that validate.
    from jsonschema import validators  # type: ignore[import-untyped,unused-ignore]

    schema = json.loads(text)
    # An executor may declare an older draft in `$schema`; without one, 2020-12.
    cls = validators.validator_for(schema, default=validators.Draft202012Validator)
    validator: Validator = cls(schema)
    return validator


# -- turning jsonschema errors into located, human messages ---------------------------------
class Issue(NamedTuple):
    """One located problem; sorts by position in the file."""

    line: int
    column: int
    path: str
    message: str

    def render(self, filename: str) -> str:
        return f"{filename}:{self.line}:{self.column}: {self.path}: {self.message}"


PathT = tuple[str | int, ...]
_IDENT = re.compile(r"^[A-Za-z_][\w-]*$")
# Keywords whose failure is about the object's shape as a whole, where a schema's own
# `errorMessage` says it better than the generic text.
_OWN_MESSAGE = {
    "type",
    "oneOf",
    "anyOf",
    "allOf",
    "not",
    "minProperties",
    "maxProperties",
    "const",
    "enum",
}
_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 60
_repr.maxlist = _repr.maxdict = 4
_repr.maxlevel = 2


def format_path(path: PathT) -> str:
    """`steps[2].check.http.timeout`; `$` is the top level."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENT.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out or "$"


def explain(errors: Iterable[ValidationError], tree: Any, prefix: PathT = ()) -> list[Issue]:
    """Located, human issues for jsonschema errors about `tree` (at `prefix` in the file).

    A wrong type at a location makes every other complaint there moot, so only
    the best type error is kept; other errors at one location are independent
    (a missing key and an unknown key) and are all kept.
    """
    from jsonschema.exceptions import best_match  # type: ignore[import-untyped,unused-ignore]

    by_path: dict[PathT, list[ValidationError]] = {}
    for error in errors:
        by_path.setdefault(tuple(error.absolute_path), []).append(error)
    issues: list[Issue] = []
    for group in by_path.values():
        wrong_type = [e for e in group if e.validator == "type"]
        chosen = [best_match(wrong_type)] if wrong_type else group
        for error in chosen:
            issues.extend(_explain_one(error, tree, prefix))
    return sorted(set(issues))


def _explain_one(error: ValidationError, tree: Any, prefix: PathT) -> list[Issue]:
    path = prefix + tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    if error.validator == "additionalProperties" and error.validator_value is False:
        return [
            issue_at(tree, path + (key,), message, key=True)
            for key, message in _unknown_keys(error.instance, schema)
        ]
    if list(error.schema_path)[-2:-1] == ["propertyNames"]:
        # The error is about a key: point at the key itself.
        return [issue_at(tree, path + (error.instance,), _message(error, schema), key=True)]
    if error.validator in ("oneOf", "anyOf") and "errorMessage" not in schema:
        deeper = _composite_detail(error)
        if deeper is not None:
            return _explain_one(deeper, tree, prefix)
    return [issue_at(tree, path, _message(error, schema))]


def issue_at(tree: Any, path: PathT, message: str, *, key: bool = False) -> Issue:
    """An Issue located at `path` in a marked tree (at the key itself when `key`)."""
    from runbook.load.marked_yaml import locate

    line, column = locate(tree, path, key=key)
    return Issue(line, column, format_path(path), message)


def _message(error: ValidationError, schema: Mapping[str, Any]) -> str:
    validator, value, instance = error.validator, error.validator_value, error.instance
    if validator == "pattern":
        hint = schema.get("patternErrorMessage")
        return (
            f"{short(instance)}: {_sentence(hint)}"
            if hint
            else (f"{short(instance)} does not match {value!r}")
        )
    if validator in _OWN_MESSAGE and schema.get("errorMessage"):
        return _sentence(str(schema["errorMessage"]))
    if validator == "type":
        types = ", ".join(repr(t) for t in (value if isinstance(value, list) else [value]))
        return f"{short(instance)} is not of type {types}"
    if validator == "enum":
        return _not_allowed(instance, list(value))
    if validator == "const":
        return f"expected {value!r}, got {short(instance)}"
    text = str(error.message)
    if validator == "required":
        # jsonschema reports one missing key per error, as "'phase' is a required property".
        return re.sub(r"^(.*) is a required property$", r"missing required key \1", text)
    if validator in ("oneOf", "anyOf"):
        return _composite_message(error)
    return text if len(text) <= 200 else text[:197] + "..."


def short(value: Any) -> str:
    """A bounded repr: error messages must not dump a whole mapping."""
    return _repr.repr(value)


def _sentence(text: str) -> str:
    text = text.strip().rstrip(".")
    return text[:1].lower() + text[1:]


def _not_allowed(instance: Any, allowed: list[Any]) -> str:
    choices = ", ".join(str(v) for v in allowed)
    message = f"{short(instance)} is not one of the allowed values"
    if isinstance(instance, str):
        close = difflib.get_close_matches(instance, [str(v) for v in allowed], n=1)
        if close:
            message += f"; did you mean {close[0]!r}?"
    return f"{message} (allowed: {choices})"


def _unknown_keys(instance: Any, schema: Mapping[str, Any]) -> list[tuple[str, str]]:
    allowed = sorted(schema.get("properties", {}))
    patterns = list(schema.get("patternProperties", {}))
    found: list[tuple[str, str]] = []
    for key in instance if isinstance(instance, Mapping) else ():
        if key in allowed or any(re.search(p, str(key)) for p in patterns):
            continue
        message = f"unknown key {key!r}"
        close = difflib.get_close_matches(str(key), allowed, n=1)
        if close:
            message += f"; did you mean {close[0]!r}?"
        if allowed:
            message += f" (allowed: {', '.join(allowed)})"
        found.append((str(key), message))
    return found


def _required_branches(error: ValidationError) -> list[str] | None:
    """For `oneOf: [{required: [a]}, {required: [b]}]`, the names a, b; else None."""
    names: list[str] = []
    for branch in error.validator_value:
        keys = (
            set(branch) - {"description", "title", "errorMessage"}
            if isinstance(branch, Mapping)
            else set()
        )
        if keys != {"required"}:
            return None
        names.extend(branch["required"])
    return names


def _composite_detail(error: ValidationError) -> ValidationError | None:
    """The one alternative worth reporting, when the alternatives are not just key sets."""
    from jsonschema.exceptions import best_match  # type: ignore[import-untyped,unused-ignore]

    if _required_branches(error) is not None or not error.context:
        return None
    best = best_match([error])
    return None if best is error else best


def _composite_message(error: ValidationError) -> str:
    names = _required_branches(error)
    if names is not None:
        listed = " or ".join(repr(n) for n in names)
        how = "exactly one" if error.validator == "oneOf" else "at least one"
        return f"needs {how} of {listed}"
    if error.validator == "oneOf" and not error.context:
        return f"{short(error.instance)} matches more than one of the allowed forms"
    return f"{short(error.instance)} does not match any of the allowed forms"
