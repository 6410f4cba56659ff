"""Third-party plugins through real entry points; dry-run and saved plans."""

from __future__ import annotations

import json
from pathlib import Path

from support.helpers import logs_in, make_plugin_dist, spy_source

from runbook.log.journal import read_log

HEAD = """\
apiVersion: runbook/v1
kind: Runbook
metadata: {name: spyrun, title: Spy run, severity: P3}
"""


def _plugin_env(
    tmp_path: Path, read_only: bool = False, side_effect_free: bool = False
) -> dict[str, str]:
    source = spy_source(read_only, side_effect_free)
    site = make_plugin_dist(tmp_path / "site", "runbook-spy", "runbook_spy", source)
    return {"PYTHONPATH": str(site), "SPY_LOG": str(tmp_path / "spy.log")}


def _spy_calls(tmp_path: Path) -> list[dict]:
    path = tmp_path / "spy.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_third_party_executor_is_listed_and_runs(run_cli, write_runbook, tmp_path):
    env = _plugin_env(tmp_path)
    listing = run_cli("plugins", env=env)
    assert listing.code == 0
    line = next(ln for ln in listing.out.splitlines() if ln.startswith("spy "))
    assert "runbook-spy" in line and "1.0" in line
    rb = write_runbook(HEAD + "steps:\n  - {id: s, phase: detect, check: {spy: {name: x}}}\n")
    assert run_cli("run", str(rb), env=env).code == 0
    assert [c["what"] for c in _spy_calls(tmp_path)] == ["plan", "run"]


def test_dry_run_never_calls_run_for_an_action(run_cli, write_runbook, tmp_path):
    env = _plugin_env(tmp_path, read_only=False)
    rb = write_runbook(
        HEAD
        + """
steps:
  - {id: look, phase: detect, check: {spy: {name: look}}}
  - {id: change, phase: mitigate, action: {spy: {name: change}}, confirm: "Change?"}
"""
    )
    result = run_cli("run", str(rb), "--dry-run", "--yes", env=env)
    assert result.code == 0, result.text
    calls = _spy_calls(tmp_path)
    assert ("run", "change") not in [(c["what"], c["config"]["name"]) for c in calls]
    assert any(c["what"] == "plan" and c["config"]["name"] == "change" for c in calls)
    assert "spy change" in result.out


def test_dry_run_runs_guaranteed_checks_unless_no_checks(run_cli, write_runbook, tmp_path):
    env = _plugin_env(tmp_path, read_only=True, side_effect_free=True)
    rb = write_runbook(HEAD + "steps:\n  - {id: look, phase: detect, check: {spy: {name: look}}}\n")
    assert run_cli("run", str(rb), "--dry-run", env=env).code == 0
    assert [c["what"] for c in _spy_calls(tmp_path)].count("run") == 1
    assert run_cli("run", str(rb), "--dry-run", "--no-checks", env=env).code == 0
    assert [c["what"] for c in _spy_calls(tmp_path)].count("run") == 1


def test_dry_run_log_is_marked_and_steps_depending_on_actions_are_unknown(
    run_cli, write_runbook, tmp_path
):
    rb = write_runbook(
        HEAD
        + """
steps:
  - {id: change, phase: mitigate, action: {shell: {argv: [echo, changed]}}}
  - {id: after, phase: resolve, check: {shell: {argv: [echo, "{{ steps.change.output }}"]}}}
"""
    )
    result = run_cli("run", str(rb), "--dry-run")
    assert result.code == 0, result.text
    records = read_log(logs_in(tmp_path / "logs")[0])
    assert records[0]["data"]["dry_run"] is True
    planned = {r["data"]["step"]: r["data"] for r in records if r["type"] == "step.planned"}
    assert planned["change"]["call"] == {"argv": ["echo", "changed"]}
    assert "steps.change" in planned["after"]["unknown"]


def test_duplicate_executor_names_both_plugins(run_cli, write_runbook, tmp_path):
    site = make_plugin_dist(
        tmp_path / "site",
        "evil-shell",
        "evil_shell",
        """
from runbook import ExecutorSpec, PlannedCall, StepResult, hookimpl
@hookimpl
def runbook_executors():
    return [ExecutorSpec(name="shell", schema={"type": "object"},
            plan=lambda c, x: PlannedCall("x", {}), run=lambda c, x: StepResult(ok=True))]
""",
    )
    rb = write_runbook(
        HEAD + "steps:\n  - {id: a, phase: detect, check: {shell: {argv: ['true']}}}\n"
    )
    result = run_cli("run", str(rb), env={"PYTHONPATH": str(site)})
    assert result.code == 2
    assert (
        "'shell'" in result.err and "evil-shell" in result.err and "runbook-as-code" in result.err
    )


def test_broken_plugin_is_listed_and_does_not_break_other_runbooks(
    run_cli, write_runbook, tmp_path
):
    site = make_plugin_dist(
        tmp_path / "site", "broken-plugin", "broken_plugin", "raise ImportError('needs libfoo')\n"
    )
    env = {"PYTHONPATH": str(site)}
    listing = run_cli("plugins", env=env)
    assert listing.code == 0
    assert "broken_plugin" in listing.out and "needs libfoo" in listing.out
    rb = write_runbook(
        HEAD + "steps:\n  - {id: a, phase: detect, check: {shell: {argv: ['true']}}}\n"
    )
    assert run_cli("run", str(rb), env=env).code == 0


def test_plan_file_round_trip_and_mismatch(run_cli, write_runbook, tmp_path):
    body = (
        HEAD
        + """
params:
  svc: {type: string, default: api, pattern: "^[a-z]+$"}
steps:
  - {id: restart, phase: mitigate, action: {shell: {argv: [echo, restart, "{{ params.svc }}"]}}}
"""
    )
    rb = write_runbook(body)
    plan_file = tmp_path / "plan.json"
    result = run_cli("plan", str(rb), "-o", str(plan_file))
    assert result.code == 0
    assert "$ echo restart api" in result.out
    doc = json.loads(plan_file.read_text())
    assert len(doc["digest"]) == 64
    assert run_cli("run", str(rb), "--plan", str(plan_file), "--yes").code == 0
    changed = run_cli("run", str(rb), "--plan", str(plan_file), "--yes", "-p", "svc=web")
    assert changed.code == 2
    assert "-" in changed.err and "web" in changed.err
    other = write_runbook(body.replace("name: spyrun", "name: other"), "other.yaml")
    wrong = run_cli("run", str(other), "--plan", str(plan_file), "--yes")
    assert wrong.code == 2 and "spyrun" in wrong.err


def test_plan_digest_is_stable_across_runs(run_cli, write_runbook, tmp_path):
    rb = write_runbook(
        HEAD
        + """
steps:
  - {id: n, phase: detect, action: {notify: {message: "started {{ run.started }}"}}}
"""
    )
    a = json.loads(run_cli("plan", str(rb), "--format", "json").out)["digest"]
    b = json.loads(run_cli("plan", str(rb), "--format", "json").out)["digest"]
    assert a == b


def test_plans_never_show_or_save_a_secret(run_cli, write_runbook, tmp_path):
    secret = "hunter2-Secret"
    rb = write_runbook(
        HEAD
        + """
params:
  token: {type: string, secret: true, required: true}
steps:
  - id: call
    phase: detect
    check:
      http:
        url: "http://127.0.0.1:9/api?token={{ params.token }}"
        headers: {Authorization: "Bearer {{ params.token }}"}
"""
    )
    env = {"RUNBOOK_PARAM_TOKEN": secret}
    plan_file = tmp_path / "plan.json"
    shown = run_cli("plan", str(rb), "-o", str(plan_file), env=env)
    assert shown.code == 0
    as_json = run_cli("plan", str(rb), "--format", "json", env=env)
    for text in (shown.out, as_json.out, plan_file.read_text()):
        assert secret not in text
        assert "token=***" in text
    assert run_cli("run", str(rb), "--plan", str(plan_file), "--dry-run", env=env).code == 0


def test_a_saved_plan_marks_each_call_read_only_by_what_it_does(run_cli, write_runbook, tmp_path):
    """`read_only` follows the call, not the executor: a GET reads, a POST of the same
    executor writes; an executor without a per-call rule keeps its declared flag."""
    rb = write_runbook(
        HEAD
        + "steps:\n"
        + "  - {id: get, phase: detect, check: {http: {url: 'http://127.0.0.1:9/health'}}}\n"
        + "  - id: post\n    phase: mitigate\n"
        + "    action: {http: {url: 'http://127.0.0.1:9/flush', method: POST}}\n"
        + "  - {id: sh, phase: triage, check: {shell: {command: 'true'}}}\n"
        + "  - {id: logs, phase: triage, check: {journald: {unit: api}}}\n"
    )
    assert run_cli("plan", str(rb), "-o", str(tmp_path / "plan.json")).code == 0
    steps = json.loads((tmp_path / "plan.json").read_text())["steps"]
    read_only = {s["step"]: s["read_only"] for s in steps}
    assert read_only == {"get": True, "post": False, "sh": False, "logs": True}
