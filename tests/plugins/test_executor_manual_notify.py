"""manual (answers from --answer or a terminal) and notify (a real webhook receiver)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from support.cli import RunCli
from support.helpers import logs_in
from support.http_servers import LocalHTTPServer, closed_port, http_server

from runbook.contract import ExecContext, ExecutorSpec, OperatorIO, PlanContext, StepResult
from runbook.errors import ExitCode, OperatorDeclined
from runbook.log.journal import read_log
from runbook.registry import PluginRegistry


@pytest.fixture(scope="module")
def registry() -> PluginRegistry:
    return PluginRegistry.from_entry_points()


@pytest.fixture(scope="module")
def manual(registry: PluginRegistry) -> ExecutorSpec:
    return registry.executor("manual")


@pytest.fixture(scope="module")
def notify(registry: PluginRegistry) -> ExecutorSpec:
    return registry.executor("notify")


@pytest.fixture(scope="module")
def shared_receiver() -> Iterator[LocalHTTPServer]:
    with http_server() as server:
        yield server


@pytest.fixture
def receiver(shared_receiver: LocalHTTPServer) -> LocalHTTPServer:
    shared_receiver.reset()
    return shared_receiver


class ScriptedOperator:
    """A stand-in for the person at the keyboard: answers from a script, records questions."""

    def __init__(self, *answers: str, interactive: bool = True) -> None:
        self.interactive = interactive
        self.answers = list(answers)
        self.asked: list[tuple[str, tuple[str, ...]]] = []

    def ask(self, prompt: str, choices: tuple[str, ...] = ()) -> str:
        self.asked.append((prompt, choices))
        if not self.answers:
            raise OperatorDeclined("the operator walked away")
        return self.answers.pop(0)


def ask(
    manual: ExecutorSpec,
    config: Mapping[str, Any],
    *,
    answer: str | None = None,
    io: OperatorIO | None = None,
) -> StepResult:
    return manual.run(config, ExecContext(step_id="status-page", answer=answer, io=io))


QUESTION = {"prompt": "Is the status page updated?", "choices": ["yes", "no"]}


# -- manual ------------------------------------------------------------------------------------


def test_pre_supplied_answer_is_used_without_asking(manual: ExecutorSpec) -> None:
    operator = ScriptedOperator("no")
    result = ask(manual, QUESTION, answer="yes", io=operator)
    assert result.ok
    assert result.fields == {"answer": "yes"}
    assert result.output == "yes"
    assert operator.asked == []


def test_answer_matches_choices_case_insensitively(manual: ExecutorSpec) -> None:
    result = ask(manual, QUESTION, answer=" YES ")
    assert result.fields["answer"] == "yes"


def test_answer_outside_choices_fails_listing_them(manual: ExecutorSpec) -> None:
    result = ask(manual, QUESTION, answer="maybe")
    assert not result.ok
    assert result.error == "answer 'maybe' is not one of 'yes', 'no'"


def test_free_text_answer_without_choices(manual: ExecutorSpec) -> None:
    result = ask(manual, {"prompt": "Incident ticket?"}, answer="INC-1234")
    assert result.ok and result.output == "INC-1234"


def test_interactive_operator_is_asked_with_help_and_choices(manual: ExecutorSpec) -> None:
    operator = ScriptedOperator("no")
    config = {**QUESTION, "help": "See https://status.example.com"}
    result = ask(manual, config, io=operator)
    assert result.fields["answer"] == "no"
    assert operator.asked == [
        ("See https://status.example.com\nIs the status page updated?", ("yes", "no"))
    ]


def test_interactive_answer_outside_choices_fails(manual: ExecutorSpec) -> None:
    result = ask(manual, QUESTION, io=ScriptedOperator("perhaps"))
    assert not result.ok
    assert result.error is not None and "'perhaps' is not one of" in result.error


def test_operator_declining_propagates(manual: ExecutorSpec) -> None:
    with pytest.raises(OperatorDeclined, match="walked away"):
        ask(manual, QUESTION, io=ScriptedOperator())


@pytest.mark.parametrize("io", [None, ScriptedOperator("yes", interactive=False)])
def test_without_a_terminal_the_step_refuses_and_says_how_to_answer(
    manual: ExecutorSpec, io: OperatorIO | None
) -> None:
    with pytest.raises(OperatorDeclined) as caught:
        ask(manual, QUESTION, io=io)
    assert str(caught.value) == (
        "step 'status-page' asks the operator 'Is the status page updated?' but there is "
        "no terminal; answer it with --answer status-page=TEXT"
    )
    assert caught.value.exit_code == ExitCode.DECLINED


def test_manual_plan_shows_the_question(manual: ExecutorSpec) -> None:
    planned = manual.plan(QUESTION, PlanContext(step_id="status-page"))
    assert planned.summary == "ask the operator: Is the status page updated? [yes / no]"
    assert planned.detail == {"prompt": "Is the status page updated?", "choices": ["yes", "no"]}


def test_manual_is_its_own_gate_and_never_runs_in_a_dry_run(manual: ExecutorSpec) -> None:
    assert manual.needs_confirmation is False
    assert manual.is_read_only(QUESTION) is False


# -- notify --------------------------------------------------------------------------------------


def send(notify: ExecutorSpec, config: Mapping[str, Any], **ctx: Any) -> StepResult:
    return notify.run(config, ExecContext(step_id="tell", **ctx))


def test_message_without_webhook_is_for_the_console(notify: ExecutorSpec) -> None:
    result = send(notify, {"message": "API degraded\nmitigating"})
    assert result.ok
    assert result.output == "API degraded\nmitigating"
    assert result.fields == {
        "message": "API degraded\nmitigating",
        "title": None,
        "delivered": False,
        "webhook_status": None,
        "webhook_error": None,
        "stdout": True,
    }


def test_webhook_receives_slack_json(notify: ExecutorSpec, receiver: LocalHTTPServer) -> None:
    receiver.route("POST /hooks/T000/B000/secret", body="ok")
    url = receiver.url_for("/hooks/T000/B000/secret")
    result = send(
        notify, {"message": "API degraded", "webhook": url, "channel": "#inc", "stdout": False}
    )
    assert result.ok
    assert result.fields["delivered"] is True
    assert result.fields["webhook_status"] == 200
    assert result.fields["webhook_error"] is None
    assert result.fields["stdout"] is False
    [received] = receiver.requests
    assert received.method == "POST"
    assert received.headers["content-type"] == "application/json"
    assert received.json() == {"text": "API degraded", "channel": "#inc"}


def test_title_is_sent_in_bold_above_the_message(
    notify: ExecutorSpec, receiver: LocalHTTPServer
) -> None:
    receiver.route("/hook", status=204)
    send(
        notify,
        {"message": "details", "title": "P0: API down", "webhook": receiver.url_for("/hook")},
    )
    assert receiver.requests[0].json() == {"text": "*P0: API down*\ndetails"}


def test_failing_webhook_is_recorded_but_does_not_fail_the_step(
    notify: ExecutorSpec, receiver: LocalHTTPServer
) -> None:
    receiver.route("/hooks/T1/B1/s3cr3t", status=500, body="internal\nerror")
    result = send(notify, {"message": "hi", "webhook": receiver.url_for("/hooks/T1/B1/s3cr3t")})
    assert result.ok and result.error is None
    assert result.fields["delivered"] is False
    assert result.fields["webhook_status"] == 500
    assert result.fields["webhook_error"] == (
        f"webhook answered 500 Internal Server Error: POST {receiver.url}/… (internal error)"
    )


def test_failing_webhook_fails_the_step_with_fail_on_error(
    notify: ExecutorSpec, receiver: LocalHTTPServer
) -> None:
    receiver.route("/hook", status=404)
    result = send(
        notify, {"message": "hi", "webhook": receiver.url_for("/hook"), "fail_on_error": True}
    )
    assert not result.ok
    assert result.error == f"webhook answered 404 Not Found: POST {receiver.url}/…"
    assert result.fields["webhook_status"] == 404
    assert result.output == "hi"


def test_unreachable_webhook_never_shows_its_secret_path(notify: ExecutorSpec) -> None:
    url = f"http://127.0.0.1:{closed_port()}/services/T0/B0/XXXXsecretXXXX"
    result = send(notify, {"message": "hi", "webhook": url})
    assert result.ok
    error = result.fields["webhook_error"]
    assert error == f"connection refused: POST {url.split('/services')[0]}/…"
    assert "secret" not in error
    failed = send(notify, {"message": "hi", "webhook": url, "fail_on_error": True})
    assert not failed.ok and failed.error == error


def test_slow_webhook_times_out(notify: ExecutorSpec, receiver: LocalHTTPServer) -> None:
    receiver.route("/hook", delay=5)
    result = send(
        notify,
        {
            "message": "hi",
            "webhook": receiver.url_for("/hook"),
            "timeout": 0.2,
            "fail_on_error": True,
        },
    )
    assert not result.ok and result.timed_out
    assert result.error == f"timed out after 0.2s: POST {receiver.url}/…"


def test_cancelled_run_sends_nothing(notify: ExecutorSpec, receiver: LocalHTTPServer) -> None:
    cancel = threading.Event()
    cancel.set()
    result = send(notify, {"message": "hi", "webhook": receiver.url_for("/hook")}, cancel=cancel)
    assert result.fields["delivered"] is False
    assert receiver.requests == []


def test_notify_plan_shows_the_webhook(notify: ExecutorSpec) -> None:
    config = {
        "message": "API degraded\nsecond line",
        "webhook": "https://hooks.example.com/x",
        "channel": "#inc",
    }
    planned = notify.plan(config, PlanContext(step_id="tell"))
    assert planned.summary == "notify: API degraded + POST https://hooks.example.com/x"
    assert planned.detail == {
        "message": "API degraded\nsecond line",
        "webhook": "https://hooks.example.com/x",
        "channel": "#inc",
    }
    console_only = notify.plan({"message": "hi"}, PlanContext(step_id="tell"))
    assert console_only.summary == "notify: hi"


def test_notify_is_not_gated_and_never_sent_in_a_dry_run(notify: ExecutorSpec) -> None:
    assert notify.needs_confirmation is False
    assert notify.is_read_only({"message": "hi"}) is False
    assert notify.default_expect == ()


NOTIFY_STEP = """
apiVersion: runbook/v1
kind: Runbook
metadata: {name: tell, title: Tell people, severity: P2}
steps:
  - id: tell
    phase: mitigate
    action: {notify: {message: "restarting api (run {{ run.id }})", webhook: "STEP_HOOK"}}
  - {id: recovered, phase: resolve, check: {shell: {argv: ["true"]}}}
"""


def test_a_notify_step_is_sent_before_the_log_ends_so_run_finished_is_the_anchor(
    run_cli: RunCli, write_runbook: Any, receiver: LocalHTTPServer, tmp_path: Path
) -> None:
    """A step's message leaves while records are still to come; only the run-finished
    notification, sent once the final record is durable, carries the final hash."""
    receiver.route("POST /step", body="ok")
    receiver.route("POST /observer", body="ok")
    rb = write_runbook(NOTIFY_STEP.replace("STEP_HOOK", receiver.url_for("/step")))
    result = run_cli("run", str(rb), env={"RUNBOOK_NOTIFY_WEBHOOK": receiver.url_for("/observer")})
    assert result.code == 0, result.text
    [log] = logs_in(tmp_path / "logs")
    records = read_log(log)

    [step_post] = [r for r in receiver.requests if r.path == "/step"]
    finished = receiver.requests[-1]
    assert finished.path == "/observer"
    assert finished.json()["runbook_notification"]["kind"] == "finished"
    sent_at = next(
        r["seq"] for r in records if r["type"] == "step.result" and r["data"]["step"] == "tell"
    )
    assert records[-1]["seq"] > sent_at + 1  # the step's end, the next step, the run's end
    final = records[-1]["sha256"]
    assert final not in step_post.text
    assert finished.json()["runbook_notification"]["final_hash"] == final


# -- schemas ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["shell", "http", "manual", "notify"])
def test_every_builtin_schema_is_closed_and_documented(registry: PluginRegistry, name: str) -> None:
    entry = registry.executors()[name]
    schema = entry.spec.schema
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is False
    assert all(prop.get("description") for prop in schema["properties"].values())
    assert entry.spec.description and entry.spec.result_fields
    assert entry.plugin.distribution == "runbook-as-code"


@pytest.mark.parametrize(
    ("name", "config", "valid"),
    [
        ("manual", {"prompt": "ok?"}, True),
        ("manual", {"prompt": "ok?", "choices": ["a", "a"]}, False),
        ("manual", {"prompt": ""}, False),
        ("manual", {"question": "ok?"}, False),
        ("notify", {"message": "hi", "webhook": "https://h/x", "timeout": 2}, True),
        ("notify", {"webhook": "https://h/x"}, False),
        ("notify", {"message": "hi", "stdout": "yes"}, False),
    ],
)
def test_manual_and_notify_schemas(
    registry: PluginRegistry, name: str, config: dict[str, Any], valid: bool
) -> None:
    schema = registry.executor(name).schema
    assert jsonschema.Draft202012Validator(schema).is_valid(config) is valid
