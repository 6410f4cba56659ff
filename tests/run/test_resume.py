"""--resume: a killed run continues in a new, linked log; finished actions never repeat."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from support import sshd
from support.cli import RunCli
from support.helpers import logs_in

from runbook.log.journal import read_log, verify_log

RUNBOOK = """\
apiVersion: runbook/v1
kind: Runbook
metadata: {{name: resumable, title: Resumable, severity: P1}}
params:
  svc: {{type: string, default: api, pattern: "^[a-z]+$"}}
steps:
  - id: first-fix
    phase: mitigate
    action: {{shell: {{command: "echo first >> {ledger}"}}}}
  - id: wait
    phase: mitigate
    check: {{shell: {{command: "echo waiting > {started}; test -f {go} || sleep 60"}}}}
  - id: second-fix
    phase: resolve
    action: {{shell: {{command: "echo second >> {ledger}"}}}}
"""


def _start(rb: Path, cwd: Path, env: dict[str, str], *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "runbook", "run", str(rb), "--yes", *extra],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(path: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not path.exists():
        time.sleep(0.05)
    assert path.exists(), f"{path} never appeared"


def test_sigkill_mid_step_then_resume_runs_only_what_is_left(tmp_path, cli_env, run_cli):
    ledger, started, go = tmp_path / "ledger", tmp_path / "started", tmp_path / "go"
    rb = tmp_path / "rb.yaml"
    rb.write_text(RUNBOOK.format(ledger=ledger, started=started, go=go))
    proc = _start(rb, tmp_path, cli_env)
    _wait_for(started)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    old = logs_in(tmp_path / "logs")[0]
    verdict = verify_log(old)
    assert verdict.truncated and not verdict.tampered

    go.write_text("")
    result = run_cli("run", str(rb), "--yes", "--resume", str(old))
    assert result.code == 0, result.text
    assert ledger.read_text().splitlines() == ["first", "second"]  # first-fix never repeated
    new = [p for p in logs_in(tmp_path / "logs") if p != old][0]
    records = read_log(new)
    assert records[0]["data"]["resumed_from"]["final_hash"] == verdict.final_hash
    restored = [r["data"]["step"] for r in records if r["type"] == "step.restored"]
    assert restored == ["first-fix"]
    assert verify_log(new).ok


def test_unfinished_action_needs_confirmation_before_rerun(tmp_path, cli_env, run_cli):
    ledger, started = tmp_path / "ledger", tmp_path / "started"
    rb = tmp_path / "rb.yaml"
    rb.write_text(
        RUNBOOK.format(ledger=ledger, started=started, go=tmp_path / "go").replace(
            'command: "echo first >> ',
            'command: "touch ' + str(started) + "; sleep 60; echo first >> ",
        )
    )
    proc = _start(rb, tmp_path, cli_env)
    _wait_for(started)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    old = logs_in(tmp_path / "logs")[0]
    refused = run_cli("run", str(rb), "--resume", str(old))
    assert refused.code == 3
    assert "may have run already" in refused.text


def test_resume_refuses_another_runbook_or_a_changed_file(tmp_path, run_cli, write_runbook):
    ledger = tmp_path / "ledger"
    body = RUNBOOK.format(ledger=ledger, started=tmp_path / "s", go=tmp_path / "s")
    rb = write_runbook(body.replace("echo first >>", "exit 1; echo first >>"))
    assert run_cli("run", str(rb), "--yes").code == 1
    old = logs_in(tmp_path / "logs")[0]
    other = write_runbook(body.replace("name: resumable", "name: other"), "other.yaml")
    wrong = run_cli("run", str(other), "--resume", str(old))
    assert wrong.code == 2 and "from runbook 'resumable'" in wrong.err
    rb.write_text(rb.read_text() + "\n# edited\n")
    changed = run_cli("run", str(rb), "--resume", str(old))
    assert changed.code == 2 and "changed since that run" in changed.err
    params = run_cli("run", str(rb), "--resume", str(old), "-p", "svc=web")
    assert params.code == 2


# -- exactly once across crashes, host by host -------------------------------------------------


def _killed_at(proc: subprocess.Popen[str], marker: Path) -> None:
    """SIGKILL the run once `marker` exists: no handler runs, the log just stops."""
    _wait_for(marker)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)


def _new_logs(log_dir: Path, before: set[Path]) -> list[Path]:
    return sorted(set(log_dir.glob("*.jsonl")) - before)


def _of(records: list[dict[str, Any]], kind: str, step: str) -> list[dict[str, Any]]:
    return [r["data"] for r in records if r["type"] == kind and r["data"].get("step") == step]


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> sshd.Fleet:
    reason = sshd.ensure_sshd()
    if reason:
        pytest.skip(reason)
    return sshd.shared_fleet(tmp_path_factory.mktemp("sshd"))


ROLLING = """\
apiVersion: runbook/v1
kind: Runbook
metadata: {{name: rolling, title: Rolling restart, severity: P1}}
targets:
  web: {target}
steps:
  - id: roll
    phase: mitigate
    serial: 1
    action:
      shell:
        target: web
        command: >-
          h=$(echo $SSH_CONNECTION | cut -d' ' -f3); echo ran >> {ledgers}/$h;
          while [ "$h" = {blocker} ] && [ ! -f {go} ]; do sleep 0.1; done
"""


@pytest.mark.slow
def test_sigkill_mid_rolling_action_resumes_host_by_host(
    fleet: sshd.Fleet, tmp_path: Path, cli_env: dict[str, str], run_cli: RunCli
) -> None:
    hosts = ["127.0.0.12", "127.0.0.13", "127.0.0.14"]
    ledgers, go, logs = tmp_path / "ledgers", tmp_path / "go", tmp_path / "logs"
    ledgers.mkdir()
    rb = tmp_path / "rolling.yaml"
    rb.write_text(
        ROLLING.format(target=fleet.target_yaml(hosts), ledgers=ledgers, blocker=hosts[1], go=go)
    )

    def ran() -> dict[str, int]:
        return {
            h: len((ledgers / h).read_text().splitlines()) for h in hosts if (ledgers / h).exists()
        }

    # host 1 finished, host 2 started (it appended, then waits): kill -9
    _killed_at(_start(rb, tmp_path, cli_env), ledgers / hosts[1])
    [old] = logs_in(logs)
    assert ran() == {hosts[0]: 1, hosts[1]: 1}
    records = read_log(old)
    assert [d["host"] for d in _of(records, "step.host_finished", "roll")] == [hosts[0]]
    assert [d["hosts"] for d in _of(records, "step.hosts_started", "roll")] == [
        [hosts[0]],
        [hosts[1]],
    ]
    go.touch()  # from now on host 2 does not wait

    # --yes never answers "it may have taken effect": refused, nothing runs
    before = set(logs.glob("*.jsonl"))
    refused = run_cli("run", str(rb), "--yes", "--resume", str(old))
    assert refused.code == 3, refused.text
    assert f"may have run already on {hosts[1]}" in refused.text
    assert "--rerun-unfinished roll" in refused.text
    assert ran() == {hosts[0]: 1, hosts[1]: 1}
    [declined] = _new_logs(logs, before)
    [gate] = _of(read_log(declined), "step.confirmation", "roll")
    assert gate["rerun"] is True and gate["accepted"] is False and gate["method"] == "--yes"

    # with the flag: host 1 is not run again, hosts 2 and 3 run once each
    before = set(logs.glob("*.jsonl"))
    resumed = run_cli("run", str(rb), "--yes", "--resume", str(old), "--rerun-unfinished", "roll")
    assert resumed.code == 0, resumed.text
    assert ran() == {hosts[0]: 1, hosts[1]: 2, hosts[2]: 1}
    [new] = _new_logs(logs, before)
    assert verify_log(new).ok
    records = read_log(new)
    finished = {d["host"]: d for d in _of(records, "step.host_finished", "roll")}
    assert list(finished) == hosts
    assert finished[hosts[0]]["restored_from"] == read_log(old)[0]["data"]["run_id"]
    assert all("restored_from" not in finished[h] for h in hosts[1:])
    assert [d["hosts"] for d in _of(records, "step.hosts_started", "roll")] == [
        [hosts[1]],
        [hosts[2]],
    ]
    [gate] = _of(records, "step.confirmation", "roll")[:1]
    assert gate["method"] == "--rerun-unfinished" and gate["accepted"] is True
    [result] = _of(records, "step.result", "roll")
    assert sorted(result["hosts"]) == hosts  # the step's aggregate result is whole
    assert _of(records, "step.finished", "roll")[0]["status"] == "passed"
    # the declined run continues the same log: resuming it would repeat hosts 2 and 3
    again = run_cli(
        "run", str(rb), "--yes", "--resume", str(declined), "--rerun-unfinished", "roll"
    )
    assert again.code == 2 and str(new) in again.err, again.text
    assert ran() == {hosts[0]: 1, hosts[1]: 2, hosts[2]: 1}


@pytest.mark.slow
def test_a_rolling_action_killed_between_hosts_resumes_without_asking(
    fleet: sshd.Fleet, tmp_path: Path, cli_env: dict[str, str], run_cli: RunCli
) -> None:
    """Host 1 finished and host 2 never started: nothing may have happened twice."""
    hosts = ["127.0.0.15", "127.0.0.16"]
    ledgers, go, logs = tmp_path / "ledgers", tmp_path / "go", tmp_path / "logs"
    ledgers.mkdir()
    rb = tmp_path / "rolling.yaml"
    body = ROLLING.format(target=fleet.target_yaml(hosts), ledgers=ledgers, blocker="x", go=go)
    rb.write_text(
        body
        + "  - id: hold\n    phase: mitigate\n"
        + f"    check: {{shell: {{command: 'touch {tmp_path}/held; test -f {go} || sleep 60'}}}}\n"
    )
    _killed_at(_start(rb, tmp_path, cli_env), tmp_path / "held")
    [old] = logs_in(logs)
    # roll finished here, so make its log look like a kill between the two hosts
    lines = old.read_text().splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if '"hosts":["127.0.0.16"]' in line)
    old.write_text("".join(lines[:cut]))
    assert verify_log(old).truncated and not verify_log(old).tampered
    (ledgers / hosts[1]).unlink()
    go.touch()
    resumed = run_cli("run", str(rb), "--yes", "--resume", str(old))
    assert resumed.code == 0, resumed.text
    assert (ledgers / hosts[0]).read_text() == "ran\n"
    assert (ledgers / hosts[1]).read_text() == "ran\n"


RUNBOOK_ACTIONS = """\
apiVersion: runbook/v1
kind: Runbook
metadata: {{name: continuing, title: Continuing, severity: P1}}
steps:
  - id: flaky-fix
    phase: mitigate
    on_failure: {policy}
    action: {{shell: {{command: "echo fix >> {ledger}; exit 1"}}}}
  - id: wait
    phase: mitigate
    check: {{shell: {{command: "touch {started}; test -f {go} || sleep 60"}}}}
  - id: after
    phase: resolve
    action: {{shell: {{command: "echo after >> {ledger}"}}}}
"""


def test_resume_never_repeats_an_action_that_failed_under_continue(
    tmp_path: Path, cli_env: dict[str, str], run_cli: RunCli
) -> None:
    ledger, started, go = tmp_path / "ledger", tmp_path / "started", tmp_path / "go"
    rb = tmp_path / "rb.yaml"
    rb.write_text(RUNBOOK_ACTIONS.format(policy="continue", ledger=ledger, started=started, go=go))
    _killed_at(_start(rb, tmp_path, cli_env), started)
    [old] = logs_in(tmp_path / "logs")
    go.touch()
    resumed = run_cli("run", str(rb), "--yes", "--resume", str(old))
    assert resumed.code == 0, resumed.text
    assert ledger.read_text().splitlines() == ["fix", "after"]
    new = next(p for p in logs_in(tmp_path / "logs") if p != old)
    restored = _of(read_log(new), "step.restored", "flaky-fix")
    assert [d["status"] for d in restored] == ["failed"]


def test_resume_never_repeats_an_action_that_failed_and_ended_the_run(
    tmp_path: Path, run_cli: RunCli
) -> None:
    ledger, go = tmp_path / "ledger", tmp_path / "go"
    go.touch()
    rb = tmp_path / "rb.yaml"
    rb.write_text(RUNBOOK_ACTIONS.format(policy="abort", ledger=ledger, started="s", go=go))
    assert run_cli("run", str(rb), "--yes").code == 1
    [old] = logs_in(tmp_path / "logs")
    resumed = run_cli("run", str(rb), "--yes", "--resume", str(old))
    assert resumed.code == 1, resumed.text
    assert ledger.read_text().splitlines() == ["fix"]
    assert "flaky-fix  action failed in run" in resumed.out


def test_a_resumed_run_killed_again_still_never_repeats_a_finished_action(
    tmp_path: Path, cli_env: dict[str, str], run_cli: RunCli
) -> None:
    ledger, started, go = tmp_path / "ledger", tmp_path / "started", tmp_path / "go"
    logs = tmp_path / "logs"
    rb = tmp_path / "rb.yaml"
    rb.write_text(RUNBOOK.format(ledger=ledger, started=started, go=go))
    _killed_at(_start(rb, tmp_path, cli_env), started)
    [first] = logs_in(logs)
    started.unlink()
    _killed_at(_start(rb, tmp_path, cli_env, "--resume", str(first)), started)
    [second] = _new_logs(logs, {first})
    go.touch()
    before = set(logs.glob("*.jsonl"))
    resumed = run_cli("run", str(rb), "--yes", "--resume", str(second))
    assert resumed.code == 0, resumed.text
    assert ledger.read_text().splitlines() == ["first", "second"]
    [third] = _new_logs(logs, before)
    assert _of(read_log(third), "step.restored", "first-fix")
    # the first log again would not know what the third run did: refused
    again = run_cli("run", str(rb), "--yes", "--resume", str(first))
    assert again.code == 2, again.text
    assert "already resumed it (or a run it continues) and ran actions" in again.err
    assert ledger.read_text().splitlines() == ["first", "second"]


def test_a_tampered_log_is_refused_and_nothing_runs(
    tmp_path: Path, cli_env: dict[str, str], run_cli: RunCli
) -> None:
    ledger, started, go = tmp_path / "ledger", tmp_path / "started", tmp_path / "go"
    rb = tmp_path / "rb.yaml"
    rb.write_text(RUNBOOK.format(ledger=ledger, started=started, go=go))
    _killed_at(_start(rb, tmp_path, cli_env), started)
    [old] = logs_in(tmp_path / "logs")
    # drop the record that says first-fix finished, as if it never had
    lines = old.read_text().splitlines(keepends=True)
    lines = [ln for ln in lines if not ('"step.finished"' in ln and '"first-fix"' in ln)]
    old.write_text("".join(lines))
    go.touch()
    refused = run_cli("run", str(rb), "--yes", "--resume", str(old))
    assert refused.code == 5, refused.text
    assert "does not verify" in refused.err
    assert ledger.read_text().splitlines() == ["first"]
    assert logs_in(tmp_path / "logs") == [old]  # refused before a new log was opened


def test_a_changed_param_is_refused(tmp_path: Path, run_cli: RunCli) -> None:
    ledger = tmp_path / "ledger"
    body = RUNBOOK.format(ledger=ledger, started=tmp_path / "s", go=tmp_path / "s")
    rb = tmp_path / "rb.yaml"
    rb.write_text(body.replace("echo second >>", "exit 1; echo second >>"))
    assert run_cli("run", str(rb), "--yes", "-p", "svc=db").code == 1
    [old] = logs_in(tmp_path / "logs")
    changed = run_cli("run", str(rb), "--yes", "--resume", str(old), "-p", "svc=web")
    assert changed.code == 2, changed.text
    assert "param 'svc' was 'db' in the interrupted run, now 'web'" in changed.err
    assert logs_in(tmp_path / "logs") == [old]
    assert ledger.read_text().splitlines() == ["first"]
    # the same value, or none (the old run's is taken), is fine
    same = run_cli("run", str(rb), "--yes", "--resume", str(old), "-p", "svc=db")
    assert same.code == 1 and ledger.read_text().splitlines() == ["first"], same.text


def test_rerun_unfinished_must_name_an_unfinished_action(tmp_path: Path, run_cli: RunCli) -> None:
    ledger = tmp_path / "ledger"
    body = RUNBOOK.format(ledger=ledger, started=tmp_path / "s", go=tmp_path / "s")
    rb = tmp_path / "rb.yaml"
    rb.write_text(body.replace("echo second >>", "exit 1; echo second >>"))
    alone = run_cli("run", str(rb), "--yes", "--rerun-unfinished", "first-fix")
    assert alone.code == 2 and "only with --resume" in alone.err
    assert run_cli("run", str(rb), "--yes").code == 1
    [old] = logs_in(tmp_path / "logs")
    done = run_cli("run", str(rb), "--resume", str(old), "--rerun-unfinished", "first-fix")
    assert done.code == 2, done.text
    assert "it finished (passed) and is never run again" in done.err
    assert ledger.read_text().splitlines() == ["first"]


def _run_on_pty(args: list[str], answer: bytes, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run the CLI with a real pseudo-terminal as stdin and type `answer` at its prompt."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # child
        os.chdir(cwd)
        os.execve(sys.executable, [sys.executable, "-m", "runbook", *args], env)
    output, sent = b"", False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
        if not sent and b"to proceed" in output:
            os.write(fd, answer)
            sent = True
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def test_only_the_step_id_typed_on_a_terminal_reruns_an_unfinished_action(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    ledger, started, go = tmp_path / "ledger", tmp_path / "started", tmp_path / "go"
    rb = tmp_path / "rb.yaml"
    rb.write_text(
        RUNBOOK.format(ledger=ledger, started=started, go=go).replace(
            'command: "echo first >> ',
            f'command: "echo $$ > {started}; test -f {go} || exec sleep 60; echo first >> ',
        )
    )
    _killed_at(_start(rb, tmp_path, cli_env), started)
    deadline = time.monotonic() + 10
    while not started.read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):  # the orphaned command leads its own group
        os.killpg(int(started.read_text()), signal.SIGKILL)
    [old] = logs_in(tmp_path / "logs")
    go.touch()
    args = ["run", str(rb), "--yes", "--resume", str(old)]
    code, out = _run_on_pty(args, b"y\n", tmp_path, cli_env)
    assert code == 3, out
    assert "type 'first-fix' to proceed" in out and not ledger.exists()
    code, out = _run_on_pty(args, b"first-fix\n", tmp_path, cli_env)
    assert code == 0, out
    assert ledger.read_text().splitlines() == ["first", "second"]


def test_a_resumed_run_is_refused_on_other_hosts(tmp_path: Path, run_cli: RunCli) -> None:
    ledger = tmp_path / "ledger"
    (tmp_path / "old.ini").write_text("[web]\na.local\nb.local\n")
    (tmp_path / "new.ini").write_text("[web]\na.local\nc.local\n")
    rb = tmp_path / "rb.yaml"
    rb.write_text(
        f"""\
apiVersion: runbook/v1
kind: Runbook
metadata: {{name: hosts, title: Hosts, severity: P2}}
targets:
  web: {{transport: local, hosts: ["{{{{ inventory.web }}}}"]}}
steps:
  - id: fix
    phase: mitigate
    action: {{shell: {{command: "echo fix >> {ledger}", target: web}}}}
  - id: check
    phase: resolve
    check: {{shell: {{argv: ["false"]}}}}
"""
    )
    assert run_cli("run", str(rb), "--yes", "--inventory", "old.ini").code == 1
    [old] = logs_in(tmp_path / "logs")
    other = run_cli("run", str(rb), "--yes", "--resume", str(old), "--inventory", "new.ini")
    assert other.code == 2, other.text
    assert "target 'web': [a.local, b.local] then, [a.local, c.local] now" in other.err
    same = run_cli("run", str(rb), "--yes", "--resume", str(old), "--inventory", "old.ini")
    assert same.code == 1, same.text
    assert ledger.read_text().splitlines() == ["fix", "fix"]  # once per host, never again
