"""How a run ends: failures apart from errors, a log that always ends, steps that always run.

Each test drives the real CLI against real things: a closed loopback port for "could
not check" (connection refused), a local HTTP server for a check that answers, real
processes and signals. The rules (docs/runbook-format.md, How a run ends): a failure
`on_failure` handles does not fail the run; an `error` outside the detect phase that
only `on_failure` let through keeps the run from passing; a run whose resolve-phase
checks never passed cannot pass; `always: true` steps run whatever happened.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.cli import RunCli
from support.helpers import logs_in, make_plugin_dist
from support.http_servers import LocalHTTPServer, closed_port, http_server

from runbook.log.journal import read_log

HEAD = """\
apiVersion: runbook/v1
kind: Runbook
metadata: {name: verdicts, title: Verdicts, severity: P2}
"""


@pytest.fixture
def server() -> Iterator[LocalHTTPServer]:
    with http_server() as srv:
        srv.route("/ok", json={"status": "ok"})
        srv.route("/down", status=503)
        yield srv


@pytest.fixture
def refused() -> str:
    """A URL on a loopback port where nothing listens: every request is refused."""
    return f"http://127.0.0.1:{closed_port()}/health"


def the_log(tmp_path: Path) -> list[dict[str, Any]]:
    [path] = logs_in(tmp_path / "logs")
    return read_log(path)


def finished(records: list[dict[str, Any]]) -> dict[str, str]:
    return {r["data"]["step"]: r["data"]["status"] for r in records if r["type"] == "step.finished"}


def record_of(records: list[dict[str, Any]], kind: str, step: str) -> dict[str, Any]:
    [data] = [r["data"] for r in records if r["type"] == kind and r["data"].get("step") == step]
    return dict(data)


def run_end(records: list[dict[str, Any]]) -> dict[str, Any]:
    assert records[-1]["type"] in ("run.finished", "run.interrupted"), records[-1]
    return dict(records[-1]["data"])


def assert_verifies(run_cli: RunCli, tmp_path: Path) -> None:
    [path] = logs_in(tmp_path / "logs")
    result = run_cli("log", "verify", str(path))
    assert result.code == 0, result.text


# -- a `when:` that reads a value that is not there ----------------------------------------


def test_when_reading_the_answer_of_a_skipped_manual_step_skips_with_a_note(
    run_cli: RunCli, write_runbook, tmp_path: Path
) -> None:
    """docs/migration.md's pattern: a manual decision asked only during an incident."""
    rb = write_runbook(
        HEAD
        + """
steps:
  - {id: health, phase: detect, check: {shell: {argv: ['true']}}}
  - id: rollback-decision
    phase: mitigate
    when: "not steps.health.passed"
    check: {manual: {prompt: "Roll back?", choices: [roll back, keep]}}
  - id: rollback
    phase: mitigate
    when: "steps['rollback-decision'].answer == 'roll back'"
    action: {shell: {argv: ['true']}}
  - {id: recovered, phase: resolve, check: {shell: {argv: ['true']}}}
"""
    )
    result = run_cli("run", str(rb))
    assert result.code == 0, result.text
    assert "Traceback" not in result.text and "has no key" not in result.err
    records = the_log(tmp_path)
    note = record_of(records, "step.skipped", "rollback")
    assert note["undefined"] == "steps['rollback-decision'].answer"
    assert "is undefined (step 'rollback-decision' skipped)" in note["reason"]
    assert "steps['rollback-decision'].answer is undefined" in result.out  # shown, not hidden
    assert finished(records) == {"health": "passed", "recovered": "passed"}
    assert run_end(records)["status"] == "passed"
    assert_verifies(run_cli, tmp_path)


def test_when_reading_a_var_a_step_that_errored_never_registered_is_false(
    run_cli: RunCli, write_runbook, tmp_path: Path, refused: str
) -> None:
    rb = write_runbook(
        HEAD
        + f"""
steps:
  - id: probe
    phase: triage
    check: {{http: {{url: "{refused}", timeout: 2}}}}
    register: {{code: "status"}}
    on_error: continue
  - id: act-on-code
    phase: mitigate
    when: "vars.code == 503 or steps.probe.json.status == 'degraded'"
    check: {{shell: {{argv: ['true']}}}}
  - {{id: recovered, phase: resolve, check: {{shell: {{argv: ['true']}}}}}}
"""
    )
    result = run_cli("run", str(rb))
    assert result.code == 0, result.text
    records = the_log(tmp_path)
    [skip] = [r["data"] for r in records if r["type"] == "step.skipped"]
    assert skip["step"] == "act-on-code" and skip["undefined"] == "vars.code"
    assert finished(records) == {"probe": "error", "recovered": "passed"}
    assert "errors handled by on_error: probe" in run_end(records)["reason"]
    assert_verifies(run_cli, tmp_path)


def test_a_when_that_cannot_be_evaluated_ends_its_step_as_an_error(
    run_cli: RunCli, write_runbook, tmp_path: Path
) -> None:
    rb = write_runbook(
        HEAD
        + """
steps:
  - id: odd
    phase: triage
    when: "'a' < 1"
    check: {shell: {argv: ['true']}}
    on_error: continue
  - {id: recovered, phase: resolve, check: {shell: {argv: ['true']}}}
"""
    )
    result = run_cli("run", str(rb))
    assert result.code == 0, result.text
    records = the_log(tmp_path)
    assert finished(records) == {"odd": "error", "recovered": "passed"}
    odd = record_of(records, "step.finished", "odd")
    assert odd["message"].startswith("cannot evaluate `when: 'a' < 1`")


BUGGY_PLUGIN = """
from runbook import ExecutorSpec, StepResult, hookimpl

def plan(config, ctx):
    raise RuntimeError("plan() blew up")

def run(config, ctx):
    return StepResult(ok=True)

@hookimpl
def runbook_executors():
    return [ExecutorSpec(name="buggy", schema={"type": "object"}, plan=plan, run=run,
                         read_only=True, description="a plugin with a bug")]
"""


def test_an_unexpected_error_still_ends_the_log_and_the_always_steps_run(
    run_cli: RunCli, write_runbook, tmp_path: Path
) -> None:
    plugin = make_plugin_dist(tmp_path / "plugin", "runbook-buggy", "runbook_buggy", BUGGY_PLUGIN)
    marker = tmp_path / "always-ran"
    rb = write_runbook(
        HEAD
        + f"""
steps:
  - {{id: bug, phase: triage, check: {{buggy: {{}}}}}}
  - id: cleanup
    phase: post-incident
    always: true
    check: {{shell: {{argv: [touch, "{marker}"]}}}}
"""
    )
    result = run_cli("run", str(rb), env={"PYTHONPATH": str(plugin)})
    assert result.code == 1, result.text
    assert "Traceback" not in result.text
    records = the_log(tmp_path)
    end = run_end(records)
    assert records[-1]["type"] == "run.finished" and end["status"] == "error"
    assert "run stopped during 'bug' by an internal error at runbook_buggy.py" in end["reason"]
    assert "RuntimeError: plan() blew up" in end["reason"] and end["reason"] in result.out
    assert marker.exists() and finished(records) == {"cleanup": "passed"}
    assert_verifies(run_cli, tmp_path)


# -- errors are not failures ----------------------------------------------------------------


def test_an_errored_check_under_continue_with_no_resolve_check_passing_fails_the_run(
    run_cli: RunCli, write_runbook, tmp_path: Path, refused: str
) -> None:
    """Before: `passed … exit 0`, though nothing could be checked at all."""
    rb = write_runbook(
        HEAD
        + f"""
steps:
  - id: api
    phase: triage
    check: {{http: {{url: "{refused}", timeout: 2}}}}
    on_failure: continue
  - id: recovered
    phase: resolve
    check: {{http: {{url: "{refused}", timeout: 2}}}}
    on_failure: continue
"""
    )
    result = run_cli("run", str(rb))
    assert result.code == 1, result.text
    end = run_end(the_log(tmp_path))
    assert end["status"] == "failed" and end["exit_code"] == 1
    assert end["reason"].startswith("no resolve-phase check passed (recovered error)")
    assert "could not check or act (api: connection refused" in end["reason"]
    assert "■ failed" in result.out and "no resolve-phase check passed" in result.out


def test_resolve_checks_that_were_all_skipped_do_not_make_a_pass(
    run_cli: RunCli, write_runbook, tmp_path: Path
) -> None:
    rb = write_runbook(
        HEAD
        + """
steps:
  - {id: probe, phase: detect, check: {shell: {argv: ['false']}}, on_failure: continue}
  - id: healthy-again
    phase: resolve
    when: "steps.probe.passed"
    check: {shell: {argv: ['true']}}
"""
    )
    result = run_cli("run", str(rb))
    assert result.code == 1, result.text
    end = run_end(the_log(tmp_path))
    assert end["status"] == "failed"
    assert "no resolve-phase check passed (healthy-again skipped)" in end["reason"]


def test_steps_left_out_by_only_do_not_count_against_the_run(
    run_cli: RunCli, write_runbook, tmp_path: Path
) -> None:
    rb = write_runbook(
        HEAD
        + """
steps:
  - {id: look, phase: triage, check: {shell: {argv: ['true']}}}
  - {id: recovered, phase: resolve, check: {shell: {argv: ['false']}}}
"""
    )
    assert run_cli("run", str(rb), "--only", "look").code == 0


def test_an_error_only_on_failure_let_through_keeps_the_run_from_passing(
    run_cli: RunCli, write_runbook, tmp_path: Path, refused: str, server: LocalHTTPServer
) -> None:
    def runbook(on_error: str) -> Path:
        return write_runbook(
            HEAD
            + f"""
steps:
  - id: metrics
    phase: triage
    check: {{http: {{url: "{refused}", timeout: 2}}}}
    on_failure: continue
    {on_error}
  - id: recovered
    phase: resolve
    check: {{http: {{url: "{server.url_for("/ok")}", timeout: 5}}}}
"""
        )

    result = run_cli("run", str(runbook("")))
    assert result.code == 1, result.text
    end = run_end(the_log(tmp_path))
    assert end["status"] == "error" and end["exit_code"] == 1
    assert end["reason"].startswith("could not check or act (metrics: connection refused")
    assert "only `on_error: continue` says that is fine" in end["reason"]

    for path in logs_in(tmp_path / "logs"):
        path.unlink()
    result = run_cli("run", str(runbook("on_error: continue")))
    assert result.code == 0, result.text
    end = run_end(the_log(tmp_path))
    assert end["status"] == "passed" and end["reason"] == "errors handled by on_error: metrics"


def test_a_detect_check_that_cannot_reach_the_service_is_the_incident(
    run_cli: RunCli, write_runbook, tmp_path: Path, refused: str, server: LocalHTTPServer
) -> None:
    """Like a failing detect check (docs/cli.md): handled, it does not make the exit 1."""
    rb = write_runbook(
        HEAD
        + f"""
steps:
  - id: health
    phase: detect
    check: {{http: {{url: "{refused}", timeout: 2}}}}
    on_failure: continue
  - id: fix
    phase: mitigate
    when: "not steps.health.passed"
    action: {{shell: {{argv: ['true']}}}}
  - id: recovered
    phase: resolve
    check: {{http: {{url: "{server.url_for("/ok")}", timeout: 5}}}}
"""
    )
    result = run_cli("run", str(rb), "--yes")
    assert result.code == 0, result.text
    records = the_log(tmp_path)
    assert finished(records) == {"health": "error", "fix": "passed", "recovered": "passed"}
    assert run_end(records)["reason"] == "failures handled by on_failure (continue/goto): health"


@pytest.mark.parametrize(
    ("path", "expected_route"),
    [("/down", ["check", "next"]), (None, ["check", "escalate"])],
    ids=["failure-continues", "error-jumps"],
)
def test_on_error_routes_errors_apart_from_failures(
    run_cli: RunCli,
    write_runbook,
    tmp_path: Path,
    refused: str,
    server: LocalHTTPServer,
    path: str | None,
    expected_route: list[str],
) -> None:
    url = server.url_for(path) if path else refused
    rb = write_runbook(
        HEAD
        + f"""
steps:
  - id: check
    phase: triage
    check: {{http: {{url: "{url}", timeout: 2}}}}
    on_failure: continue
    on_error: goto escalate
  - {{id: next, phase: triage, check: {{shell: {{argv: ['true']}}}}}}
  - id: escalate
    phase: mitigate
    when: "not steps.check.passed and steps.check.status == 'error'"
    check: {{shell: {{argv: [echo, paging]}}}}
  - {{id: recovered, phase: resolve, check: {{shell: {{argv: ['true']}}}}}}
"""
    )
    result = run_cli("run", str(rb))
    assert result.code == 0, result.text
    ran = [r["data"]["step"] for r in the_log(tmp_path) if r["type"] == "step.finished"]
    assert ran[:2] == expected_route
    assert finished(the_log(tmp_path))["check"] == ("failed" if path else "error")


def test_on_error_abort_ends_the_run_where_on_failure_would_continue(
    run_cli: RunCli, write_runbook, tmp_path: Path, refused: str
) -> None:
    rb = write_runbook(
        HEAD
        + f"""
steps:
  - id: lag
    phase: triage
    check: {{http: {{url: "{refused}", timeout: 2}}}}
    on_failure: continue
    on_error: abort
  - {{id: never, phase: mitigate, check: {{shell: {{argv: ['true']}}}}}}
"""
    )
    result = run_cli("run", str(rb))
    assert result.code == 1, result.text
    records = the_log(tmp_path)
    assert "never" not in finished(records)
    assert run_end(records)["reason"].startswith("step 'lag' error: connection refused")


# -- always steps ---------------------------------------------------------------------------


def always_step(marker: Path) -> str:
    """An always step that writes how the run went, for the test to read."""
    return f"""
  - id: page-on-call
    phase: post-incident
    always: true
    check: {{shell: {{command: "echo {{{{ run.status }}}} > {marker}"}}}}
  - id: notify-end
    phase: post-incident
    always: true
    action: {{notify: {{message: "run ended {{{{ run.status }}}}"}}}}
"""


def test_always_steps_run_after_an_abort_and_keep_the_run_failed(
    run_cli: RunCli, write_runbook, tmp_path: Path
) -> None:
    marker = tmp_path / "paged"
    rb = write_runbook(
        HEAD
        + """
steps:
"""
        + always_step(marker)
        + """
  - {id: broken, phase: mitigate, check: {shell: {argv: ['false']}}}
  - {id: never, phase: resolve, check: {shell: {argv: ['true']}}}
"""
    )
    result = run_cli("run", str(rb))
    assert result.code == 1, result.text
    records = the_log(tmp_path)
    ran = {"broken": "failed", "page-on-call": "passed", "notify-end": "passed"}
    assert finished(records) == ran
    assert marker.read_text().strip() == "failed"
    assert "run ended failed" in result.out
    started = [r["data"] for r in records if r["type"] == "step.started"]
    assert [d.get("always", False) for d in started] == [False, True, True]
    end = run_end(records)
    assert end["status"] == "failed" and end["reason"].startswith("step 'broken' failed")
    assert_verifies(run_cli, tmp_path)


def test_always_steps_run_after_the_run_deadline(
    run_cli: RunCli, write_runbook, tmp_path: Path
) -> None:
    marker = tmp_path / "paged"
    rb = write_runbook(
        HEAD
        + """
steps:
  - {id: slow, phase: mitigate, check: {shell: {argv: [sleep, "30"]}}}
"""
        + always_step(marker)
    )
    result = run_cli("run", str(rb), "--deadline", "1s")
    assert result.code == 4, result.text
    records = the_log(tmp_path)
    assert marker.read_text().strip() == "timeout"
    assert finished(records)["page-on-call"] == "passed"
    assert run_end(records)["status"] == "timeout"
    assert "page-on-call" in result.out  # shown, though the timed-out step never finished
    assert_verifies(run_cli, tmp_path)


def test_always_steps_run_after_sigint_and_the_run_still_exits_130(
    run_cli: RunCli, write_runbook, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    marker = tmp_path / "paged"
    rb = write_runbook(
        HEAD
        + """
steps:
  - {id: slow, phase: mitigate, check: {shell: {argv: [sleep, "60"]}}}
"""
        + always_step(marker)
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "runbook", "run", str(rb)],
        cwd=tmp_path,
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    until = time.monotonic() + 30
    while not any('"type":"step.attempt"' in p.read_text() for p in logs_in(tmp_path / "logs")):
        assert time.monotonic() < until and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    records = the_log(tmp_path)
    assert marker.read_text().strip() == "interrupted"
    assert finished(records) == {"page-on-call": "passed", "notify-end": "passed"}
    end = run_end(records)
    assert records[-1]["type"] == "run.interrupted" and end["step"] == "slow"
    assert "(SIGINT)" in end["reason"]
    assert_verifies(run_cli, tmp_path)


def test_an_always_steps_failure_fails_a_passing_run_unless_it_continues(
    run_cli: RunCli, write_runbook, tmp_path: Path
) -> None:
    def runbook(on_failure: str) -> Path:
        return write_runbook(
            HEAD
            + f"""
steps:
  - {{id: recovered, phase: resolve, check: {{shell: {{argv: ['true']}}}}}}
  - id: flaky-pager
    phase: post-incident
    always: true
    check: {{shell: {{argv: ['false']}}}}{on_failure}
  - {{id: after-it, phase: post-incident, always: true, check: {{shell: {{argv: ['true']}}}}}}
"""
        )

    result = run_cli("run", str(runbook("")))
    assert result.code == 1, result.text
    records = the_log(tmp_path)
    assert finished(records)["after-it"] == "passed"  # the others still run
    assert run_end(records)["reason"].startswith("step 'flaky-pager' failed")

    for path in logs_in(tmp_path / "logs"):
        path.unlink()
    assert run_cli("run", str(runbook("\n    on_failure: continue"))).code == 0


def test_an_always_action_obeys_its_gate_and_cannot_change_how_the_run_ended(
    run_cli: RunCli, write_runbook, tmp_path: Path
) -> None:
    marker = tmp_path / "cleaned"
    rb = write_runbook(
        HEAD
        + f"""
steps:
  - {{id: broken, phase: mitigate, check: {{shell: {{argv: ['false']}}}}}}
  - id: cleanup
    phase: post-incident
    always: true
    action: {{shell: {{argv: [touch, "{marker}"]}}}}
    confirm: "Clean up?"
"""
    )
    result = run_cli("run", str(rb))  # unattended: no terminal, no --yes
    assert result.code == 1, result.text  # failed, not 3: the decline does not replace it
    records = the_log(tmp_path)
    assert finished(records) == {"broken": "failed", "cleanup": "declined"}
    assert not marker.exists()
    [gate] = [r["data"] for r in records if r["type"] == "step.confirmation"]
    assert gate["accepted"] is False and gate["method"] == "no-terminal"


def test_a_dry_run_plans_always_steps_and_runs_none(
    run_cli: RunCli, write_runbook, tmp_path: Path
) -> None:
    marker = tmp_path / "touched"
    rb = write_runbook(
        HEAD
        + f"""
steps:
  - {{id: look, phase: triage, check: {{shell: {{argv: ['true']}}}}}}
  - id: cleanup
    phase: post-incident
    always: true
    action: {{shell: {{argv: [touch, "{marker}"]}}}}
    confirm: "Clean up?"
"""
    )
    result = run_cli("run", str(rb), "--dry-run")
    assert result.code == 0, result.text
    records = the_log(tmp_path)
    assert finished(records)["cleanup"] == "planned" and not marker.exists()


def test_the_runbook_format_keeps_always_steps_apart(run_cli: RunCli, write_runbook) -> None:
    rb = write_runbook(
        HEAD
        + """
steps:
  - id: page
    phase: post-incident
    always: true
    on_failure: goto look
    action: {notify: {message: x}}
  - id: look
    phase: triage
    when: "steps.page.passed"
    check: {shell: {argv: ['true']}}
    on_error: goto page
"""
    )
    result = run_cli("validate", str(rb))
    assert result.code == 2
    assert "steps[0].on_failure: 'goto look': an `always` step cannot jump" in result.err
    assert "steps[1].when: 'steps.page' is an `always` step: it runs after the normal" in result.err
    assert "steps[1].on_error: 'goto page': 'page' is an `always` step" in result.err


# -- reports ----------------------------------------------------------------------------------


def test_reports_tell_a_check_that_could_not_check_from_one_that_failed(
    run_cli: RunCli, write_runbook, tmp_path: Path, refused: str, server: LocalHTTPServer
) -> None:
    rb = write_runbook(
        HEAD
        + f"""
steps:
  - id: unreachable
    phase: triage
    check: {{http: {{url: "{refused}", timeout: 2}}}}
    on_error: continue
  - id: unhealthy
    phase: triage
    check: {{http: {{url: "{server.url_for("/down")}", timeout: 5}}}}
    on_failure: continue
  - id: recovered
    phase: resolve
    check: {{http: {{url: "{server.url_for("/ok")}", timeout: 5}}}}
"""
    )
    assert run_cli("run", str(rb)).code == 0
    [log] = logs_in(tmp_path / "logs")

    junit = run_cli("report", str(log), "--format", "junit")
    assert junit.code == 0, junit.text
    cases = {c.get("name"): c for c in ET.fromstring(junit.out).iter("testcase")}
    error, failure = cases["unreachable"].find("error"), cases["unhealthy"].find("failure")
    assert error is not None and cases["unreachable"].find("failure") is None
    assert "connection refused" in (error.get("message") or "")
    assert failure is not None and cases["unhealthy"].find("error") is None
    suite = next(ET.fromstring(junit.out).iter("testsuite"))
    assert (suite.get("errors"), suite.get("failures")) == ("1", "1")

    report = run_cli("report", str(log), "--format", "json")
    steps = {s["id"]: s["status"] for s in json.loads(report.out)["steps"]}
    assert steps["unreachable"] == "error" and steps["unhealthy"] == "failed"

    postmortem = run_cli("report", str(log), "--format", "postmortem").out
    sections = {part.split("\n", 1)[0]: part for part in postmortem.split("\n## ")}
    assert "**unhealthy**" in sections["Checks that failed"]
    assert "**unreachable**" not in sections["Checks that failed"]
    assert "**unreachable**" in sections["Checks that could not check (error)"]
