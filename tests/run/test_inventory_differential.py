"""Our inventory reading against ansible-core itself: the peer is the oracle.

Every inventory in tests/data/inventories/ (each small, named for what it covers; a
directory holds one with group_vars/ and host_vars/) is read by `ansible-inventory --list`
and by `load_inventory`: each group's hosts (children expanded) and each host's merged
vars must agree. The connection address, user, port and key are taken from Ansible's ssh
plugin itself: `ansible all -m ping` runs with a fake ssh that records its argv and fails,
so nothing touches the network. Host patterns, target host lists and `--limit` are
compared with the hosts `ansible-playbook` gives a play: one play per pattern, whose one
task (a `debug`, connecting nowhere) prints `ansible_play_hosts_all` in Ansible's order.
Every file in rejected/ must be refused by both, ours naming the file:line that its first
line promises. Hypothesis writes a few random inventories (sibling groups with
priorities, vars at several depths) for the peer too.

ansible-core is a test-only dependency (the dev extra); our code never imports it. Its
commands run with HOME, ANSIBLE_HOME and ANSIBLE_LOCAL_TEMP in a temp dir, from a temp
cwd, so the peer writes nothing in the repository. Peer calls cost ~1 s each, so they
run once per session, a few at a time.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runbook.load.model import Target
from runbook.run.inventory import (
    Inventory,
    InventoryError,
    Unsafe,
    Vaulted,
    load_inventory,
    resolve_hosts,
)

BIN = Path(sys.executable).parent
CORPUS = Path(__file__).resolve().parents[1] / "data" / "inventories"
# each file, and each directory's hosts.* (an inventory with group_vars/ and host_vars/)
ACCEPTED = sorted(
    [p for p in CORPUS.iterdir() if p.is_file()]
    + [
        p
        for d in CORPUS.iterdir()
        if d.is_dir() and d.name != "rejected"
        for p in d.glob("hosts.*")
    ]
)
REJECTED = sorted((CORPUS / "rejected").iterdir())

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (BIN / "ansible-inventory").exists(),
        reason=f"ansible-inventory is not installed next to {sys.executable} "
        "(pip install -e '.[dev]' brings ansible-core)",
    ),
]

# The files whose connection vars are checked against the ssh plugin itself (~2 s each);
# the rest are checked against the vars `ansible-inventory` merges, read by the same rule.
SSH_CHECKED = [
    "legacy-ssh-vars.ini",
    "legacy-ssh-vars.yaml",
    "sibling-groups.ini",
    "host-port.ini",
    "group-vars-beside/hosts.ini",
]

# Patterns, target host lists and --limit values, compared on patterns.ini/.yaml. Each
# entry is a target's `hosts:` (a string or a list, as a play's `hosts:`).
PATTERNS: list[str | list[str]] = [
    "web",
    "web:&prod",
    "prod:!db",
    "web[0:1]",
    "web[1]",
    "web[-1]",
    "web[1:]",
    "web*",
    "~w.*[13]",
    "~^web[12]$",
    "all",
    "web,db",
    "db:web",
    "al*",
    "ungrouped",
    "all[-1]",
    "all[0:2]",
    "prod[1:]",
    "prod[0]",
    "!db",
    "&web",
    "web:!web2:&stage",
    "*.example.com",
    "stage.example.com",
    "web2",
    "p?",
    "[dw]*1",
    "web,!web1",
    "*",
    "~.*",
    "prod:&stage:!db",
    "localhost",
    ["web", "!db"],
    ["prod", "&stage"],
    # select nothing: Ansible runs no host, we refuse
    "nothere",
    "web:22",
    "canary",
    "web:&db:!web2",
]
LIMITS = [None, "web*:!web2", "stage", "@limit-file"]


# -- the peer --------------------------------------------------------------------------------
class Peer:
    """Runs ansible-core's commands in a sandbox; each answer is computed once."""

    def __init__(self, home: Path) -> None:
        self.home = home
        (home / "tmp").mkdir(parents=True, exist_ok=True)
        fake_ssh = home / "fake-ssh"
        fake_ssh.write_text(
            f"#!{sys.executable}\nimport json, sys\n"
            'sys.stderr.write("FAKESSH" + json.dumps(sys.argv[1:]) + "\\n")\nsys.exit(255)\n'
        )
        fake_ssh.chmod(0o755)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
        self.env.update(
            HOME=str(home),
            ANSIBLE_HOME=str(home / ".ansible"),
            ANSIBLE_LOCAL_TEMP=str(home / "tmp"),
            ANSIBLE_CONFIG=str(home / "ansible.cfg"),  # none there: defaults only
            ANSIBLE_INVENTORY_UNPARSED_FAILED="true",  # a refused inventory fails the command
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORCE_COLOR="0",
            ANSIBLE_DEPRECATION_WARNINGS="false",
            ANSIBLE_SSH_EXECUTABLE=str(fake_ssh),
            ANSIBLE_HOST_KEY_CHECKING="false",
            ANSIBLE_FORKS="10",
        )
        self.answers: dict[tuple[Any, ...], Any] = {}
        self.runs = 0

    def run(self, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
        self.runs += 1
        return subprocess.run(
            [str(BIN / argv[0]), *argv[1:]],
            env={**self.env, **env},
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def answer(self, key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
        if key not in self.answers:
            self.answers[key] = compute()
        return self.answers[key]

    def listing(self, path: Path) -> dict[str, Any] | None:
        """`ansible-inventory --list` as JSON, or None if Ansible refuses the file."""

        def compute() -> dict[str, Any] | None:
            proc = self.run("ansible-inventory", "-i", str(path), "--list")
            return json.loads(proc.stdout) if proc.returncode == 0 else None

        return self.answer(("list", path), compute)

    def refuses(self, path: Path) -> bool:
        """Whether Ansible refuses the file; asked of all REJECTED files in one command.

        With several `-i`, Ansible warns `Unable to parse FILE` for each file it refuses
        and goes on. Their groups share one inventory, so a file could be accepted there
        only thanks to another's groups: such a file, and one whose error is only found
        once all are read (a loop through `all`), is asked about on its own.
        """

        def compute() -> frozenset[Path]:
            sources = [arg for p in REJECTED for arg in ("-i", str(p))]
            proc = self.run(
                "ansible-inventory", *sources, "--list", ANSIBLE_INVENTORY_UNPARSED_FAILED="false"
            )
            return frozenset(p for p in REJECTED if f"Unable to parse {p} as" in proc.stderr)

        batch = self.answer(("refused",), compute)
        return path in batch or self.listing(path) is None

    def host(self, path: Path, host: str) -> dict[str, Any]:
        proc = self.run("ansible-inventory", "-i", str(path), "--host", host)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def connections(self, path: Path) -> dict[str, dict[str, Any]]:
        """Per host, what the ssh plugin dials: address, port, user, key file."""

        def compute() -> dict[str, dict[str, Any]]:
            proc = self.run("ansible", "-i", str(path), "all", "-m", "ping")
            found = {}
            for match in re.finditer(
                r"^(\S+) \| UNREACHABLE! => (\{.*?^\})", proc.stdout, re.M | re.S
            ):
                message = json.loads(match.group(2))["msg"]
                argv = json.loads(message.split("FAKESSH", 1)[1].splitlines()[0])
                opts = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "-o")
                found[match.group(1)] = {
                    "address": argv[-2],
                    "port": int(opts["Port"]) if "Port" in opts else None,
                    "user": opts.get("User", "").strip('"') or None,
                    "key_file": opts.get("IdentityFile", "").strip('"') or None,
                }
            assert found, proc.stdout + proc.stderr
            return found

        return self.answer(("ssh", path), compute)

    def play_hosts(
        self, path: Path, patterns: list[str | list[str]], limit: str | None
    ) -> list[list[str]]:
        """The hosts of one play per pattern, in Ansible's order (`ansible_play_hosts_all`).

        Each play's one task is a `debug` (it runs here, connecting nowhere) printing
        the play's hosts; a play that matches no host is skipped and gets [].
        """

        def compute() -> list[list[str]]:
            book = self.home / f"plays-{uuid.uuid4().hex}.yml"
            show = {
                "debug": {"msg": "HOSTS {{ ansible_play_hosts_all | to_json }}"},
                "run_once": True,
            }
            plays = [
                {"name": f"p{i}", "hosts": p, "gather_facts": False, "tasks": [show]}
                for i, p in enumerate(patterns)
            ]
            book.write_text(json.dumps(plays))
            extra = ["--limit", limit] if limit else []
            proc = self.run("ansible-playbook", "-i", str(path), str(book), *extra)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            blocks = re.split(r"^PLAY \[p\d+\] \**$", proc.stdout, flags=re.M)[1:]
            assert len(blocks) == len(patterns), proc.stdout
            found = []
            for block in blocks:
                shown = re.search(r'^\s*"msg": (".*")$', block, re.M)
                found.append(json.loads(json.loads(shown.group(1))[6:]) if shown else [])
            return found

        key = ("plays", path, json.dumps(patterns), limit)
        return self.answer(key, compute)


@pytest.fixture(scope="session")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Peer:
    """The peer, with every corpus answer fetched up front, four commands at a time."""
    home = tmp_path_factory.mktemp("ansible-peer")
    found = Peer(home)
    (home / "limit-file").write_text("web1\nstage.example.com\n")
    jobs: list[Callable[[], Any]] = [lambda p=p: found.listing(p) for p in ACCEPTED]
    jobs.append(lambda: found.refuses(REJECTED[0]))
    jobs += [lambda n=n: found.connections(CORPUS / n) for n in SSH_CHECKED]
    for name in ("patterns.ini", "patterns.yaml"):
        jobs += [
            lambda n=name, lim=lim: found.play_hosts(CORPUS / n, PATTERNS, _limit(home, lim))
            for lim in LIMITS
        ]
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda job: job(), jobs))
    return found


def _limit(home: Path, limit: str | None) -> str | None:
    return f"@{home / 'limit-file'}" if limit == "@limit-file" else limit


# -- comparing ----------------------------------------------------------------------------------
def expanded_groups(listing: dict[str, Any]) -> dict[str, set[str]]:
    """Each group's hosts with its children's (`--list` shows only direct ones)."""
    groups = {name: data for name, data in listing.items() if name != "_meta"}
    memo: dict[str, set[str]] = {}

    def hosts(name: str) -> set[str]:
        if name not in memo:
            data = groups.get(name, {})
            memo[name] = set(data.get("hosts", []))
            for child in data.get("children", []):
                memo[name] |= hosts(child)
        return memo[name]

    return {name: hosts(name) for name in groups}


def as_peer_json(value: Any) -> Any:
    """Our vars as `ansible-inventory` prints them (its markers for vault and unsafe)."""
    if isinstance(value, Unsafe):
        return {"__ansible_unsafe": str(value)}
    if isinstance(value, Vaulted):
        return {"__ansible_vault": value.ciphertext}
    if isinstance(value, dict):
        return {str(k): as_peer_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_peer_json(v) for v in value]
    return json.loads(json.dumps(value, default=str))


def connection_by_ssh_rule(hostvars: dict[str, Any], name: str) -> dict[str, Any]:
    """What the ssh plugin would dial from merged vars (the rule SSH_CHECKED proves)."""

    def last(*names: str) -> Any:
        values = [hostvars[n] for n in names if hostvars.get(n) is not None]
        value = values[-1] if values else None
        return value.get("__ansible_unsafe", value) if isinstance(value, dict) else value

    port = last("ansible_port", "ansible_ssh_port")
    return {
        "address": str(last("ansible_host", "ansible_ssh_host") or name),
        "port": None if port is None else int(port),
        "user": last("ansible_user", "ansible_ssh_user"),
        "key_file": last("ansible_private_key_file", "ansible_ssh_private_key_file"),
    }


def ours_connection(inventory: Inventory, name: str) -> dict[str, Any]:
    host = inventory.hosts[name]
    return {
        "address": host.address,
        "port": host.vars.get("port"),
        "user": host.vars.get("user"),
        "key_file": host.vars.get("key_file"),
    }


def assert_same_inventory(ours: Inventory, listing: dict[str, Any]) -> None:
    theirs = expanded_groups(listing)
    for group in set(theirs) | set(ours.groups):
        assert set(ours.groups.get(group, ())) == theirs.get(group, set()), group
    assert set(ours.hosts) == theirs["all"]
    hostvars = listing["_meta"]["hostvars"]
    for name in ours.hosts:
        assert as_peer_json(dict(ours.variables[name])) == hostvars.get(name, {}), name
        assert ours_connection(ours, name) == connection_by_ssh_rule(hostvars.get(name, {}), name)


# -- the corpus -----------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ACCEPTED, ids=[str(p.relative_to(CORPUS)) for p in ACCEPTED])
def test_groups_and_vars_are_what_ansible_inventory_lists(peer: Peer, path: Path) -> None:
    listing = peer.listing(path)
    assert listing is not None, f"ansible-inventory refuses {path.name}"
    assert_same_inventory(load_inventory(path), listing)


@pytest.mark.parametrize("name", SSH_CHECKED)
def test_connection_is_what_the_ansible_ssh_plugin_dials(peer: Peer, name: str) -> None:
    inventory = load_inventory(CORPUS / name)
    dialled = peer.connections(CORPUS / name)
    assert set(dialled) == set(inventory.hosts)
    for host, theirs in dialled.items():
        assert ours_connection(inventory, host) == theirs, host


def test_host_vars_are_what_ansible_inventory_host_shows(peer: Peer) -> None:
    path = CORPUS / "group-priority.ini"
    inventory = load_inventory(path)
    for host in ("h1", "h3"):
        assert as_peer_json(dict(inventory.variables[host])) == peer.host(path, host)


@pytest.mark.parametrize("path", REJECTED, ids=[p.name for p in REJECTED])
def test_an_inventory_ansible_refuses_is_refused_with_file_and_line(peer: Peer, path: Path) -> None:
    promise = re.match(r"# rejected at line (\d+): (.*)", path.read_text().splitlines()[0])
    assert promise, f"{path.name} must start with '# rejected at line N: words of the error'"
    assert peer.refuses(path), f"ansible-inventory accepts {path.name}"
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    assert str(info.value).startswith(f"{path}:{promise.group(1)}"), str(info.value)
    assert promise.group(2).strip() in str(info.value)


# -- host patterns, target host lists and --limit ----------------------------------------------
@pytest.mark.parametrize("limit", LIMITS)
@pytest.mark.parametrize("name", ["patterns.ini", "patterns.yaml"])
def test_targets_select_the_hosts_ansible_plays_select_in_its_order(
    peer: Peer, name: str, limit: str | None
) -> None:
    inventory = load_inventory(CORPUS / name)
    limit = _limit(peer.home, limit)
    if limit:
        inventory = inventory.limited(limit)
    theirs_all = peer.play_hosts(CORPUS / name, PATTERNS, limit)
    for pattern, theirs in zip(PATTERNS, theirs_all, strict=True):
        target = Target("t", "ssh", {"hosts": pattern})
        if not theirs:  # Ansible runs nothing: we refuse, naming why
            with pytest.raises(InventoryError, match="target 't'"):
                resolve_hosts(target, inventory)
            continue
        assert [h.name for h in resolve_hosts(target, inventory)] == theirs, pattern


# -- random inventories ------------------------------------------------------------------------
GROUPS = ["a", "b", "c", "d"]
HOSTS = ["h1", "h2", "h3"]
CONNECTION = [
    "ansible_user",
    "ansible_port",
    "ansible_ssh_user",
    "ansible_ssh_port",
    "ansible_host",
]


def _value(var: str, n: int) -> Any:
    return 2000 + n if var.endswith("port") else f"127.0.0.{n}" if var.endswith("host") else f"u{n}"


@st.composite
def inventories(draw: st.DrawFn) -> dict[str, Any]:
    """Groups with parents among the earlier ones, priorities, vars at every depth."""
    var_sets = st.lists(st.sampled_from(CONNECTION), unique=True, max_size=3)
    groups = {}
    for i, name in enumerate(GROUPS):
        groups[name] = {
            "parents": draw(st.lists(st.sampled_from(GROUPS[:i]), unique=True, max_size=2))
            if i
            else [],
            "priority": draw(st.sampled_from([None, 1, 2, 5])),
            "vars": {v: _value(v, draw(st.integers(1, 9))) for v in draw(var_sets)},
            "hosts": draw(st.lists(st.sampled_from(HOSTS), unique=True, max_size=3)),
        }
    return {
        "groups": groups,
        "all": {v: _value(v, draw(st.integers(1, 9))) for v in draw(var_sets)},
        "hostvars": {
            h: {v: _value(v, draw(st.integers(1, 9))) for v in draw(var_sets)} for h in HOSTS
        },
        "format": draw(st.sampled_from(["ini", "yaml"])),
    }


def render(model: dict[str, Any]) -> str:
    groups, hostvars = model["groups"], model["hostvars"]
    if model["format"] == "ini":
        lines = [" ".join([h, *(f"{k}={v}" for k, v in hostvars[h].items())]) for h in HOSTS]
        for name, g in groups.items():
            lines += [f"[{name}]", *g["hosts"], f"[{name}:vars]"]
            lines += [f"{k}={v}" for k, v in g["vars"].items()]
            if g["priority"] is not None:
                lines.append(f"ansible_group_priority={g['priority']}")
            for parent in g["parents"]:
                lines += [f"[{parent}:children]", name]
        lines += ["[all:vars]", *(f"{k}={v}" for k, v in model["all"].items())]
        return "\n".join(lines) + "\n"
    top: dict[str, Any] = {"all": {"hosts": hostvars, "vars": model["all"]}}
    for name, g in groups.items():
        data: dict[str, Any] = {"hosts": dict.fromkeys(g["hosts"]), "vars": dict(g["vars"])}
        if g["priority"] is not None:
            data["vars"]["ansible_group_priority"] = g["priority"]
        top[name] = data
        for parent in g["parents"]:
            top.setdefault(f"{parent}", {}).setdefault("children", {})[name] = None
    return json.dumps(top, indent=1)


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(model=inventories())
def test_random_inventories_read_as_ansible_reads_them(
    peer: Peer, tmp_path: Path, model: dict[str, Any]
) -> None:
    path = tmp_path / f"random.{model['format']}"
    path.write_text(render(model))
    proc = peer.run("ansible-inventory", "-i", str(path), "--list")
    assert proc.returncode == 0, proc.stderr + textwrap.indent(path.read_text(), "  ")
    assert_same_inventory(load_inventory(path), json.loads(proc.stdout))
