"""runbook: incident runbooks as code.

The public surface is deliberately small: what a plugin author needs to write
an executor or a transport. Every name here comes from `runbook.contract`, the
whole plugin contract (schema helpers, `on_target`, `run_command`, every
exception a plugin raises or catches). Attributes are resolved lazily so
`runbook --help` imports nothing but the standard library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "CommandOutcome",
    "Connection",
    "ExecContext",
    "ExecutorSpec",
    "Host",
    "PlanContext",
    "PlannedCall",
    "ReportFormat",
    "RunbookError",
    "StepEvent",
    "StepResult",
    "Target",
    "TransportError",
    "TransportSpec",
    "__version__",
    "hookimpl",
]

if TYPE_CHECKING:
    from runbook.contract import (
        CommandOutcome,
        Connection,
        ExecContext,
        ExecutorSpec,
        Host,
        PlanContext,
        PlannedCall,
        ReportFormat,
        RunbookError,
        StepEvent,
        StepResult,
        Target,
        TransportError,
        TransportSpec,
        hookimpl,
    )


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'runbook' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module("runbook.contract"), name)
