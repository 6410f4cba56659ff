"""The shell executor against real processes: argv and sh strings, output, timeouts, cancel."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from runbook.contract import ExecContext, ExecutorSpec, PlanContext, StepResult
from runbook.load.model import Target
from runbook.registry import PluginRegistry


@pytest.fixture(scope="module")
def shell() -> ExecutorSpec:
    """The executor as the runner gets it: through the `runbook` entry point."""
    return PluginRegistry.from_entry_points().executor("shell")


def run(shell: ExecutorSpec, config: Mapping[str, Any], **ctx: Any) -> StepResult:
    return shell.run(config, ExecContext(step_id="step", **ctx))


def alive(pid: int) -> bool:
    """Whether `pid` still runs; a zombie (dead, not yet reaped by pid 1) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat[stat.rfind(b")") + 2 :].split()[0] not in (b"Z", b"X")


def wait_for_file(path: Path, timeout: float = 5.0) -> str:
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.02)
    raise AssertionError(f"{path} was never written")


def gone_soon(pid: int, within: float = 2.0) -> bool:
    """SIGKILL is delivered asynchronously: on a busy machine give the kernel a moment."""
    until = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > until:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def leftover_pids() -> Iterator[list[int]]:
    """Pids a test deliberately leaves running; killed afterwards whatever happens."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)


# -- running commands -----------------------------------------------------------------


def test_argv_is_passed_without_a_shell(shell: ExecutorSpec) -> None:
    result = run(shell, {"argv": ["printf", "%s", "a b; echo pwned $(id)"]})
    assert result.ok
    assert result.fields["stdout"] == "a b; echo pwned $(id)"
    assert result.output == result.fields["stdout"]
    assert result.fields["exit_code"] == 0


def test_command_string_runs_under_sh(shell: ExecutorSpec) -> None:
    result = run(shell, {"command": "echo one two | tr a-z A-Z"})
    assert result.ok
    assert result.fields["stdout"] == "ONE TWO\n"


def test_nonzero_exit_is_a_result_not_an_error(shell: ExecutorSpec) -> None:
    result = run(shell, {"command": "echo oops >&2; exit 3"})
    assert result.ok and result.error is None
    assert result.fields["exit_code"] == 3
    assert result.fields["stderr"] == "oops\n"
    assert result.fields["stdout"] == ""
    assert shell.default_expect == ("exit_code == 0",)


def test_result_has_pid_elapsed_and_the_exact_call(shell: ExecutorSpec) -> None:
    result = run(shell, {"argv": ["true"], "cwd": "/"})
    assert isinstance(result.fields["pid"], int) and result.fields["pid"] > 0
    assert 0 < result.elapsed == result.fields["elapsed"] < 5
    assert result.call == {"argv": ["true"], "cwd": "/"}


def test_env_adds_to_the_inherited_environment(shell: ExecutorSpec) -> None:
    result = run(
        shell, {"command": 'echo "$RB_SERVICE"; command -v sh', "env": {"RB_SERVICE": "api"}}
    )
    lines = result.fields["stdout"].splitlines()
    assert lines[0] == "api"
    assert lines[1].endswith("/sh")  # PATH survived


def test_cwd_sets_the_working_directory(shell: ExecutorSpec, tmp_path: Path) -> None:
    result = run(shell, {"argv": ["pwd"], "cwd": str(tmp_path)})
    assert result.fields["stdout"].strip() == str(tmp_path.resolve())


def test_missing_cwd_is_a_clear_failure(shell: ExecutorSpec, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    result = run(shell, {"argv": ["pwd"], "cwd": str(missing)})
    assert not result.ok
    assert result.error == f"working directory is not usable: {missing} (No such file or directory)"


def test_stdin_is_fed_to_the_command(shell: ExecutorSpec) -> None:
    result = run(shell, {"argv": ["tr", "a-z", "A-Z"], "stdin": "hello\n"})
    assert result.fields["stdout"] == "HELLO\n"


def test_without_stdin_the_command_reads_nothing(shell: ExecutorSpec) -> None:
    result = run(shell, {"argv": ["cat"]}, timeout=5)
    assert result.ok and result.fields["stdout"] == ""


def test_large_output_on_both_streams_does_not_deadlock(shell: ExecutorSpec) -> None:
    script = (
        "import sys\n"
        "sys.stderr.write('e' * 300_000); sys.stderr.flush()\n"
        "sys.stdout.write(sys.stdin.read().upper())\n"
    )
    result = run(
        shell, {"argv": [sys.executable, "-c", script], "stdin": "x" * 300_000}, timeout=20
    )
    assert result.ok
    assert result.fields["stdout"] == "X" * 300_000
    assert result.fields["stderr"] == "e" * 300_000


def test_output_beyond_max_output_is_truncated_with_a_note(shell: ExecutorSpec) -> None:
    result = run(shell, {"command": "printf '%0100d' 0; printf '%050d' 0 >&2", "max_output": 10})
    assert result.fields["stdout"] == "0" * 10 + (
        "\n[... truncated 90 bytes (kept the first 10) ...]"
    )
    assert result.fields["stderr"].startswith("0" * 10 + "\n[... truncated 40 bytes")


def test_undecodable_bytes_are_replaced(shell: ExecutorSpec) -> None:
    result = run(shell, {"command": r"printf 'ok\377'"})
    assert result.fields["stdout"] == "ok\ufffd"


# -- failures to start --------------------------------------------------------------------


def test_missing_program_is_command_not_found(shell: ExecutorSpec) -> None:
    result = run(shell, {"argv": ["no-such-command-rb", "--help"]})
    assert not result.ok
    assert result.error == "command not found: no-such-command-rb"
    assert result.call == {"argv": ["no-such-command-rb", "--help"]}


def test_missing_program_in_a_shell_string_exits_127(shell: ExecutorSpec) -> None:
    result = run(shell, {"command": "no-such-command-rb"})
    assert result.ok
    assert result.fields["exit_code"] == 127
    assert "not found" in result.fields["stderr"]


def test_non_executable_file_is_permission_denied(shell: ExecutorSpec, tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    result = run(shell, {"argv": [str(script)]})
    if result.ok:  # running as root with CAP_DAC_OVERRIDE still needs an x bit, but be safe
        pytest.skip("this system executes files without an execute bit")
    assert result.error == f"permission denied: {script}"


def test_remote_target_is_never_run_locally(shell: ExecutorSpec, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    web = Target(name="web", transport="ssh", options={"hosts": ["web-1.invalid"]})
    result = run(shell, {"argv": ["touch", str(marker)], "target": "web"}, target=web)
    host = result.hosts["web-1.invalid"]
    assert not host.ok
    assert host.error is not None and "web-1.invalid" in host.error
    assert not marker.exists()


def test_local_target_runs(shell: ExecutorSpec) -> None:
    result = run(shell, {"argv": ["true"], "target": "here"}, target=Target("here", "local"))
    assert result.ok


def test_unresolved_target_name_is_refused(shell: ExecutorSpec) -> None:
    result = run(shell, {"argv": ["true"], "target": "web"})
    assert not result.ok
    assert result.error == "target 'web' was not resolved: the runner passed no target details"


# -- timeouts and cancellation ---------------------------------------------------------------


@pytest.mark.slow
def test_timeout_kills_the_whole_process_group(shell: ExecutorSpec, tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    command = f"echo started; sleep 30 & echo $! > {pidfile}; wait"
    started = time.monotonic()
    result = run(shell, {"command": command}, timeout=0.5)
    took = time.monotonic() - started
    assert not result.ok and result.timed_out
    assert result.error == "timed out after 0.5s"
    assert result.fields["stdout"] == "started\n"  # what arrived before the kill is kept
    assert took < 2.0  # SIGTERM was enough; no need to wait out the SIGKILL grace
    grandchild = int(wait_for_file(pidfile))
    assert gone_soon(grandchild)
    assert gone_soon(result.fields["pid"])


@pytest.mark.slow
def test_a_group_ignoring_sigterm_is_killed(shell: ExecutorSpec, tmp_path: Path) -> None:
    pidfile = tmp_path / "stubborn.pid"
    command = f"trap '' TERM; sleep 30 & echo $! > {pidfile}; wait"
    started = time.monotonic()
    result = run(shell, {"command": command}, timeout=0.3)
    took = time.monotonic() - started
    assert result.timed_out
    assert result.fields["exit_code"] == -9
    assert 2.0 <= took < 6.0  # SIGTERM grace, then SIGKILL
    assert gone_soon(int(wait_for_file(pidfile)))


@pytest.mark.slow
def test_cancel_stops_a_running_command_and_its_children(
    shell: ExecutorSpec, tmp_path: Path
) -> None:
    pidfile = tmp_path / "grandchild.pid"
    cancel = threading.Event()
    timer = threading.Timer(0.3, cancel.set)
    timer.start()
    started = time.monotonic()
    result = run(shell, {"command": f"sleep 30 & echo $! > {pidfile}; wait"}, cancel=cancel)
    took = time.monotonic() - started
    timer.cancel()
    assert not result.ok and not result.timed_out
    assert result.error == "cancelled"
    assert 0.3 <= took < 2.0
    assert gone_soon(int(wait_for_file(pidfile)))


def test_cancel_set_before_start_runs_nothing(shell: ExecutorSpec, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    cancel = threading.Event()
    cancel.set()
    result = run(shell, {"argv": ["touch", str(marker)]}, cancel=cancel)
    assert result.error == "cancelled"
    assert not marker.exists()


@pytest.mark.slow
def test_background_child_holding_stdout_does_not_hang_the_step(
    shell: ExecutorSpec, leftover_pids: list[int]
) -> None:
    started = time.monotonic()
    result = run(shell, {"command": "sleep 30 & echo $!"}, timeout=20)
    leftover_pids.append(int(result.fields["stdout"].split()[0]))
    assert result.ok and result.fields["exit_code"] == 0
    assert time.monotonic() - started < 5  # the daemon is left alone, not waited for


# -- plan -------------------------------------------------------------------------------------


def test_plan_for_argv_is_exact_and_runs_nothing(shell: ExecutorSpec, tmp_path: Path) -> None:
    marker = tmp_path / "it ran"
    config = {"argv": ["touch", str(marker)], "env": {"A": "1"}, "cwd": "/tmp"}
    planned = shell.plan(config, PlanContext(step_id="step"))
    assert planned.summary == f"$ touch '{marker}'"
    assert planned.detail == {"argv": ["touch", str(marker)], "env": {"A": "1"}, "cwd": "/tmp"}
    assert shell.plan(config, PlanContext(step_id="step")) == planned
    assert not marker.exists()


def test_plan_for_a_command_string_names_the_shell(shell: ExecutorSpec) -> None:
    planned = shell.plan({"command": "systemctl restart 'api'"}, PlanContext(step_id="s"))
    assert planned.summary == "$ systemctl restart 'api'"
    assert planned.detail == {"command": "systemctl restart 'api'", "shell": ["/bin/sh", "-c"]}


def test_spec_declares_a_mutating_quoted_command_executor(shell: ExecutorSpec) -> None:
    assert shell.shell_fields == ("command",)
    assert not shell.is_read_only({"argv": ["ls"]})
    assert shell.needs_confirmation
    assert set(shell.result_fields) >= {"exit_code", "stdout", "stderr", "pid"}
    assert shell.description


# -- schema -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "valid"),
    [
        ({"argv": ["ls", "-l"]}, True),
        ({"command": "ls -l", "env": {"A": "b"}, "cwd": "/", "stdin": "", "max_output": 5}, True),
        ({"argv": ["ls"], "command": "ls"}, False),
        ({}, False),
        ({"argv": []}, False),
        ({"argv": ["ls"], "shell": True}, False),
        ({"command": "ls", "env": {"A": 1}}, False),
    ],
)
def test_schema_wants_exactly_one_of_argv_or_command(
    shell: ExecutorSpec, config: dict[str, Any], valid: bool
) -> None:
    validator = jsonschema.Draft202012Validator(shell.schema)
    assert validator.is_valid(config) is valid


def test_schema_is_closed_and_documented(shell: ExecutorSpec) -> None:
    jsonschema.Draft202012Validator.check_schema(shell.schema)
    assert shell.schema["additionalProperties"] is False
    for name, prop in shell.schema["properties"].items():
        assert prop.get("description"), name


def test_loading_the_plugins_starts_no_subprocess_machinery() -> None:
    code = (
        "import sys\n"
        "from runbook.registry import PluginRegistry\n"
        "PluginRegistry.from_entry_points().executors()\n"
        "print(sorted({'subprocess', 'httpx'} & set(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


# -- parse: json -------------------------------------------------------------------------------
NGINX_STATUS = '{"active": 3, "upstreams": [{"name": "api", "state": "down"}]}'


def test_parse_json_exposes_stdout_as_json(shell: ExecutorSpec) -> None:
    result = run(shell, {"argv": ["printf", "%s\n", NGINX_STATUS], "parse": "json"})
    assert result.ok, result.error
    assert result.fields["json"] == {"active": 3, "upstreams": [{"name": "api", "state": "down"}]}
    assert result.fields["stdout"] == NGINX_STATUS + "\n"  # the text is kept as it was
    assert result.call["parse"] == "json"


def test_without_parse_stdout_stays_text(shell: ExecutorSpec) -> None:
    result = run(shell, {"argv": ["echo", "1"]})
    assert "json" not in result.fields and result.fields["stdout"] == "1\n"


def test_stdout_that_is_not_json_is_an_error_saying_why(shell: ExecutorSpec) -> None:
    result = run(shell, {"command": "echo 'WARNING: deprecated'; echo '{}'", "parse": "json"})
    assert not result.ok
    assert result.error == (
        "stdout is not JSON (`parse: json`): Expecting value: line 1 column 1 (char 0); "
        "it begins 'WARNING: deprecated\\n{}'"
    )
    assert result.fields["exit_code"] == 0 and result.fields["json"] is None


def test_empty_stdout_is_not_json(shell: ExecutorSpec) -> None:
    result = run(shell, {"argv": ["true"], "parse": "json"})
    assert result.error == "stdout is not JSON (`parse: json`): empty, no JSON document"


def test_a_failed_command_is_judged_by_its_exit_status_not_its_output(
    shell: ExecutorSpec,
) -> None:
    result = run(shell, {"command": "echo 'upstream timed out'; exit 7", "parse": "json"})
    assert result.ok and result.fields["exit_code"] == 7 and result.fields["json"] is None


def test_json_cut_at_max_output_says_to_raise_it(shell: ExecutorSpec) -> None:
    config = {"argv": ["printf", "%s", NGINX_STATUS], "parse": "json", "max_output": 10}
    result = run(shell, config)
    assert result.error == (
        "stdout is not JSON (`parse: json`): it was cut at max_output (10 bytes); "
        "raise `max_output`"
    )


JSON_RUNBOOK = """
apiVersion: runbook/v1
kind: Runbook
metadata: {name: shell-json, title: Shell JSON, severity: P3}
steps:
  - id: upstreams
    phase: detect
    check:
      shell:
        argv: [printf, "%s", '{"active": 3, "upstreams": [{"name": "api", "state": "down"}]}']
        parse: json
    expect: ["json.active > 0", "json.upstreams[0].state == 'down'"]
    register: {first: "json.upstreams[0].name"}
  - id: named
    phase: triage
    when: "steps.upstreams.json.upstreams[0].state == 'down'"
    check: {shell: {argv: [echo, "{{ steps.upstreams.json.upstreams[0].name }} {{ vars.first }}"]}}
    expect: ["stdout == 'api api\\\\n'"]
  - id: done
    phase: resolve
    check: {shell: {argv: ["true"]}}
"""


def test_expect_when_register_and_templates_read_the_parsed_json(
    run_cli, write_runbook, tmp_path: Path
) -> None:
    path = write_runbook(JSON_RUNBOOK)
    result = run_cli("run", str(path), "--log-dir", "logs")
    assert result.code == 0, result.text
    (log,) = (path.parent / "logs").glob("*.jsonl")
    records = [json.loads(line) for line in log.read_text().splitlines()]
    ended = {
        r["data"]["step"]: r["data"]["status"] for r in records if r["type"] == "step.finished"
    }
    assert ended == {"upstreams": "passed", "named": "passed", "done": "passed"}
