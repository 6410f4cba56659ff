"""The Python API is the CLI's front door: same checks, same errors, a real verified log.

`runbook.session.Session` is what `runbook run`, the pytest plugin and scripts
all go through, so a bad `--only` is refused the same way from every one of
them, before any incident log is opened.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from support.cli import RunCli

from runbook.errors import ExitCode, InvalidInput, PlanMismatch, RunbookError
from runbook.log.journal import verify_log
from runbook.run.runner import RunOptions
from runbook.session import Session

RUNBOOK = """
apiVersion: runbook/v1
kind: Runbook
metadata: {name: tiny, title: Tiny, severity: P3}
params:
  word: {type: string, default: hello, pattern: "^[a-z]+$"}
  token: {type: string, secret: true, required: false}
steps:
  - id: greet
    phase: detect
    check: {shell: {argv: [echo, "{{ params.word }}"]}}
    expect: ["exit_code == 0"]
  - id: fix
    phase: mitigate
    action: {shell: {argv: [echo, fixed]}}
"""


@pytest.fixture
def runbook_path(write_runbook: Callable[[str, str], Path]) -> Path:
    return write_runbook(RUNBOOK, "tiny.yaml")


@pytest.fixture
def session(tmp_path: Path) -> Session:
    return Session(log_dir=tmp_path / "api-logs")


@pytest.mark.parametrize(
    "options",
    [RunOptions(only=("greet", "nope")), RunOptions(from_step="nope")],
    ids=["only", "from"],
)
def test_python_api_refuses_a_step_selection_naming_no_step(
    session: Session, runbook_path: Path, options: RunOptions
) -> None:
    rb = session.load(runbook_path)
    with pytest.raises(InvalidInput) as raised:
        session.run(rb, session.params(rb), options)
    assert str(raised.value) == "no step 'nope' in runbook 'tiny'"
    assert raised.value.exit_code == ExitCode.INVALID
    assert not session.log_dir.exists()  # refused before any log was opened


def test_python_api_runs_a_runbook_end_to_end_with_a_log_that_verifies(
    session: Session, runbook_path: Path
) -> None:
    rb = session.load(str(runbook_path))
    params = session.params(rb, {"word": "hi", "token": "s3cret"})
    result = session.run(rb, params, RunOptions(yes=True, operator="api-test"))

    assert result.exit_code == ExitCode.OK
    assert result.log_path.parent == session.log_dir
    assert verify_log(result.log_path).ok
    records = result.records()
    header = records[0]["data"]
    assert header["params"] == {"word": "hi", "token": "***"}
    assert header["operator"] == "api-test"
    finished = [r["data"] for r in records if r["type"] == "step.finished"]
    assert [(d["step"], d["status"]) for d in finished] == [("greet", "passed"), ("fix", "passed")]
    assert records[-1]["type"] == "run.finished"
    assert records[-1]["data"]["status"] == "passed"


def test_python_api_only_runs_the_selected_steps(session: Session, runbook_path: Path) -> None:
    rb = session.load(runbook_path)
    result = session.run(rb, session.params(rb), RunOptions(only=("greet",)))

    assert result.exit_code == ExitCode.OK
    skipped = [r["data"]["step"] for r in result.records() if r["type"] == "step.skipped"]
    assert skipped == ["fix"]


def test_the_plugin_registry_is_loaded_once_per_session(session: Session) -> None:
    assert session.registry is session.registry
    assert "shell" in session.executors


def test_the_pytest_plugin_hands_out_its_session(
    runbook_session: Session, runbook_registry: object
) -> None:
    assert isinstance(runbook_session, Session)
    assert runbook_session.registry is runbook_registry


BadOption = Callable[[Session, Path, Path], object]


def _only(session: Session, rb: Path, tmp: Path) -> object:
    runbook = session.load(rb)
    return session.run(runbook, session.params(runbook), RunOptions(only=("nope",)))


def _from(session: Session, rb: Path, tmp: Path) -> object:
    runbook = session.load(rb)
    return session.run(runbook, session.params(runbook), RunOptions(from_step="nope"))


def _plan(session: Session, rb: Path, tmp: Path) -> object:
    runbook = session.load(rb)
    return session.run(runbook, session.params(runbook, {"word": "bye"}), plan=tmp / "plan.json")


def _resume(session: Session, rb: Path, tmp: Path) -> object:
    runbook = session.load(rb)
    return session.resume_point(tmp / "missing.jsonl", runbook)


@pytest.mark.parametrize(
    ("argv", "api", "error"),
    [
        (["--only", "nope"], _only, InvalidInput),
        (["--from", "nope"], _from, InvalidInput),
        (["-p", "word=bye", "--plan", "{tmp}/plan.json"], _plan, PlanMismatch),
        (["--resume", "{tmp}/missing.jsonl"], _resume, InvalidInput),
    ],
    ids=["only", "from", "plan", "resume"],
)
def test_cli_and_session_give_the_same_error_for_the_same_bad_option(
    run_cli: RunCli,
    session: Session,
    runbook_path: Path,
    tmp_path: Path,
    argv: list[str],
    api: BadOption,
    error: type[RunbookError],
) -> None:
    rb = session.load(runbook_path)
    (tmp_path / "plan.json").write_text(session.plan(rb, session.params(rb)).to_json())

    cli = run_cli("run", str(runbook_path), *[a.format(tmp=tmp_path) for a in argv])
    with pytest.raises(error) as raised:
        api(session, runbook_path, tmp_path)

    assert cli.code == raised.value.exit_code == ExitCode.INVALID
    assert cli.err == f"runbook: error: {raised.value}\n"
    assert not (tmp_path / "logs").exists() and not session.log_dir.exists()
