"""Inventories: which hosts exist, how they group, and what to connect to.

Users already keep hosts somewhere, usually in an Ansible inventory, so
`--inventory FILE` reads that as it is: Ansible INI (`[web]`, `[web:vars]`,
`[all:children]`, `web[01:20]` ranges) and Ansible YAML (`all: {hosts,
children, vars}`), plus a flat YAML of our own (`hosts:` and `groups:`).
Host vars are normalised to transport options on load (`ansible_host` ->
`address`, `ansible_port` -> `port`, `ansible_user` -> `user`,
`ansible_ssh_private_key_file` -> `key_file`), so a target's options and an
inventory merge with plain dict semantics, the host's own vars winning.
Every problem is an InventoryError (exit 2) naming `file:line`.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runbook.errors import InvalidInput
from runbook.load.model import Target

ALIASES: Mapping[str, str] = {
    "ansible_host": "address",
    "ansible_ssh_host": "address",
    "ansible_port": "port",
    "ansible_ssh_port": "port",
    "ansible_user": "user",
    "ansible_ssh_user": "user",
    "ansible_ssh_private_key_file": "key_file",
    "ansible_private_key_file": "key_file",
}
_INVENTORY_REF = re.compile(r"^\s*\{\{\s*inventory\.([A-Za-z0-9_][A-Za-z0-9_.-]*)\s*\}\}\s*$")
_RANGE = re.compile(r"\[(\d+):(\d+)\]")


class InventoryError(InvalidInput):
    """The inventory file is missing or malformed, or a target names an unknown host."""


@dataclass(frozen=True)
class Host:
    """One host: its inventory name and vars (address, port, user, key_file, ...)."""

    name: str
    vars: Mapping[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return str(self.vars.get("address") or self.name)


@dataclass(frozen=True)
class Inventory:
    """Hosts by name and groups as ordered host-name lists (children expanded)."""

    hosts: Mapping[str, Host]
    groups: Mapping[str, tuple[str, ...]]
    path: str = ""

    def members(self, name: str) -> list[Host] | None:
        """The hosts a name stands for (a group or one host), or None if unknown."""
        if name in self.groups:
            return [self.hosts[h] for h in self.groups[name]]
        if name in self.hosts:
            return [self.hosts[name]]
        return None


def _normalise(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {ALIASES.get(str(k), str(k)): v for k, v in raw.items()}


def _expand_range(name: str) -> list[str]:
    """`web[01:03]` -> web01, web02, web03 (zero padding kept, as Ansible does)."""
    match = _RANGE.search(name)
    if match is None:
        return [name]
    first, last = match.group(1), match.group(2)
    width = len(first) if first.startswith("0") else 0
    names = []
    for n in range(int(first), int(last) + 1):
        names.extend(
            _expand_range(name[: match.start()] + str(n).zfill(width) + name[match.end() :])
        )
    return names


class _Builder:
    """Collects hosts, group members, group vars and children, then resolves them."""

    def __init__(self) -> None:
        self.host_vars: dict[str, dict[str, Any]] = {}
        self.members: dict[str, list[str]] = {}
        self.group_vars: dict[str, dict[str, Any]] = {}
        self.children: dict[str, list[str]] = {}

    def add_host(self, group: str, name: str, raw: Mapping[str, Any]) -> None:
        for expanded in _expand_range(name):
            self.host_vars.setdefault(expanded, {}).update(_normalise(raw))
            self.members.setdefault(group, [])
            if expanded not in self.members[group]:
                self.members[group].append(expanded)

    def group_hosts(self, group: str, seen: frozenset[str] = frozenset()) -> list[str]:
        if group in seen:
            return []
        names = list(self.members.get(group, []))
        for child in self.children.get(group, []):
            names += [h for h in self.group_hosts(child, seen | {group}) if h not in names]
        return names

    def build(self, path: str) -> Inventory:
        groups = set(self.members) | set(self.children) | set(self.group_vars)
        resolved = {g: tuple(self.group_hosts(g)) for g in groups}
        resolved["all"] = tuple(self.host_vars)
        merged: dict[str, dict[str, Any]] = {h: {} for h in self.host_vars}
        for group in sorted(groups, key=lambda g: (g != "all", self._depth(g))):
            for h in resolved[group]:
                merged[h].update(self.group_vars.get(group, {}))
        hosts = {h: Host(h, {**merged[h], **v}) for h, v in self.host_vars.items()}
        return Inventory(hosts, resolved, path)

    def _depth(self, group: str) -> int:
        parents = [p for p, kids in self.children.items() if group in kids]
        return 1 + max((self._depth(p) for p in parents if p != group), default=0)


def load_inventory(path: str | Path) -> Inventory:
    """Read an inventory file (INI or YAML, by content); InventoryError on any problem."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InventoryError(f"{name}: inventory file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(f"{name}: cannot read inventory: {exc}") from None
    first = next(
        (ln.strip() for ln in text.splitlines() if ln.strip() and ln.strip()[0] not in "#;"), ""
    )
    if first.startswith("[") or (first and ":" not in first and "=" in first) or _bare_ini(first):
        return _load_ini(text, name)
    return _load_yaml(text, name)


def _bare_ini(first: str) -> bool:
    """A first line like `web-1 ansible_host=...` or a lone host name is INI, not YAML."""
    return bool(first) and ":" not in first and not first.startswith(("-", "{"))


def _load_ini(text: str, name: str) -> Inventory:
    builder = _Builder()
    group, kind = "ungrouped", "hosts"
    for number, raw_line in enumerate(text.splitlines(), 1):
        line = raw_line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise InventoryError(f"{name}:{number}: malformed section header {line!r}")
            group, _, kind = line[1:-1].partition(":")
            kind = kind or "hosts"
            if kind not in ("hosts", "vars", "children"):
                raise InventoryError(
                    f"{name}:{number}: unknown section kind ':{kind}' "
                    "(expected [group], [group:vars] or [group:children])"
                )
            continue
        _ini_line(builder, group, kind, line, f"{name}:{number}")
    return builder.build(name)


def _ini_line(builder: _Builder, group: str, kind: str, line: str, where: str) -> None:
    try:
        words = shlex.split(line, comments=True)
    except ValueError as exc:
        raise InventoryError(f"{where}: {exc}") from None
    if kind == "children":
        builder.children.setdefault(group, []).append(words[0])
        return
    pairs = words if kind == "vars" else words[1:]
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InventoryError(f"{where}: expected key=value, got {pair!r}")
        values[key] = int(value) if value.isdigit() else value
    if kind == "vars":
        builder.group_vars.setdefault(group, {}).update(_normalise(values))
    else:
        builder.add_host(group, words[0], values)


def _load_yaml(text: str, name: str) -> Inventory:
    from runbook.errors import InvalidRunbook
    from runbook.load.marked_yaml import parse_yaml_bytes

    try:
        tree = parse_yaml_bytes(text.encode("utf-8"), name)
    except InvalidRunbook as exc:
        raise InventoryError(str(exc)) from None
    if not isinstance(tree, dict):
        raise InventoryError(f"{name}:1: an inventory is a mapping (hosts/groups, or all: ...)")
    builder = _Builder()
    if "groups" in tree or "hosts" in tree:
        _flat_yaml(builder, tree, name)
    else:
        for group, node in tree.items():
            _ansible_group(builder, str(group), node, name, (group,), tree)
    return builder.build(name)


def _where(tree: Any, path: tuple[Any, ...], name: str) -> str:
    from runbook.load.marked_yaml import locate

    return f"{name}:{locate(tree, path).line}"


def _flat_yaml(builder: _Builder, tree: Mapping[str, Any], name: str) -> None:
    hosts, groups = tree.get("hosts") or {}, tree.get("groups") or {}
    if not isinstance(hosts, dict) or not isinstance(groups, dict):
        raise InventoryError(f"{_where(tree, ('hosts',), name)}: hosts and groups are mappings")
    for host, raw in hosts.items():
        if raw is not None and not isinstance(raw, dict):
            where = _where(tree, ("hosts", host), name)
            raise InventoryError(f"{where}: host '{host}' vars must be a mapping")
        builder.add_host("ungrouped", str(host), raw or {})
    for group, members in groups.items():
        if not isinstance(members, list):
            where = _where(tree, ("groups", group), name)
            raise InventoryError(f"{where}: group '{group}' must list host or group names")
        for member in map(str, members):
            if member in groups:
                builder.children.setdefault(str(group), []).append(member)
            elif member in builder.host_vars:
                builder.add_host(str(group), member, {})
            else:
                where = _where(tree, ("groups", group), name)
                raise InventoryError(f"{where}: group '{group}' names unknown host '{member}'")
    builder.group_vars["all"] = _normalise(tree.get("vars") or {})


def _ansible_group(
    builder: _Builder, group: str, node: Any, name: str, path: tuple[Any, ...], tree: Any
) -> None:
    if node is None:
        builder.members.setdefault(group, [])
        return
    if not isinstance(node, dict) or set(node) - {"hosts", "children", "vars"}:
        raise InventoryError(
            f"{_where(tree, path, name)}: group '{group}' may only have hosts, children and vars"
        )
    for host, raw in (node.get("hosts") or {}).items():
        builder.add_host(group, str(host), raw or {})
    builder.group_vars.setdefault(group, {}).update(_normalise(node.get("vars") or {}))
    for child, child_node in (node.get("children") or {}).items():
        builder.children.setdefault(group, []).append(str(child))
        _ansible_group(builder, str(child), child_node, name, (*path, "children", child), tree)


def resolve_hosts(target: Target, inventory: Inventory | None) -> list[Host]:
    """The target's hosts: literal names, inventory groups/hosts, or `{{ inventory.X }}`."""
    raw = target.options.get("hosts", target.options.get("host"))
    if raw is None:
        if target.transport == "local":
            return [Host("localhost")]
        raise InventoryError(
            f"target '{target.name}' ({target.transport}) names no hosts: add `hosts: [...]`"
        )
    names = [raw] if isinstance(raw, str) else list(raw)
    found: dict[str, Host] = {}
    for entry in map(str, names):
        for host in _resolve_entry(target, entry, inventory):
            found.setdefault(host.name, host)
    if not found:
        raise InventoryError(f"target '{target.name}': its hosts resolve to no host at all")
    return list(found.values())


def _resolve_entry(target: Target, entry: str, inventory: Inventory | None) -> list[Host]:
    ref = _INVENTORY_REF.match(entry)
    name = ref.group(1) if ref else entry.strip()
    members = inventory.members(name) if inventory is not None else None
    if members is not None:
        return members
    if ref is None and (inventory is None or _looks_like_address(name)):
        return [Host(name)]
    if inventory is None:
        raise InventoryError(
            f"target '{target.name}' uses '{entry}', which needs an inventory: "
            "pass --inventory FILE"
        )
    known = sorted(set(inventory.groups) | set(inventory.hosts))
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise InventoryError(
        f"target '{target.name}': no host or group '{name}' in inventory {inventory.path}{hint}"
    )


def _looks_like_address(name: str) -> bool:
    return name == "localhost" or "." in name or ":" in name
