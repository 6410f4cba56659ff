"""Inventories: which hosts exist, how they group, and what to connect to.

Users already keep hosts somewhere, usually in an Ansible inventory, so
`--inventory FILE` reads that as it is: Ansible INI (`[web]`, `[web:vars]`,
`[all:children]`, `web[01:20]` ranges) and Ansible YAML (`all: {hosts,
children, vars}`), plus a flat YAML of our own (`hosts:` and `groups:`).
Host vars are normalised to transport options on load (`ansible_host` ->
`address`, `ansible_port` -> `port`, `ansible_user` -> `user`,
`ansible_ssh_private_key_file` -> `key_file`), so a target's options and an
inventory merge with plain dict semantics, the host's own vars winning.
Every problem is an InventoryError (exit 2) naming `file:line`, including
an inventory bigger than the documented bounds (MAX_HOSTS hosts per range
pattern and per inventory), which are checked arithmetically before a range
is expanded, and a group that is its own child.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from runbook.contract import Host
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
_MAX_RANGE_DIGITS = 12

MAX_HOSTS = 10_000
"""Most hosts one range pattern (`web[1:N]`), one inventory and one target may stand for."""
MAX_MEMBERSHIPS = 200_000
"""Most (group, host) pairs in an inventory, children expanded: 10,000 hosts in 20 groups."""


class InventoryError(InvalidInput):
    """The inventory file is missing or malformed, or a target names an unknown host."""


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


def _range_sizes(name: str, where: str) -> list[int]:
    """How many numbers each `[first:last]` of a host pattern stands for, without expanding."""
    sizes = []
    for first, last in _RANGE.findall(name):
        if max(len(first), len(last)) > _MAX_RANGE_DIGITS:
            raise InventoryError(f"{where}: host pattern '{name}': range bound too long")
        sizes.append(max(0, int(last) - int(first) + 1))
    return sizes


def _expand_range(name: str) -> list[str]:
    """`web[01:03]` -> web01, web02, web03 (zero padding kept, as Ansible does).

    Several ranges multiply (`r[1:2]n[1:3]` is 6 names, the first range varying
    slowest). Only the ranges written in `name` expand: a result is not scanned
    again, so its size is always the product `_range_sizes` computed beforehand.
    """
    pieces = _RANGE.split(name)  # text, first, last, text, first, last, ..., text
    if len(pieces) == 1:
        return [name]
    texts, firsts, lasts = pieces[0::3], pieces[1::3], pieces[2::3]
    choices = [
        [
            str(n).zfill(len(first) if first.startswith("0") else 0)
            for n in range(int(first), int(last) + 1)
        ]
        for first, last in zip(firsts, lasts, strict=True)
    ]
    names = []
    for combo in itertools.product(*choices):
        names.append(
            "".join(text + number for text, number in zip(texts, (*combo, ""), strict=True))
        )
    return names


class _Builder:
    """Collects hosts, group members, group vars and children, then resolves them.

    Sizes are checked before anything is expanded (see MAX_HOSTS), so a hostile
    or mistyped inventory fails with its file:line instead of eating the memory.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.host_vars: dict[str, dict[str, Any]] = {}
        self.members: dict[str, dict[str, None]] = {}  # ordered sets of host names
        self.group_vars: dict[str, dict[str, Any]] = {}
        self.children: dict[str, list[str]] = {}
        self.child_where: dict[tuple[str, str], str] = {}
        self.entries = 0
        self._parents: dict[str, list[str]] = {}

    def add_host(self, group: str, name: str, raw: Mapping[str, Any], where: str) -> None:
        sizes = _range_sizes(name, where)
        count = math.prod(sizes)
        if count > MAX_HOSTS or max(sizes, default=0) > MAX_HOSTS:
            raise InventoryError(
                f"{where}: host pattern '{name}' expands to {max([count, *sizes]):,} hosts; "
                f"a pattern may expand to at most {MAX_HOSTS:,}"
            )
        self.entries += count
        if self.entries > MAX_MEMBERSHIPS:
            raise InventoryError(
                f"{where}: the inventory lists more than {MAX_MEMBERSHIPS:,} hosts in groups "
                f"({self.entries:,} with '{name}')"
            )
        members = self.members.setdefault(group, {})
        host_vars = _normalise(raw)
        for expanded in _expand_range(name):
            self.host_vars.setdefault(expanded, {}).update(host_vars)
            members[expanded] = None
        if len(self.host_vars) > MAX_HOSTS:
            raise InventoryError(
                f"{where}: the inventory would hold {len(self.host_vars):,} hosts with "
                f"'{name}'; an inventory may hold at most {MAX_HOSTS:,}"
            )

    def add_child(self, group: str, child: str, where: str) -> None:
        self.children.setdefault(group, []).append(child)
        self.child_where.setdefault((group, child), where)

    def build(self) -> Inventory:
        groups = set(self.members) | set(self.children) | set(self.group_vars)
        order = self._children_first(groups)
        resolved: dict[str, tuple[str, ...]] = {}
        total = 0
        for group in order:  # a group's own hosts, then each child's, first place kept
            names = dict(self.members.get(group, {}))
            for child in self.children.get(group, []):
                names.update(dict.fromkeys(resolved[child]))
            total += len(names)
            if total > MAX_MEMBERSHIPS:
                kids = self.children.get(group, [])
                where = self.child_where.get((group, kids[0]), self.path) if kids else self.path
                raise InventoryError(
                    f"{where}: groups hold {total:,} hosts once children are expanded "
                    f"(with group '{group}'); an inventory may hold at most "
                    f"{MAX_MEMBERSHIPS:,} group memberships"
                )
            resolved[group] = tuple(names)
        resolved = {g: resolved[g] for g in groups}
        resolved["all"] = tuple(self.host_vars)
        depth: dict[str, int] = {}
        for group in reversed(order):  # parents first
            parents = self._parents.get(group, ())
            depth[group] = 1 + max((depth[p] for p in parents), default=0)
        merged: dict[str, dict[str, Any]] = {h: {} for h in self.host_vars}
        for group in sorted(groups, key=lambda g: (g != "all", depth[g])):
            for h in resolved[group]:
                merged[h].update(self.group_vars.get(group, {}))
        hosts = {h: Host(h, {**merged[h], **v}) for h, v in self.host_vars.items()}
        return Inventory(hosts, resolved, self.path)

    def _children_first(self, groups: set[str]) -> list[str]:
        """Every group after all its children (Kahn's algorithm); InventoryError on a cycle."""
        nodes = groups | {c for kids in self.children.values() for c in kids}
        self._parents.clear()
        waiting = {g: 0 for g in nodes}
        for parent, kids in self.children.items():
            for child in dict.fromkeys(kids):
                self._parents.setdefault(child, []).append(parent)
                waiting[parent] += 1
        ready = [g for g in sorted(nodes) if waiting[g] == 0]
        order: list[str] = []
        while ready:
            group = ready.pop()
            order.append(group)
            for parent in self._parents.get(group, ()):
                waiting[parent] -= 1
                if waiting[parent] == 0:
                    ready.append(parent)
        if len(order) < len(nodes):
            self._cycle({g for g in nodes if waiting[g] > 0})
        return order

    def _cycle(self, stuck: set[str]) -> NoReturn:
        """Name one cycle among the groups that never became ready."""
        path = [min(stuck)]
        while True:
            nxt = next(c for c in self.children.get(path[-1], []) if c in stuck)
            if nxt in path:
                loop = [*path[path.index(nxt) :], nxt]
                where = self.child_where.get((loop[0], loop[1]), self.path)
                raise InventoryError(
                    f"{where}: group '{nxt}' is its own child ({' -> '.join(loop)})"
                )
            path.append(nxt)


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
    builder = _Builder(name)
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
    return builder.build()


def _ini_line(builder: _Builder, group: str, kind: str, line: str, where: str) -> None:
    try:
        words = shlex.split(line, comments=True)
    except ValueError as exc:
        raise InventoryError(f"{where}: {exc}") from None
    if kind == "children":
        builder.add_child(group, words[0], where)
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
        builder.add_host(group, words[0], values, where)


def _load_yaml(text: str, name: str) -> Inventory:
    from runbook.errors import InvalidRunbook
    from runbook.load.marked_yaml import parse_yaml_bytes

    try:
        tree = parse_yaml_bytes(text.encode("utf-8"), name)
    except InvalidRunbook as exc:
        raise InventoryError(str(exc)) from None
    if not isinstance(tree, dict):
        raise InventoryError(f"{name}:1: an inventory is a mapping (hosts/groups, or all: ...)")
    builder = _Builder(name)
    if "groups" in tree or "hosts" in tree:
        _flat_yaml(builder, tree, name)
    else:
        for group, node in tree.items():
            _ansible_group(builder, str(group), node, name, (group,), tree)
    return builder.build()


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
        builder.add_host("ungrouped", str(host), raw or {}, _where(tree, ("hosts", host), name))
    for group, members in groups.items():
        if not isinstance(members, list):
            where = _where(tree, ("groups", group), name)
            raise InventoryError(f"{where}: group '{group}' must list host or group names")
        for member in map(str, members):
            if member in groups:
                builder.add_child(str(group), member, _where(tree, ("groups", group), name))
            elif member in builder.host_vars:
                builder.add_host(str(group), member, {}, _where(tree, ("groups", group), name))
            else:
                where = _where(tree, ("groups", group), name)
                raise InventoryError(f"{where}: group '{group}' names unknown host '{member}'")
    builder.group_vars["all"] = _normalise(tree.get("vars") or {})


def _ansible_group(
    builder: _Builder, group: str, node: Any, name: str, path: tuple[Any, ...], tree: Any
) -> None:
    if node is None:
        builder.members.setdefault(group, {})
        return
    if not isinstance(node, dict) or set(node) - {"hosts", "children", "vars"}:
        raise InventoryError(
            f"{_where(tree, path, name)}: group '{group}' may only have hosts, children and vars"
        )
    for host, raw in (node.get("hosts") or {}).items():
        where = _where(tree, (*path, "hosts", host), name)
        builder.add_host(group, str(host), raw or {}, where)
    builder.group_vars.setdefault(group, {}).update(_normalise(node.get("vars") or {}))
    for child, child_node in (node.get("children") or {}).items():
        builder.add_child(group, str(child), _where(tree, (*path, "children", child), name))
        _ansible_group(builder, str(child), child_node, name, (*path, "children", child), tree)


def resolve_hosts(
    target: Target, inventory: Inventory | None, *, remote: bool = True
) -> list[Host]:
    """The target's hosts: literal names, inventory groups/hosts, or `{{ inventory.X }}`.

    A target of a transport that runs here (`remote=False`) may name no hosts:
    it then means this machine, `localhost`.
    """
    raw = target.options.get("hosts", target.options.get("host"))
    if raw is None:
        if not remote:
            return [Host("localhost")]
        raise InventoryError(
            f"target '{target.name}' ({target.transport}) names no hosts: add `hosts: [...]`"
        )
    names = [raw] if isinstance(raw, str) else list(raw)
    found: dict[str, Host] = {}
    for entry in map(str, names):
        for host in _resolve_entry(target, entry, inventory):
            found.setdefault(host.name, host)
        if len(found) > MAX_HOSTS:
            raise InventoryError(
                f"target '{target.name}' stands for more than {MAX_HOSTS:,} hosts "
                f"({len(found):,} with '{entry}'); split it into several targets"
            )
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
