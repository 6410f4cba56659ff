"""The ssh transport against a real sshd on loopback: trust, failures, timeouts, injection."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from support import sshd

from runbook.contract import ExecContext, StepResult  # noqa: E402
from runbook.load.model import Target  # noqa: E402
from runbook.registry import PluginRegistry  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> sshd.Fleet:
    reason = sshd.ensure_sshd()
    if reason:
        pytest.skip(reason)
    return sshd.shared_fleet(tmp_path_factory.mktemp("sshd"))


def run_shell(fleet: sshd.Fleet, argv: list[str], hosts: list[str], **opts: Any) -> StepResult:
    shell = PluginRegistry.from_entry_points().executor("shell")
    target = Target("web", "ssh", {"hosts": hosts, **fleet.options(**opts)})
    ctx = ExecContext(step_id="s", target=target, timeout=opts.pop("timeout", 20))
    try:
        return shell.run({"argv": argv, "target": "web"}, ctx)
    finally:
        ctx.resources["runbook.connections"].close()


def records(log_dir: Path) -> list[dict[str, Any]]:
    (log,) = sorted(log_dir.glob("*.jsonl"))
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_unknown_host_key_is_refused_with_its_fingerprint(fleet, tmp_path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    result = run_shell(fleet, ["true"], ["127.0.0.2"], known_hosts=str(empty))
    error = result.hosts["127.0.0.2"].error or ""
    assert "not in known_hosts" in error and "SHA256:" in error
    assert f"ssh-keyscan -p {fleet.port} -t ssh-ed25519 127.0.0.2 >> {empty}" in error


def test_changed_host_key_is_refused(fleet, tmp_path) -> None:
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    known = tmp_path / "known_hosts"
    key = " ".join(Path(f"{other}.pub").read_text().split()[:2])
    known.write_text(f"[127.0.0.3]:{fleet.port} {key}\n")
    result = run_shell(fleet, ["true"], ["127.0.0.3"], known_hosts=str(known))
    error = result.hosts["127.0.0.3"].error or ""
    assert "HOST KEY CHANGED" in error and "ssh-keygen -R" in error
    assert result.hosts["127.0.0.3"].fields == {}


def test_dead_host_fails_only_its_own_result(fleet) -> None:
    result = run_shell(fleet, ["echo", "up"], ["127.0.0.2", "127.0.0.99"], connect_timeout=3)
    assert result.hosts["127.0.0.2"].ok and result.hosts["127.0.0.2"].output == "up\n"
    dead = result.hosts["127.0.0.99"]
    assert not dead.ok and "connection refused" in (dead.error or "")


def test_command_timeout_kills_the_remote_command(fleet) -> None:
    marker = "301.25"
    result = run_shell(fleet, ["sleep", marker], ["127.0.0.4"], timeout=1.5)
    host = result.hosts["127.0.0.4"]
    assert host.timed_out and "timed out" in (host.error or "")
    left = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True)
    assert left.stdout == ""


def test_hostile_values_stay_one_argument(fleet, tmp_path) -> None:
    mark = tmp_path / "pwned"
    hostile = f"x'; touch {mark}; echo '$(touch {mark})`touch {mark}`"
    result = run_shell(fleet, ["echo", hostile, "--", "-n"], ["127.0.0.5"])
    assert result.hosts["127.0.0.5"].output == f"{hostile} -- -n\n"
    assert not mark.exists()


def test_one_connection_per_host_is_reused_across_steps(fleet, run_cli, write_runbook) -> None:
    # each command's parent is the sshd process of its connection: equal means reused
    path = write_runbook(
        f"""
        apiVersion: runbook/v1
        kind: Runbook
        metadata: {{name: reuse, title: Reuse, severity: P3}}
        targets:
          web: {fleet.target_yaml(["127.0.0.6"])}
        steps:
          - id: one
            phase: triage
            check: {{shell: {{argv: [sh, -c, 'echo $PPID'], target: web}}}}
          - id: two
            phase: triage
            check: {{shell: {{argv: [sh, -c, 'echo $PPID'], target: web}}}}
        """
    )
    r = run_cli("run", str(path), "--log-dir", "logs")
    assert r.code == 0, r.text
    results = [x for x in records(path.parent / "logs") if x["type"] == "step.result"]
    outputs = [x["data"]["hosts"]["127.0.0.6"]["fields"]["stdout"] for x in results]
    assert outputs[0] == outputs[1] and outputs[0].strip().isdigit()


def test_twenty_host_fan_out_logs_a_result_per_host(fleet, run_cli, write_runbook) -> None:
    path = write_runbook(
        f"""
        apiVersion: runbook/v1
        kind: Runbook
        metadata: {{name: fleet, title: Fleet, severity: P3}}
        targets:
          web: {fleet.target_yaml(host_key_check=False)}
        steps:
          - id: hostname
            phase: triage
            check: {{shell: {{argv: [cat, /etc/hostname], target: web}}}}
            expect: ["exit_code == 0", "stdout != ''"]
        """
    )
    r = run_cli("run", str(path), "--log-dir", "logs")
    assert r.code == 0, r.text
    log = records(path.parent / "logs")
    assert log[0]["data"]["host_key_check_off"] == ["web"]
    (result,) = [x["data"] for x in log if x["type"] == "step.result"]
    assert sorted(result["hosts"]) == sorted(fleet.addresses)
    assert all(h["ok"] and h["fields"]["exit_code"] == 0 for h in result["hosts"].values())
    per_host = [x for x in log if x["type"] == "step.expectation"]
    assert len(per_host) == 40 and {x["data"]["host"] for x in per_host} == set(fleet.addresses)


def test_jump_host_reaches_the_destination(fleet) -> None:
    jump = f"{fleet.user}@127.0.0.2:{fleet.port}"
    result = run_shell(fleet, ["sh", "-c", "echo $SSH_CONNECTION"], ["127.0.0.7"], jump=jump)
    host = result.hosts["127.0.0.7"]
    assert host.ok, host.error
    assert host.output.split()[2] == "127.0.0.7"


def test_missing_key_file_is_invalid_input(fleet, run_cli, write_runbook) -> None:
    path = write_runbook(
        f"""
        apiVersion: runbook/v1
        kind: Runbook
        metadata: {{name: nokey, title: No key, severity: P3}}
        targets:
          web: {fleet.target_yaml(["127.0.0.2"], key_file="/nonexistent/id_ed25519")}
        steps:
          - id: one
            phase: triage
            check: {{shell: {{argv: ["true"], target: web}}}}
        """
    )
    r = run_cli("run", str(path))
    assert r.code == 2
    assert "SSH key file not found: /nonexistent/id_ed25519" in r.err


def test_missing_paramiko_names_the_pip_command(fleet, run_cli, write_runbook, tmp_path) -> None:
    fake = tmp_path / "nopkg" / "paramiko"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named paramiko')\n")
    path = write_runbook(
        f"""
        apiVersion: runbook/v1
        kind: Runbook
        metadata: {{name: nossh, title: No ssh, severity: P3}}
        targets:
          web: {fleet.target_yaml(["127.0.0.2"])}
        steps:
          - id: one
            phase: triage
            check: {{shell: {{argv: ["true"], target: web}}}}
        """
    )
    r = run_cli("run", str(path), env={"PYTHONPATH": str(tmp_path / "nopkg")})
    assert r.code == 1
    assert "pip install 'runbook-as-code[ssh]'" in r.text


# -- a connection lost mid-command (safety issue 12) ---------------------------------------------


def _alive(pattern: str) -> list[int]:
    """Pids whose command line matches `pattern`, zombies left out (nobody may reap them)."""
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    pids = []
    for pid in map(int, found.split()):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if state != "Z":
            pids.append(pid)
    return pids


def _stat(pid: int) -> tuple[str, int]:
    """A process's name and parent pid, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    name, _, rest = stat[stat.index("(") + 1 :].rpartition(")")
    return name, int(rest.split()[1])


def _sshd_serving(pid: int) -> int:
    """The sshd process whose session runs `pid`: its nearest sshd ancestor."""
    while pid > 1:
        pid = _stat(pid)[1]
        if _stat(pid)[0] in ("sshd", "sshd-session"):
            return pid
    raise AssertionError("no sshd ancestor")


def test_lost_connection_is_that_hosts_error_and_ends_the_command(fleet) -> None:
    marker = "302.75"
    lost, fine = "127.0.0.8", "127.0.0.9"
    script = f'case "$SSH_CONNECTION" in *" {lost} "*) sleep {marker};; *) echo fine;; esac'
    box: dict[str, StepResult] = {}
    worker = threading.Thread(
        target=lambda: box.setdefault("r", run_shell(fleet, ["sh", "-c", script], [lost, fine]))
    )
    worker.start()
    until = time.monotonic() + 10
    while not (sleeping := _alive(f"^sleep {marker}")) and time.monotonic() < until:
        time.sleep(0.02)
    assert sleeping, "the remote command never started"
    os.kill(_sshd_serving(sleeping[0]), signal.SIGKILL)
    worker.join(timeout=30)
    assert not worker.is_alive()
    result = box["r"]
    host = result.hosts[lost]
    assert not host.ok and host.fields.get("exit_code") is None
    assert (host.error or "").startswith(
        f"connection to {lost} ({lost}:{fleet.port}) lost during command: EOF; "
        "its process group (pid "
    ), host.error
    assert result.hosts[fine].ok and result.hosts[fine].output == "fine\n"
    assert result.fields["hosts_ok"] == 1 and result.fields["hosts_failed"] == 1
    until = time.monotonic() + 5
    while _alive(f"^sleep {marker}") and time.monotonic() < until:
        time.sleep(0.05)
    assert _alive(f"^sleep {marker}") == []


def test_a_command_ending_without_exit_status_is_an_error_not_minus_one(fleet) -> None:
    result = run_shell(fleet, ["sh", "-c", "kill -9 $$"], ["127.0.0.10"])
    host = result.hosts["127.0.0.10"]
    assert not host.ok and "exit_code" not in host.fields
    assert (host.error or "").startswith(
        f"command on 127.0.0.10 (127.0.0.10:{fleet.port}) ended without an exit status"
    )
    assert result.fields["hosts_ok"] == 0


# -- known_hosts read once per run, each host verified against its own keys (issue 15) --------


def _key(tmp_path: Path, name: str, kind: str = "ed25519") -> str:
    """`type base64` of a new key that no host of the fleet has."""
    path = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)
    return " ".join(Path(f"{path}.pub").read_text().split()[:2])


def _known(fleet: sshd.Fleet, path: Path, lines: dict[str, str], *extra: str) -> Path:
    """A known_hosts file: `[address]:port key` for each address, then `extra` lines."""
    body = [f"[{address}]:{fleet.port} {key}" for address, key in lines.items()]
    path.write_text("\n".join([*body, *extra]) + "\n")
    return path


def test_one_store_for_all_hosts_refuses_a_changed_key_and_a_missing_host(fleet, tmp_path) -> None:
    good = fleet.host_key_line
    known = _known(
        fleet,
        tmp_path / "known_hosts",
        {"127.0.0.2": good, "127.0.0.3": good, "127.0.0.4": _key(tmp_path, "other")},
    )
    hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
    result = run_shell(fleet, ["true"], hosts, known_hosts=str(known))
    assert result.hosts["127.0.0.2"].ok and result.hosts["127.0.0.3"].ok
    changed = result.hosts["127.0.0.4"].error or ""
    assert changed.startswith(f"127.0.0.4: HOST KEY CHANGED for [127.0.0.4]:{fleet.port}")
    missing = result.hosts["127.0.0.5"].error or ""
    assert f"host key of [127.0.0.5]:{fleet.port} is not in known_hosts" in missing


def test_hashed_known_hosts_entries_are_matched(fleet, tmp_path) -> None:
    known = _known(
        fleet,
        tmp_path / "known_hosts",
        {"127.0.0.2": fleet.host_key_line, "127.0.0.3": _key(tmp_path, "other")},
    )
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(known)], check=True, capture_output=True)
    assert "127.0.0" not in known.read_text() and known.read_text().count("|1|") == 2
    result = run_shell(fleet, ["true"], ["127.0.0.2", "127.0.0.3"], known_hosts=str(known))
    assert result.hosts["127.0.0.2"].ok, result.hosts["127.0.0.2"].error
    assert "HOST KEY CHANGED" in (result.hosts["127.0.0.3"].error or "")


def test_jump_host_is_verified_like_any_host(fleet, tmp_path) -> None:
    jump = f"{fleet.user}@127.0.0.2:{fleet.port}"
    unknown_jump = _known(fleet, tmp_path / "unknown", {"127.0.0.7": fleet.host_key_line})
    result = run_shell(fleet, ["true"], ["127.0.0.7"], jump=jump, known_hosts=str(unknown_jump))
    error = result.hosts["127.0.0.7"].error or ""
    assert f"host key of [127.0.0.2]:{fleet.port} is not in known_hosts" in error
    changed_jump = _known(
        fleet,
        tmp_path / "changed",
        {"127.0.0.7": fleet.host_key_line, "127.0.0.2": _key(tmp_path, "other")},
    )
    result = run_shell(fleet, ["true"], ["127.0.0.7"], jump=jump, known_hosts=str(changed_jump))
    assert f"HOST KEY CHANGED for [127.0.0.2]:{fleet.port}" in (
        result.hosts["127.0.0.7"].error or ""
    )


def test_a_revoked_key_is_refused_even_where_a_line_trusts_it(fleet, tmp_path) -> None:
    known = _known(
        fleet,
        tmp_path / "known_hosts",
        {"127.0.0.2": fleet.host_key_line, "127.0.0.3": fleet.host_key_line},
        f"@revoked [127.0.0.2]:* {fleet.host_key_line}",
    )
    result = run_shell(fleet, ["true"], ["127.0.0.2", "127.0.0.3"], known_hosts=str(known))
    assert f"REVOKED HOST KEY for [127.0.0.2]:{fleet.port}" in (
        result.hosts["127.0.0.2"].error or ""
    )
    assert result.hosts["127.0.0.3"].ok  # the pattern names .2 only


def test_a_host_trusted_only_through_a_cert_authority_is_refused_saying_so(fleet, tmp_path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(f"@cert-authority * {_key(tmp_path, 'ca')}\n")
    result = run_shell(fleet, ["true"], ["127.0.0.2"], known_hosts=str(known))
    error = result.hosts["127.0.0.2"].error or ""
    assert "not in known_hosts" in error
    assert f"only through @cert-authority ({known}:1)" in error
    assert "host certificates are not checked" in error


def test_known_hosts_is_read_once_per_run(fleet, run_cli, write_runbook, tmp_path) -> None:
    good = fleet.host_key_line
    known = _known(fleet, tmp_path / "known_hosts", {"127.0.0.2": good, "127.0.0.3": good})
    path = write_runbook(
        f"""
        apiVersion: runbook/v1
        kind: Runbook
        metadata: {{name: once, title: Once, severity: P3}}
        targets:
          a: {fleet.target_yaml(["127.0.0.2"], known_hosts=str(known))}
          b: {fleet.target_yaml(["127.0.0.3"], known_hosts=str(known))}
        steps:
          - id: first
            phase: triage
            check: {{shell: {{argv: ["true"], target: a}}}}
          - id: forget
            phase: triage
            check: {{shell: {{argv: [truncate, -s, "0", "{known}"]}}}}
          - id: later
            phase: triage
            check: {{shell: {{argv: ["true"], target: b}}}}
        """
    )
    r = run_cli("run", str(path), "--log-dir", "logs")
    assert r.code == 0, r.text  # .3 was checked against the file as the run first read it
    assert known.read_text() == ""
    again = run_shell(fleet, ["true"], ["127.0.0.3"], known_hosts=str(known))
    assert "not in known_hosts" in (again.hosts["127.0.0.3"].error or "")  # a new run reads anew


def test_each_connection_holds_only_its_own_hosts_keys(fleet, tmp_path) -> None:
    from runbook_plugins.ssh import SshRun

    from runbook.contract import Host

    others = {f"10.9.{i // 250}.{i % 250}": fleet.host_key_line for i in range(500)}
    known = _known(fleet, tmp_path / "known_hosts", {**others, "127.0.0.2": fleet.host_key_line})
    run = SshRun()
    conns = [run.connect(Host(a), fleet.options(known_hosts=str(known))) for a in ("127.0.0.2",)]
    try:
        assert run.known_hosts.parsed == [str(known)]
        held = conns[0]._client.get_host_keys()  # the paramiko client's own table
        assert list(held.keys()) == [f"[127.0.0.2]:{fleet.port}"]
    finally:
        for conn in conns:
            conn.close()


ORACLE_LINE = re.compile(r"# Host (?P<name>\S+) found: line (?P<line>\d+) ?(?P<mark>REVOKED|CA)?")


@pytest.mark.parametrize("hashed", [False, True], ids=["plain", "hashed"])
def test_known_hosts_lookups_agree_with_ssh_keygen(tmp_path, hashed) -> None:
    """`ssh-keygen -F NAME` is the oracle: which lines trust, revoke or certify a name."""
    from runbook_plugins.ssh import KnownHostsFile

    a, b, c = (_key(tmp_path, n) for n in "abc")
    e = _key(tmp_path, "e", "ecdsa")
    path = tmp_path / "known_hosts"
    path.write_text(
        f"web1 {a}\n[web2]:2222,web3 {b}\n# a comment\n\nweb1 {e}\n"
        f"@revoked web* {c}\n@cert-authority *.example.com,!bad.example.com {c}\n"
        f"web4 {c}\n[web5]:2200 {a}\n"
    )
    if hashed:
        subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(path)], check=True, capture_output=True)
    parsed = KnownHostsFile.read(str(path))
    names = ["web1", "web2", "[web2]:2222", "web3", "web4", "[web5]:2200", "web5"]
    names += ["db.example.com", "bad.example.com", "nowhere"]
    for name in names:
        oracle = subprocess.run(
            ["ssh-keygen", "-F", name, "-f", str(path)], capture_output=True, text=True
        ).stdout
        found: dict[str | None, list[int]] = {None: [], "REVOKED": [], "CA": []}
        for m in ORACLE_LINE.finditer(oracle):
            found[m["mark"]].append(int(m["line"]))
        trusted, revoked, authorities = parsed.lookup(name)
        ours = [[e[0] for e in trusted], [e[0] for e in revoked], [e[0] for e in authorities]]
        assert ours == [found[None], found["REVOKED"], found["CA"]], name
