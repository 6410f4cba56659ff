"""What the command executors built on a transport (systemd, journald) share.

Both take one unit or a list of units, and both plan as an exact argv that runs
here or on a target's hosts; keeping those two pieces in one place means their
schemas and plans read the same way to a runbook author.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from runbook.contract import PlannedCall

# JSON Schema: one non-empty string, or a non-empty list of them (`unit: api` or `[api, nginx]`).
ONE_OR_MORE_STRINGS: Mapping[str, Any] = {
    "oneOf": [
        {"type": "string", "minLength": 1},
        {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
    ]
}


def planned_command(argv: Sequence[str], config: Mapping[str, Any], **extra: Any) -> PlannedCall:
    """The exact argv (plus `extra` detail), and the target it would run on if any."""
    detail: dict[str, Any] = {"argv": list(argv), **extra}
    if "target" in config:
        detail["target"] = config["target"]
    where = f" (on {config['target']})" if "target" in config else ""
    return PlannedCall(summary=f"$ {shlex.join(argv)}{where}", detail=detail)
