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
