"""Wiring shared by the CLI verbs and the pytest plugin: plugins + loading.

Kept apart from `cli.py` so importing it is what pays for pluggy, YAML and
jsonschema — never `runbook --help`.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runbook.contract import ExecutorSpec
from runbook.load.model import Runbook
from runbook.registry import PluginRegistry

DEFAULT_LOG_DIR = "incident-logs"


def load_registry() -> PluginRegistry:
    return PluginRegistry.from_entry_points()


def executor_specs(registry: PluginRegistry) -> dict[str, ExecutorSpec]:
    return {name: entry.spec for name, entry in registry.executors().items()}


def load(name_or_path: str, registry: PluginRegistry) -> Runbook:
    """Resolve NAME|PATH and load it, validating executors through the registry."""
    from runbook.load.loader import load_runbook
    from runbook.load.resolve import resolve_runbook

    path = resolve_runbook(name_or_path)
    return load_runbook(path, executor_specs(registry), registry.unknown_executor_message)


def masked_params(runbook: Runbook, values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: ("***" if runbook.params[k].secret and v is not None else v) for k, v in values.items()
    }


def secret_values(runbook: Runbook, values: Mapping[str, Any]) -> list[str]:
    return [str(values[k]) for k in runbook.secret_params if values.get(k) not in (None, "")]


def log_dir(explicit: str | None) -> Path:
    return Path(explicit or os.environ.get("RUNBOOK_LOG_DIR") or DEFAULT_LOG_DIR)


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def header(
    runbook: Runbook,
    run_id: str,
    params: Mapping[str, Any],
    operator: str,
    registry: PluginRegistry,
    dry_run: bool,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The first record of every incident log (DESIGN.md: Incident log)."""
    from runbook import __version__

    data: dict[str, Any] = {
        "run_id": run_id,
        "runbook": {
            "name": runbook.name,
            "title": runbook.title,
            "severity": runbook.severity,
            "path": str(runbook.path),
            "sha256": runbook.sha256,
            "owners": list(runbook.owners),
            "tags": list(runbook.tags),
        },
        "params": masked_params(runbook, params),
        "operator": operator,
        "host": socket.gethostname(),
        "dry_run": dry_run,
        "started": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "versions": {
            "runbook": __version__,
            "python": platform.python_version(),
            "plugins": registry.versions(),
        },
        "argv": [Path(sys.argv[0]).name, *sys.argv[1:]],
    }
    data.update(extra or {})
    return data
