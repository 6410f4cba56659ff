"""Shared shape of the platform executors (kubernetes, aws_rds, postgres).

Each of them takes exactly one operation key plus connection settings, e.g.
`kubernetes: {scale: {deployment: api, replicas: 5}, namespace: prod}`. Keeping
that shape in one place means the three schemas, plans and error messages look
alike to a runbook author, and a step naming two operations is a schema error
at load time rather than a surprise at 3 a.m. Each property is built with the
contract's `prop()`, so numbers and booleans may also be a `{{ template }}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SCHEMA_URI = "https://json-schema.org/draft/2020-12/schema"


def op_schema(
    title: str,
    description: str,
    operations: Mapping[str, Mapping[str, Any]],
    common: Mapping[str, Any],
) -> dict[str, Any]:
    """A config schema: one of `operations` (each an object schema) plus `common` keys."""
    properties: dict[str, Any] = dict(common)
    for name, schema in operations.items():
        properties[name] = {"type": "object", "additionalProperties": False, **schema}
    return {
        "$schema": SCHEMA_URI,
        "title": title,
        "description": description,
        "type": "object",
        "properties": properties,
        "oneOf": [{"required": [name]} for name in operations],
        "additionalProperties": False,
    }


def operation(config: Mapping[str, Any], names: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The one operation named in `config` and its arguments (schema guarantees exactly one)."""
    for name in names:
        if name in config:
            return name, dict(config[name] or {})
    raise ValueError("no operation given; expected one of: " + ", ".join(names))


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def scrub(text: str, *secrets: str | None) -> str:
    """`text` with every secret replaced by ***: SDK messages sometimes echo a DSN back."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
