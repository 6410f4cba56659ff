"""runbook: incident runbooks as code.

The public surface is deliberately small: what a plugin author needs to write
an executor. Attributes are resolved lazily so `runbook --help` imports
nothing but the standard library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "ExecContext",
    "ExecutorSpec",
    "PlanContext",
    "PlannedCall",
    "ReportFormat",
    "StepEvent",
    "StepResult",
    "__version__",
    "hookimpl",
]

if TYPE_CHECKING:
    from runbook.contract import (
        ExecContext,
        ExecutorSpec,
        PlanContext,
        PlannedCall,
        ReportFormat,
        StepEvent,
        StepResult,
    )
    from runbook.hookspecs import hookimpl

_LAZY = {
    "hookimpl": "runbook.hookspecs",
    "ExecContext": "runbook.contract",
    "ExecutorSpec": "runbook.contract",
    "PlanContext": "runbook.contract",
    "PlannedCall": "runbook.contract",
    "ReportFormat": "runbook.contract",
    "StepEvent": "runbook.contract",
    "StepResult": "runbook.contract",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'runbook' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
