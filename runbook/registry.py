"""The plugin manager facade: the rest of the code asks `registry.executor("http")`.

Built-in executors and third-party plugins arrive the same way, through the
`runbook` entry-point group. A plugin that fails to import is recorded and
listed by `runbook plugins`, and only the steps that need it fail; two plugins
claiming one executor name is an error that names both.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType
from typing import Any, cast

import pluggy

from runbook import hookspecs
from runbook.contract import PROJECT, ExecutorSpec, ReportFormat, StepEvent, TransportSpec
from runbook.errors import InvalidInput, UnknownExecutor

ENTRY_POINT_GROUP = PROJECT


@dataclass(frozen=True)
class PluginInfo:
    """Where a plugin came from, for `runbook plugins` and the log header."""

    name: str
    module: str
    distribution: str
    version: str


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded, and why."""

    name: str
    target: str
    distribution: str
    error: str


@dataclass(frozen=True)
class ExecutorEntry:
    spec: ExecutorSpec
    plugin: PluginInfo


class DuplicateExecutor(InvalidInput):
    """Two plugins claim the same executor name."""


class PluginRegistry:
    """Typed access to everything plugins contribute."""

    def __init__(self) -> None:
        self._pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self._pm.add_hookspecs(hookspecs)
        self._info: dict[str, PluginInfo] = {}
        self.failures: list[PluginFailure] = []
        self._executors: dict[str, ExecutorEntry] | None = None
        self._conflicts: list[str] = []

    # -- loading ---------------------------------------------------------------
    @classmethod
    def from_entry_points(cls, extra: Iterable[ModuleType | Any] = ()) -> PluginRegistry:
        """Load every `runbook` entry point, plus `extra` plugin objects (tests)."""
        registry = cls()
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            registry._load_entry_point(ep)
        for plugin in extra:
            name = getattr(plugin, "__name__", type(plugin).__name__)
            registry.register(plugin, PluginInfo(name, name, "(in-process)", ""))
        registry._pm.check_pending()
        return registry

    def _load_entry_point(self, ep: metadata.EntryPoint) -> None:
        dist = ep.dist.name if ep.dist is not None else "(unknown)"
        version = ep.dist.version if ep.dist is not None else ""
        if self._pm.get_plugin(ep.name) is not None:
            self.failures.append(
                PluginFailure(
                    ep.name, ep.value, dist, "another plugin is already registered under this name"
                )
            )
            return
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken plugin must not break unrelated runbooks
            self.failures.append(
                PluginFailure(ep.name, ep.value, dist, f"{type(exc).__name__}: {exc}")
            )
            return
        self.register(plugin, PluginInfo(ep.name, ep.value, dist, version))

    def register(self, plugin: Any, info: PluginInfo) -> None:
        self._pm.register(plugin, name=info.name)
        self._info[info.name] = info
        self._executors = None

    # -- executors -------------------------------------------------------------
    def _collect_executors(self) -> dict[str, ExecutorEntry]:
        if self._executors is not None:
            return self._executors
        found: dict[str, ExecutorEntry] = {}
        conflicts: list[str] = []
        for impl in reversed(self._pm.hook.runbook_executors.get_hookimpls()):
            info = self._info.get(impl.plugin_name, PluginInfo(impl.plugin_name, "", "", ""))
            try:
                specs: list[ExecutorSpec] = list(cast(list[ExecutorSpec], impl.function()) or [])
            except Exception as exc:
                self.failures.append(
                    PluginFailure(
                        info.name,
                        info.module,
                        info.distribution,
                        f"runbook_executors() raised {exc!r}",
                    )
                )
                continue
            for spec in specs:
                if spec.name in found:
                    other = found[spec.name].plugin
                    conflicts.append(
                        f"executor '{spec.name}' is provided by two plugins: "
                        f"'{other.name}' ({other.distribution}) and "
                        f"'{info.name}' ({info.distribution})"
                    )
                    continue
                found[spec.name] = ExecutorEntry(spec, info)
        self._conflicts = conflicts
        self._executors = found
        return found

    def executors(self) -> Mapping[str, ExecutorEntry]:
        """All executors by name; raises DuplicateExecutor when two plugins clash."""
        found = self._collect_executors()
        if self._conflicts:
            raise DuplicateExecutor("; ".join(self._conflicts))
        return found

    def executor(self, name: str) -> ExecutorSpec:
        entry = self.executors().get(name)
        if entry is None:
            raise UnknownExecutor(self.unknown_executor_message(name))
        return entry.spec

    def unknown_executor_message(self, name: str) -> str:
        """Why `name` is unknown: a close name, plugins that failed to load, what is installed."""
        installed = sorted(self._collect_executors())
        parts = [f"unknown executor '{name}'"]
        close = difflib.get_close_matches(name, installed, n=1)
        if close:
            parts.append(f"did you mean '{close[0]}'?")
        for failure in self.failures:
            if name in failure.name or name in failure.target:
                parts.append(f"plugin '{failure.name}' failed to load: {failure.error}")
        parts.append("installed executors: " + (", ".join(installed) or "none"))
        return "; ".join(parts)

    # -- transports ------------------------------------------------------------
    def transports(self) -> dict[str, TransportSpec]:
        """Transports by name; raises DuplicateExecutor when two plugins claim one name."""
        found: dict[str, tuple[TransportSpec, str]] = {}
        conflicts: list[str] = []
        for impl in reversed(self._pm.hook.runbook_transports.get_hookimpls()):
            try:
                specs = list(cast(list[TransportSpec], impl.function()) or [])
            except Exception as exc:
                info = self._info.get(impl.plugin_name, PluginInfo(impl.plugin_name, "", "", ""))
                self.failures.append(
                    PluginFailure(
                        info.name,
                        info.module,
                        info.distribution,
                        f"runbook_transports() raised {exc!r}",
                    )
                )
                continue
            for spec in specs:
                if spec.name in found:
                    conflicts.append(
                        f"transport '{spec.name}' is provided by two plugins: "
                        f"'{found[spec.name][1]}' and '{impl.plugin_name}'"
                    )
                    continue
                found[spec.name] = (spec, impl.plugin_name)
        if conflicts:
            raise DuplicateExecutor("; ".join(conflicts))
        return {name: spec for name, (spec, _) in found.items()}

    # -- other hooks -----------------------------------------------------------
    def report_formats(self) -> dict[str, ReportFormat]:
        formats: dict[str, ReportFormat] = {}
        for result in self._pm.hook.runbook_report_formats():
            for fmt in result or []:
                if fmt.name in formats:
                    raise InvalidInput(f"report format '{fmt.name}' is provided by two plugins")
                formats[fmt.name] = fmt
        return formats

    def step_finished(self, event: StepEvent) -> list[str]:
        """Tell every observer; return their errors instead of raising."""
        errors: list[str] = []
        for impl in self._pm.hook.runbook_step_finished.get_hookimpls():
            try:
                impl.function(event=event)
            except Exception as exc:
                errors.append(f"observer '{impl.plugin_name}' failed: {type(exc).__name__}: {exc}")
        return errors

    def plugins(self) -> list[PluginInfo]:
        return sorted(self._info.values(), key=lambda p: p.name)

    def versions(self) -> dict[str, str]:
        """Plugin name -> 'distribution version', for the incident-log header."""
        return {p.name: f"{p.distribution} {p.version}".strip() for p in self.plugins()}
