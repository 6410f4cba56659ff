"""One vocabulary: docs/incident-log.md, `runbook.log.records` and real runs say the same.

The doc is parsed as people read it: under `## Record types`, a `### \\`type\\`` heading
per record type with a table whose first column names the `data` keys (optional
ones marked *optional*); under `## Outcomes`, a table of statuses. Real runs of
the CLI (a failing-then-handled run, its resume, a dry-run, an interrupted run)
must write every record type, and only the documented keys and statuses.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from support.cli import ROOT

from runbook.log.journal import read_log
from runbook.log.records import DATA, RecordType, StepStatus
from runbook.log.verify import verify_log
from runbook.log.view import format_timeline

DOC = ROOT / "docs" / "incident-log.md"
_ROW = re.compile(r"^\| `(\w+)`( \*optional\*)? \|", re.M)


def _section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else None]


def documented_types() -> dict[str, tuple[set[str], set[str]]]:
    """Record type -> (required keys, optional keys), in the doc's order."""
    parts = re.split(r"^### `([^`]+)`\s*$", _section(DOC.read_text(), "Record types"), flags=re.M)
    found: dict[str, tuple[set[str], set[str]]] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        rows = _ROW.findall(body)
        found[name] = ({f for f, opt in rows if not opt}, {f for f, opt in rows if opt})
    return found


def documented_statuses() -> list[str]:
    return [field for field, _ in _ROW.findall(_section(DOC.read_text(), "Outcomes"))]


def test_the_doc_has_a_section_for_every_record_type_in_order() -> None:
    assert list(documented_types()) == list(RecordType)


@pytest.mark.parametrize("kind", list(RecordType))
def test_the_doc_lists_the_fields_of_each_record_type(kind: RecordType) -> None:
    required, optional = documented_types()[kind]
    shape = DATA[kind]
    assert (required, optional) == (set(shape.__required_keys__), set(shape.__optional_keys__))


def test_the_doc_lists_every_outcome_in_order() -> None:
    assert documented_statuses() == list(StepStatus)


def test_every_record_type_has_a_data_shape() -> None:
    assert set(DATA) == set(RecordType)


def test_members_are_their_strings_in_json_and_in_sets() -> None:
    """Why using the enums changes no byte of the log or of any report."""
    record = {"type": RecordType.STEP_FINISHED, "data": {"status": StepStatus.TIMEOUT}}
    assert json.dumps(record) == '{"type": "step.finished", "data": {"status": "timeout"}}'
    assert f"{StepStatus.PASSED}" == "passed" and "run.finished" in {RecordType.RUN_FINISHED}


# -- what real runs write ------------------------------------------------------------------

RUNBOOK = """\
apiVersion: runbook/v1
kind: Runbook
metadata: {{name: vocabulary, title: Vocabulary, severity: P1}}
targets:
  pair: {{transport: local, hosts: [a.local, b.local]}}
steps:
  - id: health
    phase: detect
    check: {{shell: {{argv: ["false"]}}}}
    retries: {{attempts: 2, delay: 0}}
    on_failure: continue
    mark: detected
  - id: logs
    phase: triage
    check: {{shell: {{argv: [echo, "some log line"]}}}}
  - id: each-host
    phase: triage
    check: {{shell: {{argv: ["true"], target: pair}}}}
  - id: healthy-only
    phase: triage
    when: "steps.health.passed"
    check: {{shell: {{argv: ["true"]}}}}
  - id: restart
    phase: mitigate
    action: {{shell: {{argv: ["true"]}}}}
    confirm: "Restart it?"
    verify: [{{check: {{shell: {{argv: ["true"]}}}}}}]
  - id: wait
    phase: resolve
    check: {{shell: {{command: "test ! -f {hold} || sleep 60"}}}}
  - id: last
    phase: resolve
    check: {{shell: {{command: "test -f {go}"}}}}
"""


def _cli(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runbook", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _interrupted_run(rb: Path, cwd: Path, env: dict[str, str], logs: Path) -> None:
    before = set(logs.glob("*.jsonl"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "runbook", "run", str(rb), "--yes"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        new = set(logs.glob("*.jsonl")) - before
        if new and '"step":"wait"' in next(iter(new)).read_text():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Logs of real runs that, together, write every record type."""
    tmp = tmp_path_factory.mktemp("vocabulary")
    hold, go, log_dir = tmp / "hold", tmp / "go", tmp / "logs"
    rb = tmp / "rb.yaml"
    rb.write_text(RUNBOOK.format(hold=hold, go=go))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")}
    env.update(
        RUNBOOK_LOG_DIR=str(log_dir),
        RUNBOOK_OPERATOR="tester",
        NO_COLOR="1",
        # a webhook nobody listens on: the notify observer's error becomes observer.error
        RUNBOOK_NOTIFY_WEBHOOK="http://127.0.0.1:9/hook",
    )
    failed = _cli(tmp, env, "run", str(rb), "--yes")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    [first] = log_dir.glob("*.jsonl")
    go.touch()
    resumed = _cli(tmp, env, "run", str(rb), "--yes", "--resume", str(first))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    planned = _cli(tmp, env, "run", str(rb), "--dry-run")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    hold.touch()
    _interrupted_run(rb, tmp, env, log_dir)
    paths = sorted(log_dir.glob("*.jsonl"))
    verdicts = {path.name: verify_log(path) for path in paths}
    assert len(paths) == 4 and all(v.ok for v in verdicts.values()), verdicts
    return paths


def _records(paths: list[Path]) -> list[dict[str, Any]]:
    return [record for path in paths for record in read_log(path)]


def test_real_runs_write_every_record_type_and_no_other(logs: list[Path]) -> None:
    assert {record["type"] for record in _records(logs)} == set(RecordType)


def test_real_records_hold_the_documented_fields(logs: list[Path]) -> None:
    problems = []
    for record in _records(logs):
        shape, keys = DATA[RecordType(record["type"])], set(record["data"])
        missing = shape.__required_keys__ - keys
        unknown = keys - shape.__required_keys__ - shape.__optional_keys__
        if missing or unknown:
            problems.append(
                f"{record['type']}: missing {missing or '{}'}, unknown {unknown or '{}'}"
            )
    assert not problems, "\n".join(sorted(set(problems)))


def test_real_statuses_are_outcomes(logs: list[Path]) -> None:
    statuses = set()
    for record in _records(logs):
        data = record["data"]
        if "status" in data:
            statuses.add(data["status"])
        statuses.update(data.get("counts", {}))
    assert statuses <= set(StepStatus) - {StepStatus.INCOMPLETE}
    assert {"passed", "failed", "skipped", "planned"} <= statuses


def test_log_show_describes_every_record_type(logs: list[Path]) -> None:
    text = "\n".join(format_timeline(read_log(path)) for path in logs)
    raw = [kind for kind in RecordType if re.search(rf"  {re.escape(kind)}$", text, re.M)]
    assert not raw, f"`runbook log show` prints these record types raw: {raw}"
