"""Inventories: Ansible INI and YAML, our flat YAML, host patterns, errors at file:line.

These pin our rules without the peer; test_inventory_differential.py holds the same
rules (and many more cases) to ansible-core itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runbook.load.model import Target
from runbook.run.inventory import Inventory, InventoryError, load_inventory, resolve_hosts

CORPUS = Path(__file__).resolve().parents[1] / "data" / "inventories"


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


# -- Ansible's rules (issue 14) -----------------------------------------------------------------
def connection(inventory: Inventory, host: str) -> tuple[str, object, object]:
    found = inventory.hosts[host]
    return found.address, found.vars.get("user"), found.vars.get("port")


@pytest.mark.parametrize("seed", ["0", "1", "5", "42"])
def test_a_host_in_sibling_groups_gets_the_later_groups_vars_whatever_the_hash_seed(
    seed: str,
) -> None:
    # The reported bug: `auser@:2100` under most seeds, `zuser@:2200` under seed 5.
    code = (
        "from runbook.run.inventory import load_inventory\n"
        f"inv = load_inventory({str(CORPUS / 'sibling-groups.ini')!r})\n"
        "print(inv.hosts['h1'].vars['user'], inv.hosts['h1'].vars['port'])\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": seed}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["zuser", "2200"]


def test_group_vars_merge_by_depth_then_priority_then_name() -> None:
    inv = load_inventory(CORPUS / "group-priority.ini")
    # alpha (priority 10) beats beta and gamma (5); all is lowest whatever its priority
    assert connection(inv, "h1") == ("127.0.0.9", "alpha", 2001)
    assert connection(inv, "h2") == ("127.0.0.9", "alpha", 2001)
    # inner is a child of outer: deeper wins over outer's priority 99
    assert connection(inv, "h3")[2] == 2050
    depth = load_inventory(CORPUS / "depth.ini")
    assert connection(depth, "r1") == ("r1", "region-user", 2300)
    assert connection(depth, "r2")[1] == "r2-own"
    assert depth.variables["r1"]["level"] == "rack" and depth.variables["top1"]["level"] == "all"


def test_every_range_form_expands_as_ansible_expands_it() -> None:
    groups = load_inventory(CORPUS / "ranges.ini").groups
    assert groups["padded"] == ("db01", "db04", "db07", "db10")
    assert groups["letters"] == tuple(f"db-{c}" for c in "abcdef")
    assert groups["stepped"] == ("h1", "h3", "h5", "h7", "h9")
    assert groups["letterstep"] == ("xa", "xf", "xk")
    assert groups["nostart"] == ("n0", "n1", "n2")
    assert groups["multi"][:3] == ("r1n08", "r1n09", "r1n10")
    assert groups["suffix"] == ("node1.example.com", "node2.example.com")
    assert groups["ipv4"] == ("10.0.1.7", "10.0.1.8", "10.0.2.7", "10.0.2.8")
    assert groups["empty"] == ()


def test_host_port_entries_set_the_port_where_the_host_is_first_seen() -> None:
    inv = load_inventory(CORPUS / "host-port.ini")
    assert connection(inv, "h1") == ("h1", None, 2222)  # `h1:9999` later is ignored
    assert connection(inv, "::1") == ("::1", None, 2200)
    assert connection(inv, "10.0.0.5")[2] == 2201 and "port" not in inv.hosts["fe80::1"].vars
    assert connection(inv, "w2") == ("w2", "ops", 2300)
    assert connection(inv, "h2")[2] == 2401  # an explicit ansible_port beats `:2400`
    assert "h_:22" in inv.hosts  # not an address, so not a port either: a name
    yaml = load_inventory(CORPUS / "ranges-and-ports.yaml")
    assert connection(yaml, "app2") == ("app2", None, 2300)
    assert connection(yaml, "::1")[2] == 2200 and yaml.groups["web"] == ("w1",)


def test_ini_values_group_vars_take_the_line_host_values_are_literals() -> None:
    values = load_inventory(CORPUS / "vars-values.ini").variables
    assert values["h1"]["ansible_user"] == "deploy user"
    assert values["h1"]["greeting"] == "hello, world # not a comment either"
    assert values["h1"]["spaced"] == "lots of   space" and values["h1"]["equals"] == "a=b=c"
    assert values["h1"]["number"] == 8080 and values["h1"]["flag"] is False
    assert values["h1"]["motd"] == "hello world" and values["h1"]["q"] == 42
    assert values["h1"]["l"] == [1, "a"] and values["h2"]["path"] == "/srv/app"
    assert load_inventory(CORPUS / "vars-values.ini").hosts["h1"].vars == {"user": "deploy user"}


def test_legacy_ssh_vars_beat_the_new_names_once_merged() -> None:
    for name in ("legacy-ssh-vars.ini", "legacy-ssh-vars.yaml"):
        inv = load_inventory(CORPUS / name)
        assert connection(inv, "h1") == ("127.0.0.4", "h1-ssh", 2399)  # group ssh_port wins
        assert connection(inv, "h2") == ("127.0.0.4", "h2-user", 2302)
        assert connection(inv, "h4")[1] == "group-user"  # ansible_ssh_user=None is unset
    assert load_inventory(CORPUS / "legacy-ssh-vars.ini").hosts["h4"].vars["key_file"] == "/keys/h4"


def test_ungrouped_holds_exactly_the_hosts_no_other_group_holds() -> None:
    ini = load_inventory(CORPUS / "ungrouped.ini")
    assert ini.groups["ungrouped"] == ("loose1", "loose2", "loose3", "in-all-only")
    assert connection(ini, "loose1")[2] == 2999 and connection(ini, "both")[2] is None
    yaml = load_inventory(CORPUS / "ungrouped.yaml")
    assert yaml.groups["ungrouped"] == ("loose2", "loose1")  # its own first, as Ansible


def test_children_and_vars_may_come_before_their_group() -> None:
    inv = load_inventory(CORPUS / "children-before-declared.ini")
    assert inv.groups["prod"] == ("w1", "w2", "primary", "r1")
    assert connection(inv, "w1") == ("w1", "webuser", 2222)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[prod:children]\nweb\nnope\n[web]\nw1\n", "hosts.ini:3: section [prod:children] names"),
        ("[web]\nw1\n[db:vars]\nx=1\n", "hosts.ini:3: section [db:vars] is for group 'db'"),
        ("[web]\nw1:\n", "hosts.ini:2: invalid host pattern 'w1:'"),
        ("[web]\nh[01:100]\n", "hosts.ini:2: host pattern 'h[01:100]': host range must"),
        ("[web]\nw1\n[web:vars]\nansible_group_priority=x\n", "hosts.ini:4: ansible_group_p"),
    ],
)
def test_what_ansible_refuses_is_refused_at_its_line(tmp_path, text: str, message: str) -> None:
    with pytest.raises(InventoryError) as info:
        load_inventory(write(tmp_path, "hosts.ini", text))
    assert str(info.value).startswith(str(tmp_path / message))


# -- host patterns and --limit -------------------------------------------------------------------
def hosts(inventory: Inventory | None, *patterns: str) -> list[str]:
    return [h.name for h in resolve_hosts(Target("t", "ssh", {"hosts": list(patterns)}), inventory)]


def test_target_hosts_are_ansible_host_patterns() -> None:
    inv = load_inventory(CORPUS / "patterns.ini")
    assert hosts(inv, "web:&prod") == ["web1", "web2", "web3"]
    assert hosts(inv, "prod:!db") == ["p1", "web1", "web3"]
    assert hosts(inv, "web[0:1]") == ["web1", "web2"] and hosts(inv, "web[-1]") == ["web3"]
    assert hosts(inv, "~w.*[13]") == ["web1", "web3"] and hosts(inv, "*.example.com")
    assert hosts(inv, "web", "!db") == ["web1", "web3"]  # a list is one pattern, as in a play
    assert hosts(inv, "{{ inventory.stage }}", "db") == ["web3", "stage.example.com", "db1", "web2"]
    assert hosts(inv, "ungrouped") == ["lone", "10.0.0.9"]


@pytest.mark.parametrize(
    ("patterns", "message"),
    [
        (["wbe"], "no host or group 'wbe' in inventory .*; did you mean 'web'"),
        (["web", "dbb"], "no host or group 'dbb'"),
        (["web:&nothere"], "no host or group 'nothere'"),
        (["zz*"], "host pattern 'zz\\*' matches no host or group"),
        (["~^q"], "host pattern '~\\^q' matches no host or group"),
        (["web[7]"], "'web' has 3 hosts, none at index 7"),
        (["web:&db:!web2"], "select no host"),
        (["canary"], "select no host"),
        (["~(("], "invalid host pattern"),
        (["web:22"], "no host or group 'web:22'"),
        ([], "names no host"),
        (["  "], "empty host pattern"),
    ],
)
def test_a_pattern_that_selects_nothing_is_an_error_never_a_host_name(
    patterns: list[str], message: str
) -> None:
    inv = load_inventory(CORPUS / "patterns.ini")
    with pytest.raises(InventoryError, match=f"target 't': .*{message}"):
        hosts(inv, *patterns)


def test_an_address_outside_the_inventory_stands_for_itself() -> None:
    inv = load_inventory(CORPUS / "patterns.ini")
    assert hosts(inv, "web1", "10.0.0.77", "::1", "localhost") == [
        "web1",
        "10.0.0.77",
        "::1",
        "localhost",
    ]


@pytest.mark.parametrize("pattern", ["web*", "web:&prod", "all", "web[0]", "h1:22", "!db", "a b"])
def test_without_an_inventory_a_pattern_is_refused_not_dialled(pattern: str) -> None:
    with pytest.raises(InventoryError, match="select hosts from an inventory"):
        hosts(None, pattern)
    assert hosts(None, "web-1", "db.example.com", "10.0.0.7", "::1") == [
        "web-1",
        "db.example.com",
        "10.0.0.7",
        "::1",
    ]


def test_limit_narrows_every_target_and_must_select_something(tmp_path) -> None:
    inv = load_inventory(CORPUS / "patterns.ini")
    limited = inv.limited("web*:!web2")
    assert hosts(limited, "prod") == ["web1", "web3"] and hosts(limited, "web[0:1]") == ["web1"]
    with pytest.raises(InventoryError, match="--limit 'web\\*:!web2' leaves none of its hosts"):
        hosts(limited, "db")
    (tmp_path / "retry").write_text("db1\nstage.example.com\n")
    assert hosts(inv.limited(f"@{tmp_path / 'retry'}"), "all") == ["stage.example.com", "db1"]
    with pytest.raises(InventoryError, match="--limit 'wbe1': no host or group 'wbe1'.*'web1'"):
        inv.limited("wbe1")
    with pytest.raises(InventoryError, match="--limit 'web:&db:!web2': selects no host"):
        inv.limited("web:&db:!web2")


def test_cli_limit_narrows_plan_and_run_and_needs_an_inventory(run_cli, write_runbook) -> None:
    path = write_runbook(
        """
        apiVersion: runbook/v1
        kind: Runbook
        metadata: {name: inv, title: Inv, severity: P3}
        targets:
          web: {transport: ssh, hosts: ["web:&prod"]}
        steps:
          - id: one
            phase: triage
            check: {shell: {argv: ["true"], target: web}}
        """
    )
    inventory = str(CORPUS / "patterns.ini")
    plan = run_cli(
        "plan", str(path), "--inventory", inventory, "--limit", "web[1:]", "--format", "json"
    )
    assert plan.code == 0, plan.err
    assert json.loads(plan.out)["resolved"]["web"]["hosts"] == ["web2", "web3"]
    alone = run_cli("run", str(path), "--limit", "web1")
    assert alone.code == 2 and "--limit selects hosts from an inventory" in alone.err
    empty = run_cli("run", str(path), "--inventory", inventory, "--limit", "db1", "--yes")
    assert empty.code == 2 and "target 'web': --limit 'db1' leaves none of its hosts" in empty.err


# -- where we deliberately differ from Ansible (docs/hosts.md) ----------------------------------
@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("typo.yaml", "web:\n  host:\n    w1:\n", "typo.yaml:2: group 'web' has key 'host'"),
        ("list.yaml", "web: [w1, w2]\n", "list.yaml:1: group 'web' must be a mapping"),
        ("dup.yaml", "web:\n  hosts:\n    w1:\n    w1:\n", "dup.yaml:4: duplicate key 'w1'"),
        ("plugin.yaml", "plugin: constructed\n", "plugin.yaml:1: inventory plugins"),
        ("hosts.toml", "[web]\n", "hosts.toml: TOML inventories are not supported"),
    ],
)
def test_what_ansible_only_warns_about_is_refused(tmp_path, name, text, message) -> None:
    with pytest.raises(InventoryError) as info:
        load_inventory(write(tmp_path, name, text))
    assert str(info.value).startswith(str(tmp_path / message))


def test_connection_vars_we_cannot_use_fail_only_the_targets_that_name_them(tmp_path) -> None:
    inv = load_inventory(
        write(
            tmp_path,
            "hosts.yaml",
            """
            web:
              hosts:
                w1: {ansible_host: "{{ lookup('env', 'IP') }}"}
                w2: {ansible_port: "ssh"}
            db:
              hosts:
                d1:
                  ansible_user: !vault |
                    $ANSIBLE_VAULT;1.1;AES256
                    6231
                  ansible_password: !vault |
                    $ANSIBLE_VAULT;1.1;AES256
                    6232
            """,
        )
    )
    with pytest.raises(InventoryError, match=r"host 'w1': .*hosts.yaml:3: ansible_host .* Jinja"):
        hosts(inv, "w1")
    with pytest.raises(InventoryError, match=r"host 'w2': .*ansible_port 'ssh' is not a port"):
        hosts(inv, "w2")
    with pytest.raises(InventoryError, match=r"host 'd1': .*ansible_user is vault-encrypted"):
        hosts(inv, "db")
    assert load_inventory(CORPUS / "vault-and-unsafe.yaml").hosts["h1"].vars == {
        "port": 2201,
        "user": "{{ not a template }}",  # !unsafe: never a template, dialled as written
    }


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
        ("[web]\nh[1:2][1:99999999]\n", "hosts.ini:2: host pattern 'h[1:2][1:99999999]' expands"),
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
            "hosts.ini:4: group 'a' is its own child (a -> b -> a)",
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


def test_a_range_that_stands_for_nothing_ends_the_expansion(tmp_path) -> None:
    # As in Ansible: `[9:1]` is empty, so the huge range after it is never read.
    inv = load_inventory(write(tmp_path, "hosts.ini", "[web]\nh[9:1][1:99999999]\nw1\n"))
    assert inv.groups["web"] == ("w1",)


def test_a_nested_range_is_refused_as_ansible_refuses_it(tmp_path) -> None:
    with pytest.raises(InventoryError, match=r"hosts.ini:2: host pattern 'h\[\[1:2\]:9\]'"):
        load_inventory(write(tmp_path, "hosts.ini", "[web]\nh[[1:2]:9]\n"))


def test_a_target_may_stand_for_at_most_the_bound(tmp_path) -> None:
    inv = load_inventory(write(tmp_path, "hosts.ini", "[a]\na[1:6000]\n[b]\nb[1:3000]\n"))
    assert len(resolve_hosts(Target("t", "ssh", {"hosts": ["a", "b"]}), inv)) == 9000
    many = [f"10.0.{i // 250}.{i % 250}" for i in range(1001)]
    with pytest.raises(InventoryError, match="target 't' stands for more than 10,000 hosts"):
        resolve_hosts(Target("t", "ssh", {"hosts": ["a", "b", *many]}), inv)
