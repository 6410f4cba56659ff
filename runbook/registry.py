"""The plugin manager facade: the rest of the code asks `registry.executor("http")`.

Built-in executors and third-party plugins arrive the same way, through the
`runbook` entry-point group. A plugin that fails to import is recorded and
listed by `runbook plugins`, and only the steps that need it fail; two plugins
claiming one executor name is an error that names both.

Plugins are imported when first needed: the executors a runbook names, the
transports its steps connect through, every observer when a run reports a step.
Which plugin provides what comes from a scan of every entry point, kept between
runs by `runbook.plugin_scan`; the first start after any change to the installed
plugins imports them all, as every start used to. Whatever the scan says is
checked when it is used: a plugin that does not provide what it was said to
makes the registry import every plugin, answer from what they really provide and
save that; a name the scan does not know is asked of every plugin that could
provide it.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial, reduce
from importlib import import_module
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pluggy

from runbook import hookspecs, plugin_scan
from runbook.contract import (
    PROJECT,
    ExecutorSpec,
    ReportFormat,
    RunEvent,
    StepEvent,
    TransportSpec,
)
from runbook.errors import InvalidInput, UnknownExecutor
from runbook.plugin_scan import ScannedPlugin

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

ENTRY_POINT_GROUP = PROJECT
# importlib.metadata.EntryPoint.pattern: `module`, `module:attr.attr`, optional `[extras]`
_ENTRY_POINT_VALUE = re.compile(
    r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$"
)
T = TypeVar("T")
EXECUTORS = "runbook_executors"
TRANSPORTS = "runbook_transports"


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
        self._order: dict[str, int] = {}  # registration order, as if every plugin were loaded
        self._pending: dict[str, ScannedPlugin] = {}  # known from the scan, not imported yet
        self._scanned: list[ScannedPlugin] = []  # every entry point, in order
        self._specs: dict[tuple[str, str], list[Any] | None] = {}  # (hook, plugin) -> specs
        self._owner_cache: dict[str, dict[str, str]] = {}  # hook -> name -> plugin providing it
        self._conflicts: dict[str, list[str]] = {}
        self._environment: plugin_scan.Environment | None = None
        self._started = time.time_ns()  # before any plugin was imported (see plugin_scan.save)
        self._stale = False
        # Lookups come from fan-out threads too (a pool connecting hosts): one at a time.
        self._lock = threading.RLock()
        self.failures: list[PluginFailure] = []

    # -- loading ---------------------------------------------------------------
    @classmethod
    def from_entry_points(cls, extra: Iterable[ModuleType | Any] = ()) -> PluginRegistry:
        """Every `runbook` entry point (imported as needed), plus `extra` plugin objects (tests)."""
        registry = cls()
        registry._environment = plugin_scan.current_environment()
        scanned = plugin_scan.load(registry._environment) if registry._environment else None
        if scanned is None:
            registry._scan()
        else:
            registry._adopt(scanned)
        for plugin in extra:
            name = getattr(plugin, "__name__", type(plugin).__name__)
            registry.register(plugin, PluginInfo(name, name, "(in-process)", ""))
        registry._pm.check_pending()
        return registry

    def _scan(self) -> None:
        """Import every entry point, and save what each provides for the next start."""
        from importlib import metadata

        eps = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
        for ep in eps:
            self._load_plugin(ep.name, ep.value, *_dist(ep), ep.load)
        self._scanned = [self._scanned_plugin(ep.name, ep.value, *_dist(ep)) for ep in eps]
        self._save_scan()

    def _load_plugin(
        self, name: str, value: str, dist: str, version: str, load: Callable[[], Any]
    ) -> None:
        if self._pm.get_plugin(name) is not None or name in self._pending:
            self.failures.append(
                PluginFailure(
                    name, value, dist, "another plugin is already registered under this name"
                )
            )
            return
        try:
            plugin = load()
        except Exception as exc:  # a broken plugin must not break unrelated runbooks
            self.failures.append(PluginFailure(name, value, dist, f"{type(exc).__name__}: {exc}"))
            return
        self.register(plugin, PluginInfo(name, value, dist, version))

    def _scanned_plugin(self, name: str, value: str, dist: str, version: str) -> ScannedPlugin:
        """What the plugin loaded for entry point `name` provides (not loaded: retry each time)."""
        plugin = self._pm.get_plugin(name)
        info = self._info.get(name)
        if plugin is None or info is None or (info.module, info.distribution) != (value, dist):
            return ScannedPlugin(name, value, dist, version, loaded=False)  # or another's name
        hooks = tuple(sorted(caller.name for caller in self._pm.get_hookcallers(plugin) or []))
        executors, transports = self._provided(EXECUTORS, name), self._provided(TRANSPORTS, name)
        if executors is None or transports is None:
            return ScannedPlugin(name, value, dist, version, hooks, loaded=False)
        return ScannedPlugin(
            name,
            value,
            dist,
            version,
            hooks,
            tuple(spec.name for spec in executors),
            tuple(spec.name for spec in transports),
        )

    def _save_scan(self) -> None:
        if self._environment is None:
            return
        modules = [p.value.partition(":")[0] for p in self._scanned if p.loaded]
        plugin_scan.save(self._environment, self._scanned, modules, self._started)

    def _adopt(self, scanned: list[ScannedPlugin]) -> None:
        """Know every plugin from the scan; import now only those that failed last time."""
        self._scanned = scanned
        for plugin in scanned:
            if plugin.loaded and plugin.name not in self._order:
                self._order[plugin.name] = len(self._order)
                self._info[plugin.name] = PluginInfo(
                    plugin.name, plugin.value, plugin.distribution, plugin.version
                )
                self._pending[plugin.name] = plugin
                continue
            # A failure is never remembered (its cause may be gone): try again, as every start did.
            self._load_plugin(*_where(plugin), partial(_load_value, plugin.value))
            if self._scanned_plugin(*_where(plugin)) != plugin:
                self._stale = True
        self._owner_cache.clear()
        if self._stale:
            self._refresh()

    def register(self, plugin: Any, info: PluginInfo) -> None:
        if info.name in self._pending:  # pluggy refuses a second plugin of one name
            self._import([info.name])
        self._pm.register(plugin, name=info.name)
        self._info[info.name] = info
        self._order.setdefault(info.name, len(self._order))
        self._owner_cache.clear()

    def _load_pending(self, name: str) -> None:
        scanned = self._pending.pop(name)
        del self._info[name]
        self._load_plugin(*_where(scanned), partial(_load_value, scanned.value))
        if self._scanned_plugin(*_where(scanned)) != scanned:
            self._stale = True

    def _import(self, names: Iterable[str]) -> None:
        """Import the pending plugins `names`; if one is not what the scan said, import all."""
        with self._lock:
            for name in sorted(set(names) & set(self._pending), key=self._order.__getitem__):
                self._load_pending(name)
            self._owner_cache.clear()
            self._pm.check_pending()
            if self._stale:
                self._refresh()

    def _refresh(self) -> None:
        """The scan no longer holds: import every plugin and save what they provide now."""
        for name in sorted(self._pending, key=self._order.__getitem__):
            self._load_pending(name)
        self._owner_cache.clear()
        self._pm.check_pending()
        self._scanned = [self._scanned_plugin(*_where(p)) for p in self._scanned]
        self._stale = False
        self._save_scan()

    def _import_hook(self, hook: str) -> None:
        """Import every pending plugin that implements `hook`."""
        with self._lock:
            wanted = [name for name, p in self._pending.items() if hook in p.hooks]
            if wanted:
                self._import(wanted)

    # -- executors and transports ---------------------------------------------
    def _provided(self, hook: str, plugin_name: str) -> list[Any] | None:
        """What a loaded plugin's `hook` returns, asked once; None if it raised (a failure)."""
        key = (hook, plugin_name)
        if key not in self._specs:
            specs: list[Any] | None = []
            for impl in getattr(self._pm.hook, hook).get_hookimpls():
                if impl.plugin_name != plugin_name:
                    continue
                try:
                    specs = list(impl.function() or [])
                except Exception as exc:
                    info = self._info.get(plugin_name, PluginInfo(plugin_name, "", "", ""))
                    self.failures.append(
                        PluginFailure(
                            info.name, info.module, info.distribution, f"{hook}() raised {exc!r}"
                        )
                    )
                    specs = None
            self._specs[key] = specs
        return self._specs[key]

    def _owners(self, hook: str) -> dict[str, str]:
        """Name -> the plugin providing it, for `hook` (the scan's word for pending plugins)."""
        with self._lock:
            if hook not in self._owner_cache:
                self._owner_cache[hook] = self._find_owners(hook)
            return self._owner_cache[hook]

    def _find_owners(self, hook: str) -> dict[str, str]:
        owners: dict[str, str] = {}
        conflicts: list[str] = []
        # The last registered plugin is heard first, as pluggy calls hooks.
        for plugin_name in sorted(self._order, key=self._order.__getitem__, reverse=True):
            if plugin_name in self._pending:
                names = list(_claims(self._pending[plugin_name], hook))
            elif self._pm.get_plugin(plugin_name) is not None:
                names = [spec.name for spec in self._provided(hook, plugin_name) or []]
            else:
                continue
            for name in names:
                if name in owners:
                    conflicts.append(self._clash(hook, name, owners[name], plugin_name))
                    continue
                owners[name] = plugin_name
        self._conflicts[hook] = conflicts
        return owners

    def _clash(self, hook: str, name: str, first: str, second: str) -> str:
        if hook == TRANSPORTS:
            return f"transport '{name}' is provided by two plugins: '{first}' and '{second}'"
        one, other = self._info[first], self._info[second]
        return (
            f"executor '{name}' is provided by two plugins: '{one.name}' ({one.distribution}) "
            f"and '{other.name}' ({other.distribution})"
        )

    def _find(self, hook: str, name: str) -> tuple[Any, str] | None:
        """(spec, plugin) for `name`, importing the plugin that provides it; None if none does."""
        with self._lock:
            owner = self._owners(hook).get(name)
            if owner is None:
                self._import_hook(hook)  # a name the scan does not know: ask every such plugin
            elif owner in self._pending:
                self._import([owner])  # imports every plugin if it did not provide `name`
            owner = self._owners(hook).get(name)
            if owner is None:
                return None
            spec = next(spec for spec in self._provided(hook, owner) or [] if spec.name == name)
            return spec, owner

    def _check_conflicts(self, hook: str) -> None:
        self._owners(hook)
        if self._conflicts[hook]:
            raise DuplicateExecutor("; ".join(self._conflicts[hook]))

    def _entry(self, name: str) -> ExecutorEntry | None:
        found = self._find(EXECUTORS, name)
        return None if found is None else ExecutorEntry(found[0], self._info[found[1]])

    def executors(self) -> Mapping[str, ExecutorEntry]:
        """All executors by name; raises DuplicateExecutor when two plugins clash.

        A plugin is imported when one of its executors is looked up (listing them
        all imports every plugin that provides executors)."""
        self._check_conflicts(EXECUTORS)
        return _Provided(self, EXECUTORS, self._entry)

    def executor_specs(self) -> Mapping[str, ExecutorSpec]:
        """`executors()` without where each came from: what loading and planning need."""
        self._check_conflicts(EXECUTORS)
        return _Provided(self, EXECUTORS, lambda name: _spec(self._find(EXECUTORS, name)))

    def executor(self, name: str) -> ExecutorSpec:
        self._check_conflicts(EXECUTORS)
        found = self._find(EXECUTORS, name)
        if found is None:
            raise UnknownExecutor(self.unknown_executor_message(name))
        return cast(ExecutorSpec, found[0])

    def unknown_executor_message(self, name: str) -> str:
        """Why `name` is unknown: a close name, plugins that failed to load, what is installed."""
        import difflib

        self._import_hook(EXECUTORS)
        installed = sorted(self._owners(EXECUTORS))
        parts = [f"unknown executor '{name}'"]
        close = difflib.get_close_matches(name, installed, n=1)
        if close:
            parts.append(f"did you mean '{close[0]}'?")
        for failure in self.failures:
            if name in failure.name or name in failure.target:
                parts.append(f"plugin '{failure.name}' failed to load: {failure.error}")
        parts.append("installed executors: " + (", ".join(installed) or "none"))
        return "; ".join(parts)

    def transports(self) -> Mapping[str, TransportSpec]:
        """Transports by name, each plugin imported when one of its transports is looked up;
        raises DuplicateExecutor when two plugins claim one name."""
        self._check_conflicts(TRANSPORTS)
        return _Provided(self, TRANSPORTS, lambda name: _spec(self._find(TRANSPORTS, name)))

    def _impls(self, hook: str, *, reverse: bool = False) -> list[Any]:
        """`hook`'s implementations in registration order, as if all were loaded at start."""
        impls = getattr(self._pm.hook, hook).get_hookimpls()
        return sorted(impls, key=lambda impl: self._order[impl.plugin_name], reverse=reverse)

    # -- other hooks -----------------------------------------------------------
    def report_formats(self) -> dict[str, ReportFormat]:
        self._import_hook("runbook_report_formats")
        formats: dict[str, ReportFormat] = {}
        for impl in self._impls("runbook_report_formats", reverse=True):
            for fmt in impl.function() or []:
                if fmt.name in formats:
                    raise InvalidInput(f"report format '{fmt.name}' is provided by two plugins")
                formats[fmt.name] = fmt
        return formats

    def step_finished(self, event: StepEvent) -> list[str]:
        """Tell every observer; return their errors instead of raising."""
        return self._observe("runbook_step_finished", event)

    def run_finished(self, event: RunEvent) -> list[str]:
        """Tell every observer the run's log is complete; return their errors instead of raising."""
        return self._observe("runbook_run_finished", event)

    def _observe(self, hook: str, event: StepEvent | RunEvent) -> list[str]:
        self._import_hook(hook)
        errors: list[str] = []
        for impl in self._impls(hook):
            try:
                impl.function(event=event)
            except Exception as exc:
                errors.append(f"observer '{impl.plugin_name}' failed: {type(exc).__name__}: {exc}")
        return errors

    def plugins(self) -> list[PluginInfo]:
        """Every plugin that loaded (or, not imported yet, loaded when last scanned)."""
        return sorted(self._info.values(), key=lambda p: p.name)

    def versions(self) -> dict[str, str]:
        """Plugin name -> 'distribution version', for the incident-log header."""
        return {p.name: f"{p.distribution} {p.version}".strip() for p in self.plugins()}


class _Provided(Mapping[str, T]):
    """A registry's executors or transports; a plugin is imported when one of its is looked up."""

    def __init__(self, registry: PluginRegistry, hook: str, get: Callable[[str], T | None]) -> None:
        self._registry = registry
        self._hook = hook
        self._get = get

    def __getitem__(self, name: str) -> T:
        found = self._get(name)
        if found is None:
            raise KeyError(name)
        return found

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if name in self._registry._owners(self._hook):
            return True  # the scan's word; checked when it is looked up
        return self._get(name) is not None

    def __iter__(self) -> Iterator[str]:
        self._registry._import_hook(self._hook)
        return iter(sorted(self._registry._owners(self._hook)))

    def __len__(self) -> int:
        self._registry._import_hook(self._hook)
        return len(self._registry._owners(self._hook))


def _claims(scanned: ScannedPlugin, hook: str) -> tuple[str, ...]:
    """The names the scan says `scanned` provides through `hook`."""
    return scanned.transports if hook == TRANSPORTS else scanned.executors


def _spec(found: tuple[Any, str] | None) -> Any:
    return None if found is None else found[0]


def _dist(ep: EntryPoint) -> tuple[str, str]:
    if ep.dist is None:
        return "(unknown)", ""
    return ep.dist.name, ep.dist.version


def _where(scanned: ScannedPlugin) -> tuple[str, str, str, str]:
    return scanned.name, scanned.value, scanned.distribution, scanned.version


def _load_value(value: str) -> Any:
    """What `EntryPoint(value=...).load()` returns, without importing importlib.metadata."""
    match = _ENTRY_POINT_VALUE.match(value)
    if match is None:
        raise ValueError(f"malformed entry point {value!r}")
    module = import_module(match.group("module"))
    attrs = filter(None, (match.group("attr") or "").split("."))
    return reduce(getattr, attrs, module)
