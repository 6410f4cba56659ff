"""`runbook report`: every format built from a real run's log, checked the way its reader would.

Goldens come from a log recorded by a real run (tests/data/reports/golden-run.jsonl,
made from golden.yaml with a secret param); fresh runs check what goldens cannot
(reproducibility, tampering, plugins). Regenerate goldens with UPDATE_GOLDENS=1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import pytest
from support.cli import ROOT, RunCli
from support.helpers import logs_in, make_plugin_dist

from runbook.log.journal import JournalWriter, read_log
from runbook.registry import PluginRegistry
from runbook.run.secrets import Masker

DATA = ROOT / "tests" / "data" / "reports"
GOLDEN_LOG = DATA / "golden-run.jsonl"
SECRET = "s3cr3t-t0ken-value"
GOLDENS = {
    "postmortem": "postmortem.md",
    "json": "report.json",
    "junit": "junit.xml",
    "html": "report.html",
}

RUNBOOK = """
apiVersion: runbook/v1
kind: Runbook
metadata: {name: rep, title: "Report <b>bar</b> & co", severity: P1}
params:
  token: {type: string, secret: true, required: false, default: ""}
steps:
  - {id: up, phase: detect, check: {shell: {argv: ["echo", "up {{ params.token }}"]}}}
  - {id: down, phase: triage, check: {shell: {argv: ["false"]}}, on_failure: continue}
  - {id: fix, phase: mitigate, action: {shell: {argv: ["true"]}}, confirm: "Fix?"}
"""


@pytest.fixture(autouse=True)
def default_sla(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reports state SLA targets: keep the operator's own config out of the tests."""
    monkeypatch.delenv("RUNBOOK_SLA_FILE", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))


@pytest.fixture
def real_log(run_cli: RunCli, write_runbook, tmp_path: Path) -> Path:
    path = write_runbook(RUNBOOK)
    result = run_cli("run", str(path), "--yes", env={"RUNBOOK_PARAM_TOKEN": SECRET})
    assert result.code == 0, result.text
    [log] = logs_in(tmp_path / "logs")
    return log


def _render(fmt: str, log: Path) -> str:
    formats = PluginRegistry.from_entry_points().report_formats()
    return formats[fmt].render(read_log(log))


@pytest.mark.parametrize("fmt", sorted(GOLDENS))
def test_report_matches_golden_file(fmt: str) -> None:
    golden = DATA / GOLDENS[fmt]
    text = _render(fmt, GOLDEN_LOG)
    if os.environ.get("UPDATE_GOLDENS") == "1":
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")
    assert SECRET not in text


def test_builtin_formats_come_through_the_hook_as_a_plugin() -> None:
    registry = PluginRegistry.from_entry_points()
    assert {"postmortem", "json", "junit", "html"} <= set(registry.report_formats())
    assert "reports" in {p.name for p in registry.plugins()}


def test_postmortem_is_byte_identical_and_every_timeline_line_cites_a_seq(
    run_cli: RunCli, real_log: Path, tmp_path: Path
) -> None:
    for name in ("a.md", "b.md"):
        assert run_cli("report", str(real_log), "--format", "postmortem", "-o", name).code == 0
    first = (tmp_path / "a.md").read_bytes()
    assert first == (tmp_path / "b.md").read_bytes()
    text = first.decode()
    timeline = text.split("## Timeline")[1].split("\n## ")[0]
    events = [line for line in timeline.splitlines() if line.startswith("- ")]
    assert events and all(re.search(r"seq \d+", line) for line in events)
    assert "TO BE WRITTEN" in text.split("## Root Cause")[1].split("##")[0]
    assert "confirmed by tester via --yes" in text
    assert "assert" in text.split("## Checks that failed")[1]  # operands of `false`'s exit code


def test_json_report_validates_against_its_schema(run_cli: RunCli, real_log: Path) -> None:
    result = run_cli("report", str(real_log), "--format", "json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    schema = json.loads((ROOT / "schemas" / "report.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(report, schema)
    assert report["verification"]["ok"] is True
    assert report["sla"]["clocks"][2]["text"].startswith("mitigated in ")
    fix = next(s for s in report["steps"] if s["id"] == "fix")
    assert fix["confirmations"][0]["operator"] == "tester"


def test_junit_has_one_case_per_step_and_the_failure_message(
    run_cli: RunCli, real_log: Path
) -> None:
    result = run_cli("report", str(real_log), "--format", "junit")
    root = ET.fromstring(result.out.encode())
    cases = root.findall(".//testcase")
    assert [c.get("name") for c in cases] == ["up", "down", "fix"]
    failures = [c for c in cases if c.find("failure") is not None]
    assert [c.get("name") for c in failures] == ["down"]
    assert "assert 1 == 0 (exit_code)" in (failures[0].find("failure").get("message") or "")


def test_junit_has_one_case_per_host_of_a_fanned_out_step(tmp_path: Path) -> None:
    writer = JournalWriter.create(
        tmp_path,
        "fan",
        "r1",
        {"run_id": "r1", "runbook": {"name": "fan", "severity": "P2"}},
        Masker(),
    )
    with writer:
        writer.append(
            "step.started",
            {"step": "uptime", "phase": "triage", "kind": "check", "executor": "shell"},
        )
        writer.append("step.attempt", {"step": "uptime", "attempt": 1})
        writer.append(
            "step.result",
            {
                "step": "uptime",
                "attempt": 1,
                "ok": True,
                "hosts": {
                    "web1": {"ok": True},
                    "web2": {"ok": True},
                    "web3": {"ok": False, "error": "refused"},
                },
            },
        )
        writer.append(
            "step.expectation",
            {
                "step": "uptime",
                "host": "web2",
                "passed": False,
                "expr": "exit_code == 0",
                "message": "assert 1 == 0 (exit_code)",
            },
        )
        writer.append(
            "step.finished",
            {
                "step": "uptime",
                "phase": "triage",
                "kind": "check",
                "status": "failed",
                "elapsed": 0.5,
                "attempts": 1,
            },
        )
        writer.append("run.finished", {"status": "failed", "exit_code": 1})
    root = ET.fromstring(_render("junit", writer.path).encode())
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert set(cases) == {"uptime [web1]", "uptime [web2]", "uptime [web3]"}
    assert cases["uptime [web1]"].find("failure") is None
    assert cases["uptime [web2]"].find("failure").get("message") == "assert 1 == 0 (exit_code)"
    assert cases["uptime [web3]"].find("error").get("message") == "refused"
    assert "| uptime | web3 | error | refused |" in _render("postmortem", writer.path)


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.urls += [v or "" for k, v in attrs if k in ("src", "href")]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_is_self_contained_and_escapes_log_text(run_cli: RunCli, real_log: Path) -> None:
    html = run_cli("report", str(real_log), "--format", "html").out
    page = _Page()
    page.feed(html)
    assert "script" not in page.tags and "img" not in page.tags and "link" not in page.tags
    assert page.urls == []
    assert "<b>bar</b>" not in html and "Report &lt;b&gt;bar&lt;/b&gt; &amp; co" in html
    text = "".join(page.text)
    for needle in ("SLA", "Timeline", "detect", "mitigate", "passed", "failed", "seq"):
        assert needle in text
    assert 'class="bar"' in html and "status-failed" in html


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian chromium not installed")
def test_html_renders_in_headless_chromium(run_cli: RunCli, real_log: Path, tmp_path: Path) -> None:
    assert run_cli("report", str(real_log), "--format", "html", "-o", "r.html").code == 0
    proc = subprocess.run(
        [
            "chromium",
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            # nothing but the file: no update checks, sync or background lookups
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--dump-dom",
            (tmp_path / "r.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Incident report: Report &lt;b&gt;bar&lt;/b&gt;" in proc.stdout
    assert 'id="timeline"' in proc.stdout and 'class="bar"' in proc.stdout


def test_secrets_stay_masked_in_every_format(run_cli: RunCli, real_log: Path) -> None:
    assert SECRET not in real_log.read_text()
    for fmt in GOLDENS:
        result = run_cli("report", str(real_log), "--format", fmt)
        assert result.code == 0 and SECRET not in result.out
        assert "***" in result.out


def _tamper(log: Path) -> None:
    lines = log.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace('"step":"up"', '"step":"uP"')
    log.write_text("".join(lines))


def test_a_tampered_log_is_refused_unless_allowed_with_a_banner(
    run_cli: RunCli, real_log: Path
) -> None:
    _tamper(real_log)
    refused = run_cli("report", str(real_log), "--format", "postmortem")
    assert refused.code == 5 and "TAMPERED" in refused.err and "seq 2" in refused.err
    assert "--allow-unverified" in refused.err
    allowed = run_cli("report", str(real_log), "--format", "postmortem", "--allow-unverified")
    assert allowed.code == 0
    assert "UNVERIFIED LOG (TAMPERED)" in allowed.out and "seq 2" in allowed.out
    html = run_cli("report", str(real_log), "--format", "html", "--allow-unverified").out
    assert 'class="banner"' in html


def test_a_truncated_log_is_reported_as_truncated(run_cli: RunCli, real_log: Path) -> None:
    lines = real_log.read_text().splitlines(keepends=True)
    real_log.write_text("".join(lines[:-1]))
    refused = run_cli("report", str(real_log))
    assert refused.code == 5 and "truncated" in refused.err
    allowed = run_cli("report", str(real_log), "--format", "json", "--allow-unverified")
    report = json.loads(allowed.out)
    assert report["verification"]["truncated"] and report["incident"]["status"] == "incomplete"


def test_an_empty_log_has_nothing_to_report(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("")
    result = run_cli("report", "empty.jsonl", "--allow-unverified")
    assert result.code == 5 and "empty log" in result.err


def test_unknown_format_lists_the_available_ones(run_cli: RunCli, real_log: Path) -> None:
    result = run_cli("report", str(real_log), "--format", "pdf")
    assert result.code == 2
    for name in ("postmortem", "json", "junit", "html"):
        assert name in result.err


PLUGIN = """
from runbook import ReportFormat, hookimpl

@hookimpl
def runbook_report_formats():
    return [ReportFormat("count", "txt", "number of records",
                         lambda records: f"{len(records)} records\\n")]
"""


def test_a_plugin_adds_a_report_format(run_cli: RunCli, real_log: Path, tmp_path: Path) -> None:
    root = make_plugin_dist(tmp_path / "site", "runbook-count", "runbook_count", PLUGIN)
    env = {"PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    result = run_cli("report", str(real_log), "--format", "count", env=env)
    assert result.code == 0, result.err
    assert result.out == f"{len(read_log(real_log))} records\n"
