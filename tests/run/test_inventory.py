"""Inventories: Ansible INI and YAML, our flat YAML, groups in targets, errors at file:line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from runbook.load.model import Target
from runbook.run.inventory import InventoryError, load_inventory, resolve_hosts


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


INI = """
    # production
    [web]
    web[01:03] ansible_host=127.0.0.2 ansible_port=2222
    [web:vars]
    ansible_user=deploy
    [db]
    db-1 ansible_host=127.0.0.9 ansible_user=postgres
    [prod:children]
    web
    db
"""


def test_ansible_ini_groups_ranges_and_vars(tmp_path) -> None:
    inv = load_inventory(write(tmp_path, "hosts.ini", INI))
    assert inv.groups["web"] == ("web01", "web02", "web03")
    assert inv.groups["prod"] == ("web01", "web02", "web03", "db-1")
    web01 = inv.hosts["web01"]
    assert web01.vars == {"address": "127.0.0.2", "port": 2222, "user": "deploy"}
    assert inv.hosts["db-1"].vars["user"] == "postgres"


def test_ansible_yaml_children_and_host_vars_win(tmp_path) -> None:
    inv = load_inventory(
        write(
            tmp_path,
            "hosts.yaml",
            """
        all:
          vars: {ansible_user: ops}
          children:
            web:
              vars: {ansible_port: 2222}
              hosts:
                web-1: {ansible_host: 127.0.0.2}
                web-2: {ansible_host: 127.0.0.3, ansible_user: root}
    """,
        )
    )
    assert inv.groups["web"] == ("web-1", "web-2") and inv.groups["all"] == ("web-1", "web-2")
    assert inv.hosts["web-1"].vars == {"user": "ops", "port": 2222, "address": "127.0.0.2"}
    assert inv.hosts["web-2"].vars["user"] == "root"


def test_flat_yaml_and_target_references(tmp_path) -> None:
    inv = load_inventory(
        write(
            tmp_path,
            "inv.yaml",
            """
        hosts:
          api-1: {address: 127.0.0.2}
          api-2: {address: 127.0.0.3}
        groups:
          api: [api-1, api-2]
          everything: [api]
    """,
        )
    )
    by_ref = Target("web", "ssh", {"hosts": ["{{ inventory.api }}"]})
    by_name = Target("web", "ssh", {"hosts": ["everything", "10.0.0.7"]})
    assert [h.address for h in resolve_hosts(by_ref, inv)] == ["127.0.0.2", "127.0.0.3"]
    assert [h.name for h in resolve_hosts(by_name, inv)] == ["api-1", "api-2", "10.0.0.7"]


def test_unknown_group_is_named_with_a_suggestion(tmp_path) -> None:
    inv = load_inventory(write(tmp_path, "hosts.ini", INI))
    with pytest.raises(InventoryError, match=r"no host or group 'wbe'.*did you mean 'web'"):
        resolve_hosts(Target("t", "ssh", {"hosts": ["{{ inventory.wbe }}"]}), inv)
    with pytest.raises(InventoryError, match="needs an inventory: pass --inventory"):
        resolve_hosts(Target("t", "ssh", {"hosts": ["{{ inventory.web }}"]}), None)


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        ("bad.ini", "[web]\nweb-1 ansible_host\n", "bad.ini:2: expected key=value"),
        ("bad2.ini", "[web:stuff]\n", "bad2.ini:1: unknown section kind"),
        ("bad.yaml", "hosts:\n  a: {address: [1\n", "bad.yaml:3:"),
        ("bad2.yaml", "hosts:\n  a: {}\ngroups:\n  g: [a, zz]\n", "bad2.yaml:4: group 'g' names"),
    ],
)
def test_malformed_inventory_names_file_and_line(tmp_path, name, text, where) -> None:
    with pytest.raises(InventoryError) as info:
        load_inventory(write(tmp_path, name, text))
    assert str(info.value).startswith(str(tmp_path / where))


def test_cli_inventory_errors_exit_2(run_cli, write_runbook, tmp_path) -> None:
    path = write_runbook(
        """
        apiVersion: runbook/v1
        kind: Runbook
        metadata: {name: inv, title: Inv, severity: P3}
        targets:
          web: {transport: ssh, hosts: ["{{ inventory.web }}"]}
        steps:
          - id: one
            phase: triage
            check: {shell: {argv: ["true"], target: web}}
        """
    )
    missing = run_cli("run", str(path), "--inventory", "nope.ini")
    assert missing.code == 2 and "nope.ini: inventory file not found" in missing.err
    write(tmp_path, "other.ini", "[db]\ndb-1\n")
    unknown = run_cli("run", str(path), "--inventory", "other.ini")
    assert unknown.code == 2 and "no host or group 'web'" in unknown.err
    no_inventory = run_cli("run", str(path))
    assert no_inventory.code == 2 and "pass --inventory" in no_inventory.err


# -- size bounds (safety issue 12) --------------------------------------------------------------


def test_a_huge_range_is_refused_before_it_is_expanded(write_runbook, tmp_path, cli_env) -> None:
    # The child may not use more than 1 GiB of address space: expanding 99,999,999
    # names (2.7 GB) would die of MemoryError instead of the exit-2 message.
    import resource
    import subprocess
    import sys

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    write(tmp_path, "big.ini", "[web]\nweb-1\nh[1:99999999] ansible_port=2222\n")
    path = write_runbook(
        """
        apiVersion: runbook/v1
        kind: Runbook
        metadata: {name: big, title: Big, severity: P3}
        targets:
          web: {transport: ssh, hosts: ["{{ inventory.web }}"]}
        steps:
          - id: one
            phase: triage
            check: {shell: {argv: ["true"], target: web}}
        """
    )
    proc = subprocess.run(
        [sys.executable, "-m", "runbook", "run", str(path), "--inventory", "big.ini"],
        cwd=tmp_path,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=30,
        preexec_fn=limit_memory,
    )
    assert proc.returncode == 2, proc.stderr
    assert (
        "big.ini:3: host pattern 'h[1:99999999]' expands to 99,999,999 hosts; "
        "a pattern may expand to at most 10,000"
    ) in proc.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[web]\nr[1:101]n[1:100]\n",
            "hosts.ini:2: host pattern 'r[1:101]n[1:100]' expands to 10,100",
        ),
        ("[web]\nh[9:1][1:99999999]\n", "hosts.ini:2: host pattern 'h[9:1][1:99999999]' expands"),
        ("[web]\nh[1:1000000000000000000000]\n", "hosts.ini:2: host pattern 'h[1:1000000000"),
        (
            "[a]\na[1:6000]\n[b]\nb[1:6000]\n",
            "hosts.ini:4: the inventory would hold 12,000 hosts with 'b[1:6000]'",
        ),
        (
            "".join(f"[g{i}]\nh[1:10000]\n" for i in range(21)),
            "hosts.ini:42: the inventory lists more than 200,000 hosts in groups",
        ),
        (
            "[g0]\nh[1:10000]\n" + "".join(f"[g{i}:children]\ng{i - 1}\n" for i in range(1, 30)),
            "groups hold 210,000 hosts once children are expanded",
        ),
        (
            "[a:children]\nb\n[b:children]\na\n",
            "hosts.ini:2: group 'a' is its own child (a -> b -> a)",
        ),
        ("[a:children]\na\n", "hosts.ini:2: group 'a' is its own child (a -> a)"),
    ],
)
def test_inventory_size_and_shape_are_bounded(tmp_path, text: str, message: str) -> None:
    with pytest.raises(InventoryError) as info:
        load_inventory(write(tmp_path, "hosts.ini", text))
    assert str(info.value).startswith(str(tmp_path)) and message in str(info.value)


def test_yaml_ranges_are_bounded_with_their_line(tmp_path) -> None:
    text = "all:\n  children:\n    web:\n      hosts:\n        'h[1:99999999]': {}\n"
    with pytest.raises(InventoryError) as info:
        load_inventory(write(tmp_path, "hosts.yaml", text))
    assert str(info.value).startswith(f"{tmp_path / 'hosts.yaml'}:5: host pattern 'h[1:99999999]'")


def test_ranges_up_to_the_bound_still_expand_in_order(tmp_path) -> None:
    inv = load_inventory(
        write(
            tmp_path,
            "hosts.ini",
            "[web]\nh[1:9994]\n[pairs]\nr[1:2]n[08:10]\n[all:children]\nweb\n",
        )
    )
    assert len(inv.groups["web"]) == 9994 and inv.groups["web"][-1] == "h9994"
    assert inv.groups["pairs"] == ("r1n08", "r1n09", "r1n10", "r2n08", "r2n09", "r2n10")
    assert len(inv.hosts) == 10_000


def test_a_pattern_is_expanded_once_not_rescanned(tmp_path) -> None:
    inv = load_inventory(write(tmp_path, "hosts.ini", "[web]\nh[[1:2]:99999999]\n"))
    assert inv.groups["web"] == ("h[1:99999999]", "h[2:99999999]")


def test_a_target_may_stand_for_at_most_the_bound(tmp_path) -> None:
    inv = load_inventory(write(tmp_path, "hosts.ini", "[a]\na[1:6000]\n[b]\nb[1:3000]\n"))
    assert len(resolve_hosts(Target("t", "ssh", {"hosts": ["a", "b"]}), inv)) == 9000
    many = [f"10.0.{i // 250}.{i % 250}" for i in range(1001)]
    with pytest.raises(InventoryError, match="target 't' stands for more than 10,000 hosts"):
        resolve_hosts(Target("t", "ssh", {"hosts": ["a", "b", *many]}), inv)
