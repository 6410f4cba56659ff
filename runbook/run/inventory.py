"""Inventories and host patterns: which hosts exist, how they group, what to connect to.

Users already keep hosts in an Ansible inventory, so `--inventory FILE` reads it as
Ansible does and gives the answers `ansible-inventory` gives: the file is read as YAML
or INI the way Ansible's plugins pick (by extension, YAML falling back to INI); host
ranges (`web[01:20]`, `db-[a:f]`, `h[1:9:2]`) and `host:port` expand as Ansible's
parser expands them; group vars merge by depth, then `ansible_group_priority`, then
group name (later wins), `all` lowest and host vars highest; `ungrouped` holds the
hosts no other group has; and the connection vars are read as Ansible's ssh plugin
reads them (`ansible_ssh_host/port/user` beat `ansible_host/port/user`). The result is
normalised to transport options (`address`, `port`, `user`, `key_file`). Our own flat
YAML (`hosts:`, `groups:`, `vars:`) works too.

Targets name hosts with Ansible host patterns (`web:&prod`, `prod:!db`, `web[0:1]`,
`web*`, `~regex`, `all`, comma lists), and `--limit` narrows every target further; a
pattern that selects nothing is an error, never a literal host name. Every problem is
an InventoryError (exit 2) naming `file:line`, including everything Ansible refuses and
an inventory bigger than the documented bounds (MAX_HOSTS hosts per range pattern and
per inventory, MAX_GROUPS groups, MAX_MEMBERSHIPS group memberships), which are
checked arithmetically before anything is expanded. tests/run/test_inventory_differential.py
holds all of this to ansible-core itself; docs/hosts.md lists where we differ on purpose.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import fnmatch
import ipaddress
import math
import os
import re
import shlex
import string
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from runbook.contract import Host
from runbook.errors import InvalidInput
from runbook.load.model import Target

MAX_HOSTS = 10_000
"""Most hosts one range pattern (`web[1:N]`), one inventory and one target may stand for."""
MAX_GROUPS = 10_000
"""Most groups one inventory may hold."""
MAX_MEMBERSHIPS = 200_000
"""Most (group, host) pairs in an inventory, children expanded: 10,000 hosts in 20 groups.
The same bound holds for (group, ancestor group) pairs."""
MAX_FILE_BYTES = 16 * 1024 * 1024
"""Largest inventory file read."""

CONNECTION_VARS: Mapping[str, tuple[str, ...]] = {
    "address": ("ansible_host", "ansible_ssh_host"),
    "port": ("ansible_port", "ansible_ssh_port"),
    "user": ("ansible_user", "ansible_ssh_user"),
    "key_file": ("ansible_private_key_file", "ansible_ssh_private_key_file"),
}
"""Transport option -> the Ansible vars that set it; as in Ansible's ssh plugin, the last
one that is set (not null) wins once host and group vars are merged."""

_INVENTORY_REF = re.compile(r"^\s*\{\{\s*inventory\.([A-Za-z0-9_][A-Za-z0-9_.-]*)\s*\}\}\s*$")
_YAML_EXTENSIONS = ("", ".yaml", ".yml", ".json")  # what Ansible's yaml plugin accepts


class InventoryError(InvalidInput):
    """The inventory file is missing or malformed, or a target's hosts cannot be resolved."""


# -- addresses and ranges, as Ansible's parser reads a host entry ---------------------------
_NUMERIC_RANGE = r"\[[0-9]+:[0-9]+(?::[0-9]+)?\]"
_HEX_RANGE = r"\[[0-9a-f]+:[0-9a-f]+(?::[0-9]+)?\]"
_ALNUM_RANGE = r"\[(?:[a-z]:[a-z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]"
_V4_PART = rf"(?:[01]?[0-9]{{1,2}}|2[0-4][0-9]|25[0-5]|{_NUMERIC_RANGE})"
_V6_PART = rf"(?:[0-9a-f]{{1,4}}|{_HEX_RANGE})"
# A DNS-like label of word characters and dashes (or ranges), not ending in `-` or `_`.
_LABEL = rf"(?:\w|{_ALNUM_RANGE})(?:[\w-]|{_ALNUM_RANGE})*(?<![_-])"


def _ipv6_forms() -> str:
    """Every way of writing an IPv6 address (ranges allowed in place of a group)."""
    p, dotted = _V6_PART, rf"(?:{_V6_PART}\.){{3}}{_V6_PART}"
    forms = [rf"(?:{p}:){{7}}{p}", rf"(?:{p}:){{1,6}}:", rf":(?::{p}){{1,6}}", rf"{p}?::"]
    forms += [rf"(?:{p}:){{{left}}}(?::{p}){{1,{7 - left}}}" for left in range(1, 7)]
    forms += [rf"(?:0:){{6}}{dotted}", rf"::(?:ffff:)?{dotted}", rf"(?:0:){{5}}ffff:{dotted}"]
    return "|".join(forms)


_IPV4 = re.compile(rf"^(?:{_V4_PART}\.){{3}}{_V4_PART}$", re.I)
_IPV6 = re.compile(rf"^(?:{_ipv6_forms()})$", re.I)
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$", re.I)
_BRACKETED_PORT = re.compile(r"^\[(.+)\]:([0-9]+)$")
_HOST_PORT = re.compile(r"^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$")


def parse_address(text: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[host]:port` -> (host, port); ValueError if not an address.

    The host may be a name, an IPv4 or an IPv6 address, each with ranges in it; an
    IPv6 address takes a port only in brackets.
    """
    port = None
    for form in (_BRACKETED_PORT, _HOST_PORT):  # both, in turn, as Ansible does
        found = form.match(text)
        if found:
            text, port = found.group(1), int(found.group(2))
    if not (_IPV4.match(text) or _IPV6.match(text) or _HOSTNAME.match(text)):
        raise ValueError(f"not a host name or address: {text!r}")
    return text, port


class _RangeError(InventoryError):
    """A `[begin:end:step]` that Ansible refuses."""


@dataclass(frozen=True)
class _Span:
    """The values of one `[begin:end:step]`: letters, or numbers zero-filled to `width`."""

    letters: str | None = None
    numbers: range = range(0)
    width: int = 0

    def count(self) -> int:
        if self.letters is not None:
            return len(self.letters)
        r = self.numbers  # len(range) overflows past sys.maxsize: count arithmetically
        if r.step > 0:
            return max(0, (r.stop - r.start + r.step - 1) // r.step)
        return max(0, (r.start - r.stop - r.step - 1) // -r.step)

    def values(self) -> list[str]:
        if self.letters is not None:
            return list(self.letters)
        return [str(n).zfill(self.width) for n in self.numbers]


def _span(spec: str) -> _Span:
    bounds = spec.split(":")
    if len(bounds) not in (2, 3):
        raise _RangeError("host range must be begin:end or begin:end:step")
    begin, end = bounds[0] or "0", bounds[1]
    step = bounds[2] if len(bounds) == 3 else "1"
    if not end:
        raise _RangeError("host range must specify end value")
    width = 0
    if begin[0] == "0" and len(begin) > 1:
        if len(begin) != len(end):
            raise _RangeError("host range must specify equal-length begin and end formats")
        width = len(begin)
    letters = string.ascii_letters
    if begin in letters and end in letters:
        first, last = letters.index(begin), letters.index(end)
        if first > last:
            raise _RangeError("host range must have begin <= end")
        try:
            return _Span(letters=letters[first : last + 1 : int(step)], width=width)
        except ValueError:
            pass  # a bad step: read as numbers, which fails below as it does for Ansible
    try:
        numbers = range(int(begin), int(end) + 1, int(step))
    except ValueError as exc:
        raise _RangeError(f"invalid host range [{spec}]: {exc}") from None
    return _Span(numbers=numbers, width=width)


def _range_levels(pattern: str) -> tuple[list[tuple[str, _Span]], str]:
    """`db[1:2]-x[a:b]` -> ([('db', 1..2), ('-x', a..b)], '') without expanding anything.

    Ansible expands the first `[...]` and parses the rest of each name again, so the
    ranges are read left to right, and a range that stands for nothing ends the
    reading (what follows it is never looked at).
    """
    levels: list[tuple[str, _Span]] = []
    rest = pattern
    while "[" in rest:
        pieces = rest.replace("[", "|", 1).replace("]", "|", 1).split("|")
        if len(pieces) != 3:
            raise _RangeError("host range must be written [begin:end] or [begin:end:step]")
        head, spec, rest = pieces
        span = _span(spec)
        levels.append((head, span))
        if not span.count():
            return levels, ""
    return levels, rest


def expand_hosts(pattern: str, where: str) -> list[str]:
    """The host names a host entry stands for (`web[01:03]` -> web01, web02, web03).

    Sizes are computed before anything is expanded, so a hostile or mistyped range
    fails with its file:line instead of eating the memory.
    """
    try:
        levels, tail = _range_levels(pattern)
    except _RangeError as exc:
        raise InventoryError(f"{where}: host pattern '{pattern}': {exc}") from None
    counts = [span.count() for _, span in levels]
    total = math.prod(counts)
    if total > MAX_HOSTS:
        raise InventoryError(
            f"{where}: host pattern '{pattern}' expands to {total:,} hosts; "
            f"a pattern may expand to at most {MAX_HOSTS:,}"
        )
    names = [""]
    for head, span in levels:
        names = [name + head + value for name in names for value in span.values()]
    return [name + tail for name in names]


# -- the inventory model, as Ansible builds it ---------------------------------------------
@dataclass(frozen=True)
class Vaulted:
    """A `!vault` value: kept, never decrypted (runbook has no vault password)."""

    ciphertext: str


class Unsafe(str):
    """A `!unsafe` string: Ansible never templates it, so neither do we look for templates."""


@dataclass
class _Group:
    name: str
    where: str
    hosts: dict[str, None] = field(default_factory=dict)  # direct members, in order
    children: dict[str, str] = field(default_factory=dict)  # child -> where it was named
    parents: list[str] = field(default_factory=list)
    vars: dict[str, tuple[Any, str]] = field(default_factory=dict)  # name -> (value, where)
    priority: int = 1


class _Builder:
    """An Ansible inventory being read: groups, hosts, vars and children, then resolved."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.groups: dict[str, _Group] = {}
        self.hosts: dict[str, dict[str, tuple[Any, str]]] = {}
        self.entries = 0  # direct memberships, against MAX_MEMBERSHIPS
        self.links = 0  # child links, against MAX_MEMBERSHIPS
        self.edges: list[tuple[str, str]] = []  # child links in the order made
        for name in ("all", "ungrouped"):
            self.add_group(name, path)
        self.add_child("all", "ungrouped", path)
        self.links = 0

    def add_group(self, name: Any, where: str) -> str:
        if not name:
            raise InventoryError(f"{where}: a group name may not be empty ({name!r})")
        if not isinstance(name, str):
            raise InventoryError(f"{where}: group name {name!r} is not a string; quote it")
        if name not in self.groups:
            if len(self.groups) >= MAX_GROUPS:
                raise InventoryError(
                    f"{where}: an inventory may hold at most {MAX_GROUPS:,} groups"
                )
            self.groups[name] = _Group(name, where)
        return name

    def _count(self, added: int, where: str, what: str) -> None:
        self.entries += added
        if self.entries > MAX_MEMBERSHIPS:
            raise InventoryError(
                f"{where}: the inventory lists more than {MAX_MEMBERSHIPS:,} hosts in groups "
                f"({self.entries:,} with {what})"
            )

    def entry(self, pattern: Any, where: str, *, ini: bool = False) -> tuple[list[str], int | None]:
        """The hosts a host entry (`web[1:3]:2222`) stands for, and its port."""
        if not isinstance(pattern, str):
            raise InventoryError(
                f"{where}: host pattern {pattern!r} must be a string; quote numbers"
            )
        try:
            name, port = parse_address(pattern)
        except ValueError:
            name, port = pattern, None  # not an address: the whole text is the name
        if ini and port is None and pattern.strip().endswith(":"):
            raise InventoryError(
                f"{where}: invalid host pattern '{pattern}': it may not end in ':' "
                "(reserved for a port)"
            )
        names = expand_hosts(name, where) if "[" in name else [name]
        if ini and any(n.strip() == "---" for n in names):
            raise InventoryError(f"{where}: host '---' looks like YAML, not an INI inventory")
        return names, port

    def add_hosts(
        self,
        pattern: str,
        names: list[str],
        port: int | None,
        group: str,
        variables: Any,
        where: str,
    ) -> None:
        """The hosts of the entry `pattern` (from `entry()`): members of `group`, with vars."""
        if not isinstance(variables, Mapping):
            raise InventoryError(
                f"{where}: the vars of host '{pattern}' must be a mapping, "
                f"not {type(variables).__name__}"
            )
        self._count(len(names), where, f"'{pattern}'")
        fresh = len(self.hosts) + sum(1 for n in dict.fromkeys(names) if n not in self.hosts)
        if fresh > MAX_HOSTS:
            raise InventoryError(
                f"{where}: the inventory would hold {fresh:,} hosts with '{pattern}'; "
                f"an inventory may hold at most {MAX_HOSTS:,}"
            )
        for host in names:
            self.add_host(host, group, port, where)
            for key, value in variables.items():
                self.set_variable(host, key, value, where)

    def add_host(self, name: str, group: str, port: int | None, where: str) -> None:
        if not name:
            raise InventoryError(f"{where}: a host name may not be empty")
        if name not in self.hosts:
            self.hosts[name] = {}
            if port:  # a port counts only where the host is first seen, as in Ansible
                self.hosts[name]["ansible_port"] = (port, where)
            if len(self.hosts) > MAX_HOSTS:
                raise InventoryError(
                    f"{where}: an inventory may hold at most {MAX_HOSTS:,} hosts ('{name}')"
                )
        self.groups[group].hosts.setdefault(name)

    def set_variable(self, entity: str, key: Any, value: Any, where: str) -> None:
        """A var of a group or else a host, as Ansible sets it.

        A host with a group's name gives its vars to the group, as Ansible does
        (and warns about).
        """
        key = key if isinstance(key, str) else str(key)
        group = self.groups.get(entity)
        if group is None:
            self.hosts[entity][key] = (value, where)
        elif key == "ansible_group_priority":
            try:
                group.priority = int(value)
            except (TypeError, ValueError):
                raise InventoryError(
                    f"{where}: ansible_group_priority of group '{entity}' must be an "
                    f"integer, not {value!r}"
                ) from None
        else:
            group.vars[key] = (value, where)

    def add_child(self, parent: str, child: str, where: str) -> None:
        group = self.groups[parent]
        if child in group.children:
            return
        self.links += 1
        if self.links > MAX_MEMBERSHIPS:
            raise InventoryError(
                f"{where}: the inventory links groups more than {MAX_MEMBERSHIPS:,} times"
            )
        group.children[child] = where
        if parent not in self.groups[child].parents:
            self.groups[child].parents.append(parent)
        self.edges.append((parent, child))

    # -- resolving ----------------------------------------------------------------------
    def build(self, beside: Path | None = None) -> Inventory:
        """Ansible's rules once everything is read: `all`, `ungrouped`, depth, vars.

        `beside` is the inventory's directory: its group_vars/ and host_vars/ are read.
        """
        for name, group in list(self.groups.items()):
            if name != "all" and not group.parents:
                self.add_child("all", name, group.where)
        order = self._parents_first()
        depth: dict[str, int] = {}
        closure: dict[str, frozenset[str]] = {}  # a group and its ancestors
        pairs = 0
        for name in order:
            parents = self.groups[name].parents
            depth[name] = max((depth[p] + 1 for p in parents), default=0)
            closure[name] = frozenset([name]).union(*(closure[p] for p in parents))
            pairs += len(closure[name])
            if pairs > MAX_MEMBERSHIPS:
                raise InventoryError(
                    f"{self.groups[name].where}: groups nest too much: more than "
                    f"{MAX_MEMBERSHIPS:,} (group, ancestor) pairs with group '{name}'"
                )
        self._settle_ungrouped(closure)
        members = self._members(order)
        host_groups: dict[str, list[str]] = {h: [] for h in self.hosts}
        for name, hosts in members.items():
            if name != "all":
                for host in hosts:
                    host_groups[host].append(name)
        rank = {name: (depth[name], group.priority, name) for name, group in self.groups.items()}
        files = _VarsFiles(beside)
        variables: dict[str, dict[str, Any]] = {}
        resolved: dict[str, Host] = {}
        problems: dict[str, str] = {}
        for host, own in self.hosts.items():
            # Ansible's order: `all`, the other groups (sorted), then the same from
            # group_vars/ files, then the host's own vars and its host_vars/ file
            ranked = sorted(host_groups[host], key=rank.__getitem__)
            merged = dict(self.groups["all"].vars)
            for name in ranked:
                merged.update(self.groups[name].vars)
            for name in ("all", *ranked):
                merged.update(files.read("group_vars", name))
            merged.update(own)
            merged.update(files.read("host_vars", host))
            variables[host] = {key: value for key, (value, _) in merged.items()}
            options, problem = _connection(merged)
            resolved[host] = Host(host, options)
            if problem:
                problems[host] = problem
        return Inventory(resolved, members, self.path, variables, problems)

    def _parents_first(self) -> list[str]:
        """Every group after all its parents; InventoryError naming the link that loops."""
        waiting = {name: len(group.parents) for name, group in self.groups.items()}
        ready = [name for name, count in waiting.items() if count == 0]
        order: list[str] = []
        while ready:
            name = ready.pop()
            order.append(name)
            for child in self.groups[name].children:
                waiting[child] -= 1
                if waiting[child] == 0:
                    ready.append(child)
        if len(order) < len(self.groups):
            self._cycle({name for name, count in waiting.items() if count > 0})
        return order

    def _cycle(self, stuck: set[str]) -> NoReturn:
        """Name the link, made last, that closes a loop of groups."""
        for parent, child in reversed(self.edges):
            if parent in stuck and child in stuck:
                path = self._path(child, parent, stuck)
                if path:
                    where = self.groups[parent].children[child]
                    loop = " -> ".join([*path, child])
                    raise InventoryError(f"{where}: group '{child}' is its own child ({loop})")
        raise InventoryError(f"{self.path}: groups {sorted(stuck)} are their own children")

    def _path(self, start: str, goal: str, within: set[str]) -> list[str] | None:
        """A chain of children from `start` down to `goal` (depth-first), or None."""
        stack, seen = [[start]], {start}
        while stack:
            path = stack.pop()
            if path[-1] == goal:
                return path
            for child in self.groups[path[-1]].children:
                if child in within and child not in seen:
                    seen.add(child)
                    stack.append([*path, child])
        return None

    def _settle_ungrouped(self, closure: Mapping[str, frozenset[str]]) -> None:
        """`ungrouped` holds exactly the hosts no group but `all` holds (Ansible's reconcile)."""
        direct: dict[str, list[str]] = {h: [] for h in self.hosts}
        for name, group in self.groups.items():
            for host in group.hosts:
                direct[host].append(name)
        ungrouped = self.groups["ungrouped"].hosts
        for host, names in direct.items():
            mine = frozenset().union(*(closure[n] for n in names))
            if "ungrouped" in mine:
                if mine - {"all", "ungrouped"}:
                    ungrouped.pop(host, None)
            elif mine <= {"all"}:
                ungrouped.setdefault(host)

    def _members(self, order: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """Each group's hosts, children included, in Ansible's order.

        Its own hosts, then its children's, then their children's (breadth first),
        each group's in file order. Counted as they grow, against MAX_MEMBERSHIPS.
        """
        members: dict[str, tuple[str, ...]] = {}
        total = 0
        for name, group in self.groups.items():
            seen, level, ordered = {name}, [name], [name]
            while level:
                below = []
                for parent in level:
                    for child in self.groups[parent].children:
                        if child not in seen:
                            seen.add(child)
                            below.append(child)
                ordered += below
                level = below
            hosts: dict[str, None] = {}
            for kid in ordered:
                hosts.update(self.groups[kid].hosts)
            members[name] = tuple(hosts)
            if name != "all":
                total += len(hosts)
                if total > MAX_MEMBERSHIPS:
                    kids = list(group.children.values())
                    raise InventoryError(
                        f"{kids[0] if kids else group.where}: groups hold {total:,} hosts "
                        f"once children are expanded (with group '{name}'); an inventory may "
                        f"hold at most {MAX_MEMBERSHIPS:,} group memberships"
                    )
        return members


class _VarsFiles:
    """group_vars/ and host_vars/ beside the inventory, as Ansible's host_group_vars reads them.

    For a group or host NAME: the file NAME, NAME.yml, NAME.yaml or NAME.json (the first
    that exists), or, if that is a directory, every such file in it, recursively and
    sorted (hidden files and `~` backups skipped); each a YAML mapping of vars, later
    files winning. Vault-encrypted files are skipped: runbook has no vault password.
    At most MAX_FILE_BYTES are read in all.
    """

    EXTENSIONS = (".yml", ".yaml", ".json")

    def __init__(self, beside: Path | None) -> None:
        kinds = ("group_vars", "host_vars")
        self.dirs = {k: beside / k for k in kinds if beside and (beside / k).is_dir()}
        self.budget = MAX_FILE_BYTES
        self.cache: dict[tuple[str, str], dict[str, tuple[Any, str]]] = {}

    def read(self, kind: str, name: str) -> dict[str, tuple[Any, str]]:
        directory = self.dirs.get(kind)
        if directory is None or not name or "/" in name or name in (".", ".."):
            return {}
        if (kind, name) not in self.cache:
            found: list[Path] = []
            for extension in ("", *self.EXTENSIONS):
                candidate = directory / (name + extension)
                if candidate.exists():
                    found = self._walk(candidate) if candidate.is_dir() else [candidate]
                    break
            merged: dict[str, tuple[Any, str]] = {}
            for path in found:
                merged.update(self._load(path))
            self.cache[kind, name] = merged
        return self.cache[kind, name]

    def _walk(self, directory: Path) -> list[Path]:
        found = []
        for entry in sorted(os.listdir(directory)):
            if entry.startswith(".") or entry.endswith("~"):
                continue
            path, extension = directory / entry, os.path.splitext(entry)[1]
            if path.is_dir() and not extension:
                found += self._walk(path)
            elif path.is_file() and (not extension or extension in self.EXTENSIONS):
                found.append(path)
        return found

    def _load(self, path: Path) -> dict[str, tuple[Any, str]]:
        import yaml

        try:
            with open(path, "rb") as handle:
                data = handle.read(self.budget + 1)
        except OSError as exc:
            raise InventoryError(f"{path}: cannot read vars file: {exc}") from None
        self.budget -= len(data)
        if self.budget < 0:
            raise InventoryError(
                f"{path}: vars files beside the inventory are over "
                f"{MAX_FILE_BYTES // (1024 * 1024)} MiB in all"
            )
        if data.lstrip().startswith(b"$ANSIBLE_VAULT;"):
            return {}
        root, loader = _compose_yaml(data, str(path))
        try:
            if root is None or _is_null(root):
                return {}
            if not isinstance(root, yaml.MappingNode):
                raise InventoryError(f"{path}:1: a vars file is a mapping of var names to values")
            reader = _YamlNodes(loader, str(path))
            return {
                str(key): (reader.value(value_node), reader.where(key_node))
                for key, key_node, value_node in reader.pairs(root)
            }
        except yaml.YAMLError as exc:
            raise _yaml_error(exc, str(path)) from None
        finally:
            loader.dispose()


def _connection(merged: Mapping[str, tuple[Any, str]]) -> tuple[dict[str, Any], str | None]:
    """Transport options from merged Ansible vars, and why they cannot be used, if so."""
    options: dict[str, Any] = {}
    for option, names in CONNECTION_VARS.items():
        chosen = None
        for var in names:  # the ssh plugin takes the last of its names that is set
            if merged.get(var, (None, ""))[0] is not None:
                chosen = var
        if chosen is None:
            continue
        value, where = merged[chosen]
        problem = _unusable(option, value)
        if problem:
            return {}, f"{where}: {chosen} {problem}"
        options[option] = int(str(value)) if option == "port" else str(value)
    return options, None


def _unusable(option: str, value: Any) -> str | None:
    if isinstance(value, Vaulted):
        return "is vault-encrypted; runbook cannot decrypt it: set it in plain text"
    templated = isinstance(value, str) and ("{{" in value or "{%" in value)
    if templated and not isinstance(value, Unsafe):
        return f"{value!r} is a Jinja template; runbook does not render inventory templates"
    if option == "port":
        text = str(value).strip() if isinstance(value, str | int) else ""
        if isinstance(value, bool) or not re.fullmatch("[0-9]{1,5}", text) or int(text) > 65535:
            return f"{value!r} is not a port number (1-65535)"
    elif not isinstance(value, str | int | float) or isinstance(value, bool) or value == "":
        return f"{value!r} is not usable as the {option}"
    return None


# -- reading files ----------------------------------------------------------------------------
def load_inventory(path: str | Path) -> Inventory:
    """Read an inventory file as Ansible would (YAML or INI); InventoryError on any problem.

    Like Ansible's plugins: a file named `.yaml`, `.yml`, `.json` or with no extension
    is read as YAML, and as INI if that fails; any other is INI. Our flat YAML
    (`hosts:`/`groups:` at the top) is recognised by its keys.
    """
    name = str(path)
    if os.path.isdir(path):
        raise InventoryError(f"{name}: is a directory; give an inventory file")
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise InventoryError(f"{name}: inventory file not found") from None
    except OSError as exc:
        raise InventoryError(f"{name}: cannot read inventory: {exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise InventoryError(
            f"{name}: inventory file is over {MAX_FILE_BYTES // (1024 * 1024)} MiB"
        )
    extension = os.path.splitext(name)[1]
    if extension == ".toml":
        raise InventoryError(f"{name}: TOML inventories are not supported; use INI or YAML")
    beside = Path(os.path.realpath(name)).parent
    if extension not in _YAML_EXTENSIONS:
        return _load_ini(data, name, beside)
    try:
        return _load_yaml(data, name, beside)
    except InventoryError as yaml_error:
        try:
            return _load_ini(data, name, beside)
        except InventoryError as ini_error:
            raise (ini_error if extension == "" and _looks_ini(data) else yaml_error) from None


def _looks_ini(data: bytes) -> bool:
    """Which of the two errors to show for a file with no extension that is neither."""
    for raw in data.splitlines():
        line = raw.strip()
        if line and line[:1] not in (b"#", b";"):
            return line.startswith(b"[") or b":" not in line.split()[0]
    return False


# -- INI ----------------------------------------------------------------------------------------
_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")


def _ini_lines(data: bytes, name: str) -> list[str]:
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        pass
    lines = []  # as Ansible: comment lines may be in any encoding, the rest is UTF-8
    for number, raw in enumerate(data.splitlines(), 1):
        if raw[:1] in (b"#", b";"):
            lines.append("")
            continue
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise InventoryError(f"{name}:{number}: the line is not UTF-8 text") from None
    return lines


def _load_ini(data: bytes, name: str, beside: Path | None = None) -> Inventory:
    builder = _Builder(name)
    # group -> (line it was named on, 'vars' or 'children', parents naming it)
    pending: dict[str, tuple[str, str, list[str]]] = {}
    group, kind = "ungrouped", "hosts"
    for number, raw_line in enumerate(_ini_lines(data, name), 1):
        where = f"{name}:{number}"
        line = raw_line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("\ufeff"):
            raise InventoryError(f"{where}: the file starts with a byte-order mark; remove it")
        header = _SECTION.match(line)
        if header:
            group, kind = header.group(1), header.group(2) or "hosts"
            if kind not in ("hosts", "children", "vars"):
                raise InventoryError(
                    f"{where}: unknown section kind ':{kind}' in [{group}:{kind}] "
                    "(expected [group], [group:vars] or [group:children])"
                )
            if group not in builder.groups:
                # [g:vars] alone does not declare g: [g] or [g:children] must, somewhere
                if kind == "vars" and group not in pending:
                    pending[group] = (where, "vars", [])
                builder.add_group(group, where)
            if group in pending and kind != "vars":
                if pending[group][1] == "children":
                    _declare(builder, group, pending)
                else:
                    del pending[group]
            continue
        if line.startswith("[") and line.endswith("]"):
            raise InventoryError(
                f"{where}: invalid section {line!r}: a section is [group], [group:vars] or "
                "[group:children], with no spaces"
            )
        if kind == "hosts":
            _ini_host_line(builder, group, line, where)
        elif kind == "vars":
            key, sep, value = line.partition("=")
            if not sep:
                raise InventoryError(f"{where}: expected key=value, got {line!r}")
            builder.set_variable(group, key.strip(), _ini_value(value.strip(), where), where)
        else:
            named = _GROUP_NAME.match(line)
            if not named:
                raise InventoryError(f"{where}: expected a group name, got {line!r}")
            child = named.group(1)
            if child in builder.groups:
                builder.add_child(group, child, where)
            elif child in pending:
                pending[child][2].append(group)
            else:
                pending[child] = (where, "children", [group])
    for undefined, (where, kind, parents) in pending.items():
        if kind == "vars":
            raise InventoryError(
                f"{where}: section [{undefined}:vars] is for group '{undefined}', which no "
                f"[{undefined}] or [{undefined}:children] section declares"
            )
        raise InventoryError(
            f"{where}: section [{parents[-1]}:children] names group '{undefined}', which no "
            f"[{undefined}] or [{undefined}:children] section declares"
        )
    return builder.build(beside)


def _declare(builder: _Builder, group: str, pending: dict[str, tuple[str, str, list[str]]]) -> None:
    """A group named under [parent:children] before its own section: link it now."""
    where, _, parents = pending[group]
    for parent in parents:
        builder.add_child(parent, group, where)
        if parent in pending and pending[parent][1] == "children":
            _declare(builder, parent, pending)
    pending.pop(group, None)


def _ini_host_line(builder: _Builder, group: str, line: str, where: str) -> None:
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as exc:
        raise InventoryError(f"{where}: cannot parse host line {line!r}: {exc}") from None
    if not tokens:
        raise InventoryError(f"{where}: expected a host, got {line!r}")
    names, port = builder.entry(tokens[0], where, ini=True)  # first, as in Ansible
    variables = {}
    for token in tokens[1:]:
        key, sep, value = token.partition("=")
        if not sep:
            raise InventoryError(
                f"{where}: expected key=value host variable assignment, got {token!r}"
            )
        variables[key] = _ini_value(value, where)
    builder.add_hosts(tokens[0], names, port, group, variables, where)


def _ini_value(text: str, where: str) -> Any:
    """An INI value as Ansible reads it: a Python literal if it is one, else the text."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text
    except TypeError as exc:  # e.g. {[1]: 2}: an unhashable key, which Ansible refuses too
        raise InventoryError(f"{where}: cannot read value {text!r}: {exc}") from None
    return _plain(value)


def _plain(value: Any) -> Any:
    """A literal as Ansible keeps it: lists for tuples and sets, text for bytes and complex."""
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if value is ...:
        return "..."
    if isinstance(value, complex):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value


# -- YAML ---------------------------------------------------------------------------------------
def _yaml_loader() -> type[Any]:
    """PyYAML's safe loader, YAML 1.1 as Ansible reads it, with `!vault` and `!unsafe`."""
    import yaml

    base = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader

    class InventoryLoader(base):  # type: ignore[valid-type,misc]
        pass

    def vault(loader: Any, node: Any) -> Vaulted:
        return Vaulted(str(loader.construct_scalar(node)))

    def unsafe(loader: Any, node: Any) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return Unsafe(loader.construct_scalar(node))
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        return loader.construct_mapping(node, deep=True)

    InventoryLoader.add_constructor("!vault", vault)
    InventoryLoader.add_constructor("!unsafe", unsafe)
    return InventoryLoader


class _YamlNodes:
    """Reads YAML nodes one at a time, so errors name their line."""

    def __init__(self, loader: Any, name: str) -> None:
        self.loader, self.name = loader, name

    def where(self, node: Any) -> str:
        return f"{self.name}:{node.start_mark.line + 1}"

    def pairs(self, node: Any) -> list[tuple[Any, Any, Any]]:
        """(key, key node, value node) of a mapping node, merge keys (<<) applied."""
        self.loader.flatten_mapping(node)
        out = []
        for key_node, value_node in node.value:
            key = self.value(key_node)
            if not isinstance(key, Hashable):
                raise InventoryError(f"{self.where(key_node)}: a mapping key must be a plain value")
            out.append((key, key_node, value_node))
        return out

    def value(self, node: Any) -> Any:
        return self.loader.construct_object(node, deep=True)

    def section(self, node: Any) -> Any:
        """A group's hosts/children/vars: a mapping node, or None (a string is one key)."""
        import yaml

        if isinstance(node, yaml.ScalarNode):
            scalar = self.value(node)
            if scalar is None:
                return None
            if isinstance(scalar, str):  # `hosts: web1` means `hosts: {web1: }`
                key = yaml.ScalarNode("tag:yaml.org,2002:str", scalar, node.start_mark)
                null = yaml.ScalarNode("tag:yaml.org,2002:null", "", node.start_mark)
                return yaml.MappingNode("tag:yaml.org,2002:map", [(key, null)], node.start_mark)
        return node


class _YamlReader(_YamlNodes):
    """Walks the YAML nodes of an Ansible YAML inventory into a builder."""

    def __init__(self, loader: Any, builder: _Builder, name: str) -> None:
        super().__init__(loader, name)
        self.builder = builder

    def group(self, name: Any, key_node: Any, node: Any) -> str:
        import yaml

        where = self.where(key_node)
        data = None if node is None or _is_null(node) else node
        if data is not None and not isinstance(data, yaml.MappingNode):
            raise InventoryError(
                f"{where}: group '{name}' must be a mapping of hosts, children and vars "
                "(Ansible skips it with a warning)"
            )
        group = self.builder.add_group(name, where)
        if data is None:
            return group
        entries = self.pairs(data)
        sections: dict[str, Any] = {}
        for key, section_node, value_node in entries:
            if key not in ("hosts", "children", "vars"):
                raise InventoryError(
                    f"{self.where(section_node)}: group '{group}' has key '{key}'; only hosts, "
                    "children and vars are valid (Ansible skips it with a warning)"
                )
            section = self.section(value_node)
            if section is not None and not isinstance(section, yaml.MappingNode):
                raise InventoryError(
                    f"{self.where(section_node)}: the {key} of group '{group}' must be a mapping"
                )
            sections[key] = section
        for key, section in sections.items():
            if section is None:
                continue
            if key == "vars":
                for var, var_node, value_node in self.pairs(section):
                    self.builder.set_variable(
                        group, var, self.value(value_node), self.where(var_node)
                    )
            elif key == "children":
                for child, child_node, value_node in self.pairs(section):
                    value = None if _is_null(value_node) else value_node
                    child = self.group(child, child_node, value)
                    self.builder.add_child(group, child, self.where(child_node))
            else:
                for pattern, host_node, value_node in self.pairs(section):
                    where = self.where(host_node)
                    names, port = self.builder.entry(pattern, where)
                    variables = self.value(value_node) or {}
                    self.builder.add_hosts(pattern, names, port, group, variables, where)
        return group


def _reject_duplicate_keys(root: Any, name: str) -> None:
    """A key written twice in one mapping is an error (Ansible warns and keeps the last)."""
    import yaml

    stack, seen = [root], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], Any] = {}
            for key_node, value_node in node.value:
                stack += [key_node, value_node]
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(
                    key_node, yaml.ScalarNode
                ):
                    continue
                earlier = first.setdefault((key_node.tag, key_node.value), key_node)
                if earlier is not key_node:
                    raise InventoryError(
                        f"{name}:{key_node.start_mark.line + 1}: duplicate key "
                        f"'{key_node.value}' (first on line {earlier.start_mark.line + 1})"
                    )


def _is_null(node: Any) -> bool:
    import yaml

    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _compose_yaml(data: bytes, name: str) -> tuple[Any, Any]:
    """The root node of a YAML file (None if empty) and its loader (dispose it after).

    Bounded (aliases, depth) and without duplicate keys; InventoryError otherwise.
    """
    import yaml

    from runbook.load.marked_yaml import YamlProblem, check_bounds

    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InventoryError(f"{name}:1: the file is not UTF-8 text") from None
    loader = _yaml_loader()(text)
    try:
        root = loader.get_single_node()
        if root is not None:
            check_bounds(root, aliases="*" in text)
            _reject_duplicate_keys(root, name)
    except yaml.YAMLError as exc:
        loader.dispose()
        raise _yaml_error(exc, name) from None
    except YamlProblem as exc:
        loader.dispose()
        raise InventoryError(f"{name}:{exc.position.line}: {exc.message}") from None
    except InventoryError:
        loader.dispose()
        raise
    return root, loader


def _yaml_error(exc: Exception, name: str) -> InventoryError:
    import yaml

    if not isinstance(exc, yaml.MarkedYAMLError):
        return InventoryError(f"{name}:1: {exc}")
    mark, start = exc.problem_mark or exc.context_mark, exc.context_mark
    line = f"{mark.line + 1}:{mark.column + 1}" if mark else "1"
    message = exc.problem or exc.context or "invalid YAML"
    if exc.problem and exc.context and start is not None:
        message += f" ({exc.context} that starts at line {start.line + 1})"
    return InventoryError(f"{name}:{line}: {message}")


def _load_yaml(data: bytes, name: str, beside: Path | None = None) -> Inventory:
    import yaml

    root, loader = _compose_yaml(data, name)
    try:
        if isinstance(root, yaml.MappingNode):
            keys = {k.value for k, _ in root.value if isinstance(k, yaml.ScalarNode)}
            if "hosts" in keys or "groups" in keys:
                return _load_flat(data, name)
        tree = None if root is None else loader.construct_object(root, deep=True)
        if not tree:
            raise InventoryError(f"{name}:1: the inventory is empty")
        if not isinstance(tree, dict):
            raise InventoryError(
                f"{name}:1: a YAML inventory is a mapping of groups (all: ...), "
                f"not {type(tree).__name__}"
            )
        if tree.get("plugin"):
            raise InventoryError(
                f"{name}:1: inventory plugins (plugin: {tree['plugin']}) are not supported; "
                "give an INI or YAML inventory file"
            )
        builder = _Builder(name)
        reader = _YamlReader(loader, builder, name)
        for group, key_node, value_node in reader.pairs(root):
            reader.group(group, key_node, None if _is_null(value_node) else value_node)
        return builder.build(beside)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, name) from None
    finally:
        loader.dispose()


def _load_flat(data: bytes, name: str) -> Inventory:
    """Our flat YAML: `hosts: {name: {address, port, user, ...}}`, `groups:`, `vars:`."""
    from runbook.errors import InvalidRunbook
    from runbook.load.marked_yaml import locate, parse_yaml_bytes

    try:
        tree = parse_yaml_bytes(data, name)
    except InvalidRunbook as exc:
        raise InventoryError(str(exc)) from None

    def where(*path: Any) -> str:
        return f"{name}:{locate(tree, path).line}"

    hosts, groups = tree.get("hosts") or {}, tree.get("groups") or {}
    if not isinstance(hosts, dict) or not isinstance(groups, dict):
        raise InventoryError(f"{where('hosts')}: hosts and groups are mappings")
    builder = _Builder(name)
    own: dict[str, dict[str, Any]] = {}
    for host, raw in hosts.items():
        if raw is not None and not isinstance(raw, dict):
            raise InventoryError(f"{where('hosts', host)}: host '{host}' vars must be a mapping")
        for expanded in expand_hosts(str(host), where("hosts", host)):
            builder.add_host(expanded, "ungrouped", None, where("hosts", host))
            own.setdefault(expanded, {}).update(_flat_options(raw or {}))
    for group in groups:
        builder.add_group(str(group), where("groups", group))
    for group, members in groups.items():
        if not isinstance(members, list):
            raise InventoryError(
                f"{where('groups', group)}: group '{group}' must list host or group names"
            )
        for member in map(str, members):
            if member in groups:
                builder.add_child(str(group), member, where("groups", group))
            elif member in builder.hosts:
                builder.add_host(member, str(group), None, where("groups", group))
            else:
                raise InventoryError(
                    f"{where('groups', group)}: group '{group}' names unknown host '{member}'"
                )
    built = builder.build()
    defaults = _flat_options(tree.get("vars") or {})
    resolved = {h: Host(h, {**defaults, **own[h]}) for h in built.hosts}
    return dataclasses.replace(
        built, hosts=resolved, variables={h: host.vars for h, host in resolved.items()}
    )


def _flat_options(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Our own option names, with Ansible's connection var names understood too."""
    aliases = {var: option for option, names in CONNECTION_VARS.items() for var in names}
    return {aliases.get(str(k), str(k)): v for k, v in raw.items()}


# -- the inventory and host patterns -----------------------------------------------------------
@dataclass(frozen=True)
class Inventory:
    """Hosts by name, groups as ordered host-name lists (children expanded), and patterns.

    `groups` holds every group, `all` and `ungrouped` included, in the order Ansible
    creates them; `variables` holds each host's vars merged as Ansible merges them;
    `problems` says why a host's connection vars cannot be used (a target naming the
    host fails with it). `limit` is `--limit`, and `allowed` the hosts it selects.
    """

    hosts: Mapping[str, Host]
    groups: Mapping[str, tuple[str, ...]]
    path: str = ""
    variables: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    problems: Mapping[str, str] = field(default_factory=dict)
    limit: str | None = None
    allowed: frozenset[str] | None = None

    def members(self, name: str) -> list[Host] | None:
        """The hosts a name stands for (a host, else a group), or None if unknown."""
        if name in self.hosts:
            return [self.hosts[name]]
        if name in self.groups:
            return [self.hosts[h] for h in self.groups[name]]
        return None

    def select(self, patterns: Sequence[str], who: str) -> list[Host]:
        """The hosts Ansible host patterns select, in Ansible's order.

        Each entry may hold several patterns (`web:&prod`, `a,b`); `{{ inventory.X }}`
        is exactly the group or host X. A pattern that matches nothing is an error
        (Ansible warns and goes on), except an IP address or `localhost`, which
        stands for itself as in a target without an inventory.
        """
        if not patterns:  # not `all`: Ansible selects nothing for an empty list too
            raise InventoryError(f"{who}: names no host (an empty list)")
        parts: list[tuple[str, bool]] = []
        for entry in patterns:
            ref = _INVENTORY_REF.match(entry)
            split = [ref.group(1)] if ref else split_pattern(entry)
            if not split:
                raise InventoryError(f"{who}: empty host pattern {entry!r}")
            parts += [(p, ref is not None) for p in split]
        names = self._evaluate(parts, who)
        if not names:
            raise InventoryError(
                f"{who}: {', '.join(map(repr, patterns))} select no host in inventory {self.path}"
            )
        return [self.hosts.get(n) or Host(n) for n in names]

    def limited(self, pattern: str) -> Inventory:
        """This inventory with `--limit PATTERN`: every target keeps only the hosts it selects."""
        who = f"--limit '{pattern}'"
        parts: list[str] = []
        for part in split_pattern(pattern):
            if part.startswith("@"):  # a file of patterns, one a line (e.g. a retry file)
                try:
                    text = Path(part[1:]).read_text(encoding="utf-8")
                except OSError as exc:
                    raise InventoryError(f"{who}: cannot read {part[1:]}: {exc}") from None
                parts += [line.strip() for line in text.splitlines() if line.strip()]
            else:
                parts.append(part)
        if not parts:
            raise InventoryError(f"{who}: the pattern is empty")
        names = self._evaluate([(p, False) for p in parts], who)
        if not names:
            raise InventoryError(f"{who}: selects no host in inventory {self.path}")
        return dataclasses.replace(self, limit=pattern, allowed=frozenset(names))

    def _evaluate(self, parts: Sequence[tuple[str, bool]], who: str) -> list[str]:
        """Ansible's order: plain patterns, then `&` intersections, then `!` exclusions."""
        plain = [p for p in parts if p[0][:1] not in ("&", "!")]
        ordered = (
            (plain or [("all", False)])
            + [p for p in parts if p[0][:1] == "&"]
            + [p for p in parts if p[0][:1] == "!"]
        )
        selected: dict[str, None] = {}
        for text, exact in ordered:
            if text in self.hosts:
                selected.setdefault(text)
                continue
            operator, body = (text[0], text[1:]) if text[:1] in ("&", "!") else ("", text)
            matched = self._match(body, exact, who)
            if operator == "!":
                for name in matched:
                    selected.pop(name, None)
            elif operator == "&":
                keep = set(matched)
                selected = {name: None for name in selected if name in keep}
            else:
                selected.update(dict.fromkeys(matched))
        return list(selected)

    def _match(self, pattern: str, exact: bool, who: str) -> list[str]:
        if not pattern:
            raise InventoryError(f"{who}: empty host pattern")
        if exact:
            members = self.members(pattern)
            if members is None:
                self._unknown(pattern, who)
            return [h.name for h in members]
        expr, subscript = _split_subscript(pattern)
        hosts, found = self._enumerate(expr, who)
        if not found:
            if subscript is None and _is_literal_address(expr):
                return [expr]
            if not any(c in expr for c in "*?[~") and subscript is None:
                self._unknown(expr, who)
            raise InventoryError(
                f"{who}: host pattern '{pattern}' matches no host or group in inventory {self.path}"
            )
        if subscript is None or not hosts:
            return hosts
        start, end = subscript
        if end:
            return hosts[start : (len(hosts) - 1 if end == -1 else end) + 1]
        if not -len(hosts) <= start < len(hosts):
            raise InventoryError(
                f"{who}: host pattern '{pattern}': '{expr}' has {len(hosts)} hosts, "
                f"none at index {start}"
            )
        return [hosts[start]]

    def _enumerate(self, pattern: str, who: str) -> tuple[list[str], bool]:
        """Hosts of the groups a pattern matches, and hosts it matches by name.

        Host names are matched when no group matched, or when the pattern is a
        regex or glob (or has a dot); the flag says whether anything matched at all.
        A `~regex` matches at the start of a name, as `re.match`, but runs on RE2
        (runbook/expr/patterns.py), so no pattern can hang on a hostile name.
        """
        from runbook.expr.patterns import PatternError, compile_pattern

        matches: Callable[[str], object]
        try:
            if pattern.startswith("~"):
                re.compile(pattern[1:])  # Python's syntax, e.g. unbalanced parentheses
                matches = compile_pattern(rf"\A(?:{pattern[1:]})").search
            else:
                matches = re.compile(fnmatch.translate(pattern)).match
        except (re.error, PatternError) as exc:
            raise InventoryError(f"{who}: invalid host pattern '{pattern}': {exc}") from None
        groups = [name for name in self.groups if matches(name)]
        hosts = [h for name in groups for h in self.groups[name]]
        if not groups or pattern[0] == "~" or any(c in pattern for c in ".?*["):
            hosts += [name for name in self.hosts if matches(name)]
        return hosts, bool(groups or hosts)

    def _unknown(self, name: str, who: str) -> NoReturn:
        known = sorted(set(self.groups) | set(self.hosts))
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise InventoryError(f"{who}: no host or group '{name}' in inventory {self.path}{hint}")


_SUBSCRIPT = re.compile(r"^(.+)\[(?:(-?[0-9]+)|([0-9]+)([:-])([0-9]*))\]$")
_PATTERN_WORDS = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")


def split_pattern(pattern: str) -> list[str]:
    """`'web:&prod'` -> ['web', '&prod']; `'a, b'` -> ['a', 'b'] (Ansible's rules).

    Commas separate patterns; without a comma, colons and spaces do, unless the
    whole text is one address (`::1`, `web[1:3]`, `db:5432` stay whole).
    """
    if "," in pattern:
        parts = pattern.split(",")
    else:
        try:
            parse_address(pattern)
            parts = [pattern]
        except ValueError:
            parts = _PATTERN_WORDS.findall(pattern)
    return [p.strip() for p in parts if p.strip()]


def _split_subscript(pattern: str) -> tuple[str, tuple[int, int | None] | None]:
    """`web[0:2]` -> ('web', (0, 2)); `web[-1]` -> ('web', (-1, None)); `web[1:]` -> (1, -1)."""
    if pattern.startswith("~"):
        return pattern, None
    found = _SUBSCRIPT.match(pattern)
    if not found:
        return pattern, None
    expr, index, start, _, end = found.groups()
    if index:
        return expr, (int(index), None)
    return expr, (int(start), int(end) if end else -1)


def _is_literal_address(name: str) -> bool:
    if name == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _literal_host(entry: str, who: str) -> Host:
    """A host named in a target when there is no inventory: a plain name or address."""
    if _INVENTORY_REF.match(entry):
        raise InventoryError(
            f"{who} uses '{entry}', which needs an inventory: pass --inventory FILE"
        )
    name = entry.strip()
    try:
        host, port = parse_address(name)
    except ValueError:
        host, port = "", None
    if not host or port is not None or "[" in host or name == "all":
        raise InventoryError(
            f"{who}: '{entry}' is not a host name or address; host patterns (web*, "
            "web:&prod, web[0]) select hosts from an inventory: pass --inventory FILE"
        )
    return Host(name)


def resolve_hosts(
    target: Target, inventory: Inventory | None, *, remote: bool = True
) -> list[Host]:
    """The target's hosts: host patterns over the inventory (then `--limit`), or names.

    A target of a transport that runs here (`remote=False`) may name no hosts:
    it then means this machine, `localhost`.
    """
    raw = target.options.get("hosts", target.options.get("host"))
    who = f"target '{target.name}'"
    if raw is None:
        if not remote:
            return [Host("localhost")]
        raise InventoryError(f"{who} ({target.transport}) names no hosts: add `hosts: [...]`")
    entries = [str(e) for e in raw] if isinstance(raw, list | tuple) else [str(raw)]
    if inventory is None:
        hosts = list({h.name: h for h in (_literal_host(e, who) for e in entries)}.values())
    else:
        hosts = inventory.select(entries, who)
        if inventory.allowed is not None:
            kept = [h for h in hosts if h.name in inventory.allowed]
            if not kept:
                names = ", ".join(h.name for h in hosts[:5]) + (", ..." if len(hosts) > 5 else "")
                raise InventoryError(
                    f"{who}: --limit '{inventory.limit}' leaves none of its hosts ({names})"
                )
            hosts = kept
        for host in hosts:
            problem = inventory.problems.get(host.name)
            if problem:
                raise InventoryError(f"{who}: host '{host.name}': {problem}")
    if not hosts:
        raise InventoryError(f"{who}: its hosts resolve to no host at all")
    if len(hosts) > MAX_HOSTS:
        raise InventoryError(
            f"{who} stands for more than {MAX_HOSTS:,} hosts ({len(hosts):,}); "
            "split it into several targets"
        )
    return hosts
