"""list/show/log views, and the observer hook through a real plugin."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from support.helpers import logs_in, make_plugin_dist

from runbook.log.journal import read_log

ROOT = Path(__file__).resolve().parents[2]

RB = """\
apiVersion: runbook/v1
kind: Runbook
metadata: {name: viewme, title: View me, severity: P1, tags: [demo-tag]}
params:
  svc: {type: string, default: api, pattern: "^[a-z]+$", description: the service}
steps:
  - {id: probe, phase: detect, check: {shell: {argv: ['false']}}, on_failure: continue}
  - id: fix
    phase: mitigate
    when: "not steps.probe.passed"
    action: {shell: {argv: [echo, "{{ params.svc }}"]}}
    confirm: "Fix {{ params.svc }}?"
"""


def test_list_shows_local_and_shipped_runbooks_with_filters(run_cli, tmp_path):
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "viewme.yaml").write_text(RB)
    listing = run_cli("list")
    assert listing.code == 0
    assert "viewme" in listing.out and "P1" in listing.out and "demo-tag" in listing.out
    assert "service-outage" in listing.out
    assert "service-outage" not in run_cli("list", "--tag", "demo-tag").out
    assert "viewme" not in run_cli("list", "--severity", "P0").out


def test_show_outlines_phases_gates_and_params(run_cli, write_runbook):
    out = run_cli("show", str(write_runbook(RB))).out
    assert "detect:" in out and "mitigate:" in out
    assert "svc: string" in out and "the service" in out
    assert "confirm" in out and "when not steps.probe.passed" in out


def test_log_list_show_and_verify(run_cli, write_runbook, tmp_path):
    assert run_cli("run", str(write_runbook(RB)), "--yes").code == 0
    log = logs_in(tmp_path / "logs")[0]
    listing = run_cli("log", "list", "--log-dir", str(tmp_path / "logs"))
    assert "viewme" in listing.out and "passed" in listing.out
    shown = run_cli("log", "show", str(log))
    assert shown.code == 0
    assert "probe" in shown.out and "fix" in shown.out and "tester" in shown.out
    assert run_cli("log", "verify", str(log)).code == 0
    lines = log.read_text().splitlines()
    record = json.loads(lines[3])
    lines[3] = lines[3].replace(record["ts"], record["ts"].replace("Z", "0Z"), 1)
    log.write_text("\n".join(lines) + "\n")
    tampered = run_cli("log", "verify", str(log))
    assert tampered.code == 5 and "seq 3" in tampered.err.replace("seq=", "seq ")


def test_observer_plugin_sees_every_step_and_a_broken_one_does_not_fail_the_run(
    run_cli, write_runbook, tmp_path
):
    events = tmp_path / "events.jsonl"
    site = make_plugin_dist(
        tmp_path / "site",
        "runbook-observer",
        "runbook_observer",
        f"""
import json
from runbook import hookimpl

@hookimpl
def runbook_step_finished(event):
    with open({str(events)!r}, "a") as f:
        f.write(json.dumps({{"step": event.step_id, "status": event.status,
                            "phase": event.phase, "severity": event.severity}}) + "\\n")
    if event.step_id == "fix":
        raise RuntimeError("webhook down")
""",
    )
    result = run_cli("run", str(write_runbook(RB)), "--yes", env={"PYTHONPATH": str(site)})
    assert result.code == 0, result.text
    seen = [json.loads(line) for line in events.read_text().splitlines()]
    assert [(e["step"], e["status"]) for e in seen] == [("probe", "failed"), ("fix", "passed")]
    assert seen[0]["severity"] == "P1"
    records = read_log(logs_in(tmp_path / "logs")[0])
    errors = [r["data"]["message"] for r in records if r["type"] == "observer.error"]
    assert errors and "webhook down" in errors[0]


def test_every_hookspec_is_documented_and_exercised():
    """datasette's idea: a hook nobody documents or tests is a hook nobody can rely on."""
    tree = ast.parse((ROOT / "runbook" / "hookspecs.py").read_text())
    hooks = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert hooks, "no hooks found"
    docs = "\n".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    tests = "\n".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    plugins = "\n".join(p.read_text() for p in (ROOT / "plugins").glob("*.py"))
    for hook in hooks:
        assert f"`{hook}" in docs, f"{hook} is not documented in docs/"
        assert hook in tests or hook in plugins, f"{hook} is not exercised"
