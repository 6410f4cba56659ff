"""Reports of a long log: bounded memory in every format, and every cut said out loud.

`runbook report` reads a log once into a bounded Incident (`runbook.report.incident`):
past `Limits` it keeps the first step executions, the first and last timeline
entries and every SLA milestone, and counts the rest. The log here (200k records,
written directly with the journal's hash chain, so it verifies) goes past every
limit: a 60,000-host check with 21,000 failing hosts, 150 observer errors, ~35,000
step executions. Nothing here is timed: the assertions are on what the model keeps
and on the peak RSS of the real report process.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
from support.cli import ROOT, RunCli
from support.helpers import make_plugin_dist

from runbook.cli.report import run_report
from runbook.log.records import GENESIS
from runbook.log.verify import verify_log
from runbook.registry import PluginRegistry
from runbook.report.incident import (
    DEFAULT_LIMITS,
    OMITTED,
    Incident,
    TimelineGap,
)
from runbook.report.reader import build_from_log

RECORDS = 200_000
HOSTS = 60_000
FAILING_HOSTS = 21_000
OBSERVER_ERRORS = 150
PHASES = ("detect", "triage", "mitigate", "resolve", "post-incident")
RSS_BOUND_MIB = 200  # the goal for a 1M-record log; reading everything took ~2 GiB


@pytest.fixture(autouse=True)
def default_sla(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reports state SLA targets: keep the operator's own config out of the tests."""
    monkeypatch.delenv("RUNBOOK_SLA_FILE", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))


@dataclass(frozen=True)
class LongLog:
    path: Path
    executions: int  # step executions in the log
    timeline_lines: int  # lines the full timeline would have
    failed_checks: int  # check executions that failed (the 60k-host check among them)


def _ts(seq: int) -> str:
    ms = seq * 10
    return (
        f"2026-11-25T{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:"
        f"{ms // 1000 % 60:02d}.{ms % 1000:03d}000Z"
    )


def _write(path: Path) -> LongLog:
    """Every line sealed as `runbook.log.journal` seals it: the sha256 of the body's bytes,
    spliced in before the closing brace, `prev` linking each to the one before."""
    events: list[tuple[str, str]] = []  # (type, data as JSON)
    hosts = ",".join(f'"web{n:05d}":{{"ok":true}}' for n in range(HOSTS))
    events += [
        ("step.started", '{"executor":"shell","kind":"check","phase":"triage","step":"uptime"}'),
        ("step.attempt", '{"attempt":1,"step":"uptime","summary":"$ uptime"}'),
        ("step.result", f'{{"attempt":1,"hosts":{{{hosts}}},"ok":true,"step":"uptime"}}'),
    ]
    events += [
        (
            "step.expectation",
            f'{{"expr":"exit_code == 0","host":"web{n:05d}","message":"assert 1 == 0",'
            f'"passed":false,"step":"uptime"}}',
        )
        for n in range(HOSTS - FAILING_HOSTS, HOSTS)
    ]
    events.append(
        ("step.finished", '{"kind":"check","phase":"triage","status":"failed","step":"uptime"}')
    )
    events += [
        ("observer.error", f'{{"message":"webhook down ({n})","step":"uptime"}}')
        for n in range(OBSERVER_ERRORS)
    ]
    events += [
        ("step.started", '{"kind":"action","phase":"mitigate","step":"restart"}'),
        (
            "step.confirmation",
            '{"accepted":true,"method":"--yes","operator":"alice","prompt":"Restart?",'
            '"step":"restart"}',
        ),
        ("step.attempt", '{"attempt":1,"step":"restart"}'),
        (
            "step.finished",
            '{"kind":"action","phase":"mitigate","status":"passed","step":"restart"}',
        ),
    ]
    timeline = 1 + FAILING_HOSTS + 1 + OBSERVER_ERRORS + 3 + 1  # header ... run.finished
    cycles = (RECORDS - 2 - len(events)) // 5
    failed = 1
    for n in range(cycles):
        step, phase, passed = f"c{n}", PHASES[n % 5], n % 7 != 0
        events += [
            ("step.started", f'{{"kind":"check","phase":"{phase}","step":"{step}"}}'),
            ("step.attempt", f'{{"attempt":1,"step":"{step}"}}'),
            ("step.output", f'{{"step":"{step}","text":"ok"}}'),
            (
                "step.expectation",
                f'{{"expr":"exit_code == 0","message":"assert 1 == 0","passed":'
                f'{"true" if passed else "false"},"step":"{step}"}}',
            ),
            (
                "step.finished",
                f'{{"elapsed":0.5,"kind":"check","phase":"{phase}",'
                f'"status":"{"passed" if passed else "failed"}","step":"{step}"}}',
            ),
        ]
        timeline += 1 if passed else 2
        failed += not passed
    events += [("step.output", '{"step":"c0","text":"late"}')] * (RECORDS - 2 - len(events))
    events.append(("run.finished", '{"exit_code":1,"status":"failed"}'))
    header = (
        '{"host":"vm","operator":"alice","run_id":"long",'
        '"runbook":{"name":"long","severity":"P1","title":"Long run"},'
        f'"started":"{_ts(0)}"}}'
    )
    prev, lines = GENESIS, []
    for seq, (kind, data) in enumerate([("header", header), *events]):
        body = f'{{"data":{data},"prev":"{prev}","seq":{seq},"ts":"{_ts(seq)}","type":"{kind}"}}'
        prev = hashlib.sha256(body.encode()).hexdigest()
        lines.append(f'{body[:-1]},"sha256":"{prev}"}}\n')
    path.write_text("".join(lines), encoding="ascii")
    return LongLog(path, 2 + cycles, timeline, failed)


@pytest.fixture(scope="module")
def long_log(tmp_path_factory: pytest.TempPathFactory) -> LongLog:
    log = _write(tmp_path_factory.mktemp("long") / "long.jsonl")
    verdict = verify_log(log.path)
    assert verdict.ok and verdict.records == RECORDS, verdict
    return log


@pytest.fixture(scope="module")
def incident(long_log: LongLog) -> Incident:
    verdict, builder = build_from_log(long_log.path)
    assert verdict.ok
    return builder.finish(verdict)


def test_the_model_of_a_long_log_keeps_within_its_limits(incident: Incident) -> None:
    limits = DEFAULT_LIMITS
    assert len(incident.steps) == limits.steps
    assert sum(len(s.hosts) for s in incident.steps) == limits.host_results
    kept_failures = sum(len(s.failures) + len(s.confirmations) for s in incident.steps)
    confirmed = sum(bool(s.confirmations) for s in incident.steps)  # the latest is always kept
    assert limits.failures <= kept_failures <= limits.failures + confirmed
    assert len(incident.observer_errors) == limits.observer_errors
    gaps = [entry for entry in incident.timeline if isinstance(entry, TimelineGap)]
    lines = [entry for entry in incident.timeline if not isinstance(entry, TimelineGap)]
    milestones = {name for entry in lines for name in entry.milestones}
    assert gaps and len(lines) <= limits.timeline_head + limits.timeline_tail + len(milestones)
    assert milestones == {"started", "detected", "acknowledged", "mitigated"}


def test_what_the_model_leaves_out_is_counted_exactly(
    incident: Incident, long_log: LongLog
) -> None:
    omitted = incident.omitted
    assert omitted.steps == long_log.executions - DEFAULT_LIMITS.steps
    assert len(omitted.by_step) == DEFAULT_LIMITS.step_ids
    by_step = sum(n for counts in omitted.by_step.values() for n in counts.values())
    assert by_step + omitted.by_step_others == omitted.steps
    kept = sum(s.kind == "check" and s.status == "failed" for s in incident.steps)
    assert omitted.counted("check", {"failed"}) == long_log.failed_checks - kept
    gaps = [entry for entry in incident.timeline if isinstance(entry, TimelineGap)]
    assert omitted.timeline == sum(gap.count for gap in gaps)
    assert len(incident.timeline) - len(gaps) + omitted.timeline == long_log.timeline_lines
    assert all(gap.status == OMITTED and gap.seq <= gap.last_seq for gap in gaps)
    assert omitted.host_results == HOSTS - DEFAULT_LIMITS.host_results
    uptime = incident.steps[0]
    assert uptime.failures_omitted == FAILING_HOSTS - DEFAULT_LIMITS.failures
    failed_kept = kept - 1  # each kept failed cycle had its one failure left out (no room)
    assert omitted.failures == uptime.failures_omitted + failed_kept
    restart = next(s for s in incident.steps if s.id == "restart")
    assert [c.operator for c in restart.confirmations] == ["alice"]
    assert omitted.observer_errors == OBSERVER_ERRORS - DEFAULT_LIMITS.observer_errors
    assert incident.timeline[-1].text == "run finished failed (exit 1)"  # the tail is kept


# Runs a command and prints its peak RSS. A child's ru_maxrss starts from the RSS of the
# process that forked it (Linux keeps the high-water mark across exec), so the report is
# started from this small process rather than from pytest, which holds the whole model.
_PEAK_RSS = (
    "import os, subprocess, sys\n"
    "proc = subprocess.Popen(sys.argv[1:])\n"
    "_, status, usage = os.wait4(proc.pid, 0)\n"
    "print(usage.ru_maxrss)\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def _report(log: Path, fmt: str, out: Path) -> int:
    """Run `runbook report` as a process; its peak RSS in KiB."""
    argv = [sys.executable, "-m", "runbook", "report", str(log), "--format", fmt, "-o", str(out)]
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, *argv], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


NOTES = {
    "postmortem": [
        "> **Abridged:** This log is too long to list in full",
        "more timeline entries (seq ",
        "more failed checks from seq ",
        "more failures not listed",
        "more hosts | — | not listed (report limit); the step failed",
        "more observer errors not listed",
        "## Step executions not listed",
    ],
    "json": ['"omitted": {"summary": "This log is too long', '"status": "omitted"'],
    "junit": ['name="abridged"', "more step executions from seq", "more hosts]"],
    "html": ["<strong>Abridged:</strong>", "more step executions from seq", "more hosts not"],
}


@pytest.mark.slow
@pytest.mark.parametrize("fmt", sorted(NOTES))
def test_every_format_reports_a_long_log_in_bounded_memory_and_says_what_it_cut(
    fmt: str, long_log: LongLog, tmp_path: Path
) -> None:
    out = tmp_path / f"report.{fmt}"
    peak_kib = _report(long_log.path, fmt, out)
    assert peak_kib < RSS_BOUND_MIB * 1024, f"peak RSS {peak_kib / 1024:.0f} MiB"
    text = out.read_text(encoding="utf-8")
    for note in NOTES[fmt]:
        assert note in text, note
    assert out.stat().st_size < 20 * 2**20  # the output is bounded too
    if fmt == "json":
        schema = json.loads((ROOT / "schemas" / "report.schema.json").read_text())
        jsonschema.validate(json.loads(text), schema)
    elif fmt == "junit":
        root = ET.fromstring(text.encode())
        assert int(root.get("tests") or 0) == len(root.findall(".//testcase"))


GOLDENS = {"postmortem": "postmortem.md", "json": "report.json", "junit": "junit.xml"}
GOLDENS["html"] = "report.html"


@pytest.mark.parametrize("fmt", sorted(GOLDENS))
def test_an_ordinary_log_read_once_gives_the_golden_report(fmt: str, tmp_path: Path) -> None:
    """The one-pass reader (what `runbook report` uses) and the list of records (what
    `render(records)` gets) tell an ordinary run the same, byte for byte."""
    data = ROOT / "tests" / "data" / "reports"
    out = tmp_path / f"report.{fmt}"
    registry = PluginRegistry.from_entry_points()
    assert run_report(registry, str(data / "golden-run.jsonl"), fmt, str(out), False) == 0
    assert out.read_text(encoding="utf-8") == (data / GOLDENS[fmt]).read_text(encoding="utf-8")


PLUGIN = """
from runbook import ReportFormat, hookimpl

def _steps(incident):
    return f"{len(incident.steps)} steps, {incident.verification.records} records\\n"

@hookimpl
def runbook_report_formats():
    return [ReportFormat("steps", "txt", "steps told", lambda records: "records\\n",
                         render_incident=_steps)]
"""


def test_a_plugin_format_can_take_the_incident_read_once(run_cli: RunCli, tmp_path: Path) -> None:
    root = make_plugin_dist(tmp_path / "site", "runbook-steps", "runbook_steps", PLUGIN)
    env = {"PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    golden = ROOT / "tests" / "data" / "reports" / "golden-run.jsonl"
    result = run_cli("report", str(golden), "--format", "steps", env=env)
    assert result.code == 0, result.err
    assert result.out == "5 steps, 29 records\n"


def test_the_verdict_read_with_the_report_is_the_one_log_verify_gives(tmp_path: Path) -> None:
    """One pass verifies and reads: cut, edited, zero-filled or reordered, the verdict is
    `verify_log`'s, and nothing past the first bad line is read into the model."""
    log = _write_small(tmp_path / "ok.jsonl")
    lines = log.read_bytes().splitlines(keepends=True)
    damaged = {
        "ok": lines,
        "partial": [*lines[:-1], lines[-1][:40]],
        "cut": lines[:-1],
        "edited": [*lines[:3], lines[3].replace(b"uptime", b"uptimE"), *lines[4:]],
        "zeros": [*lines[:-1], b"\0" * 50],
        "reordered": [lines[0], lines[2], lines[1], *lines[3:]],
        "empty": [],
    }
    for name, content in damaged.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_bytes(b"".join(content))
        verdict, builder = build_from_log(path)
        assert verdict == verify_log(path), name
        assert builder.records == verdict.records, name


def _write_small(path: Path) -> Path:
    events = [
        ("header", '{"run_id":"s","runbook":{"name":"s"}}'),
        ("step.started", '{"kind":"check","phase":"detect","step":"uptime"}'),
        ("step.attempt", '{"attempt":1,"step":"uptime"}'),
        ("step.finished", '{"kind":"check","phase":"detect","status":"passed","step":"uptime"}'),
        ("run.finished", '{"exit_code":0,"status":"passed"}'),
    ]
    prev, text = GENESIS, ""
    for seq, (kind, data) in enumerate(events):
        body = f'{{"data":{data},"prev":"{prev}","seq":{seq},"ts":"{_ts(seq)}","type":"{kind}"}}'
        prev = hashlib.sha256(body.encode()).hexdigest()
        text += f'{body[:-1]},"sha256":"{prev}"}}\n'
    path.write_text(text, encoding="ascii")
    return path
