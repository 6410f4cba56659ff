"""The journald executor on real journal files (systemd-journal-remote), real journalctl."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from runbook_plugins.journald import JournalStream
from support import sshd

from runbook.contract import ExecContext  # noqa: E402
from runbook.load.model import Target  # noqa: E402
from runbook.registry import PluginRegistry  # noqa: E402

pytestmark = pytest.mark.slow
REMOTE = "/lib/systemd/systemd-journal-remote"


def export_entries() -> str:
    """Eight fastapi entries (every third an error) and two nginx ones, one second apart."""
    now = int(time.time() * 1e6)
    blocks = []
    for i in range(10):
        unit, ident = ("fastapi.service", "fastapi") if i < 8 else ("nginx.service", "nginx")
        priority = 3 if i % 3 == 0 else 6
        text = "ERROR database pool exhausted" if priority == 3 else "GET /health 200"
        blocks.append(
            f"__REALTIME_TIMESTAMP={now - (10 - i) * 1_000_000}\n__MONOTONIC_TIMESTAMP={i + 1}\n"
            f"_BOOT_ID=0123456789abcdef0123456789abcdef\n_SYSTEMD_UNIT={unit}\n"
            f"SYSLOG_IDENTIFIER={ident}\n_PID={100 + i}\nPRIORITY={priority}\n"
            f"MESSAGE={text} #{i}\n"
        )
    return "\n".join(blocks) + "\n"


@pytest.fixture(scope="session")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not os.path.exists(REMOTE):
        subprocess.run(["bash", str(sshd.ROOT / ".ci" / "setup-system")], check=False)
    if not os.path.exists(REMOTE):
        pytest.skip(f"{REMOTE} is missing and could not be installed")
    path = tmp_path_factory.mktemp("journal") / "app.journal"
    subprocess.run(
        [REMOTE, "-o", str(path), "-"],
        input=export_entries().encode(),
        check=True,
        capture_output=True,
    )
    return path


def read(config: dict[str, Any], target: Target | None = None) -> Any:
    spec = PluginRegistry.from_entry_points().executor("journald")
    ctx = ExecContext(step_id="j", target=target, timeout=20)
    try:
        return spec.run(config, ctx)
    finally:
        ctx.resources["runbook.connections"].close()


def test_entries_are_parsed_and_counted(journal) -> None:
    result = read({"file": str(journal), "unit": "fastapi"})
    assert result.ok, result.error
    fields = result.fields
    assert fields["count"] == 8 and fields["count_errors"] == 3
    assert fields["by_priority"] == {"err": 3, "info": 5}
    first = fields["entries"][0]
    assert first["message"] == "ERROR database pool exhausted #0" and first["pid"] == 100
    assert first["unit"] == "fastapi.service" and first["time"].endswith("Z")
    assert "fastapi[100]: ERROR database pool exhausted #0" in fields["text"]


def test_priority_grep_and_lines_filter(journal) -> None:
    errors = read({"file": str(journal), "priority": "err", "lines": 2})
    assert [e["message"] for e in errors.fields["entries"]] == [
        "ERROR database pool exhausted #6",
        "ERROR database pool exhausted #9",
    ]
    grep = read({"file": str(journal), "grep": "health 200 #(1|2)$"})
    assert grep.fields["count"] == 2
    nothing = read({"file": str(journal), "grep": "no such text"})
    assert nothing.ok and nothing.fields["count"] == 0


def test_values_cannot_become_options(journal) -> None:
    result = read({"file": str(journal), "unit": "--file=/etc/passwd"})
    assert result.fields["count"] == 0
    assert "--unit=--file=/etc/passwd" in result.call["argv"]


def test_missing_journal_file_and_missing_journalctl_are_errors(journal, tmp_path) -> None:
    missing = read({"file": str(tmp_path / "none.journal")})
    assert not missing.ok and "journalctl failed (exit 1)" in (missing.error or "")
    absent = read({"file": str(journal), "journalctl": "/nonexistent/journalctl"})
    assert not absent.ok and absent.error == "command not found: /nonexistent/journalctl"


def test_reads_the_same_journal_over_ssh(journal, tmp_path_factory, run_cli, write_runbook) -> None:
    reason = sshd.ensure_sshd()
    if reason:
        pytest.skip(reason)
    fleet = sshd.shared_fleet(tmp_path_factory.mktemp("sshd"))
    path = write_runbook(
        f"""
        apiVersion: runbook/v1
        kind: Runbook
        metadata: {{name: logs, title: Logs, severity: P3}}
        targets:
          web: {fleet.target_yaml(["127.0.0.2", "127.0.0.3"])}
        steps:
          - id: errors
            phase: triage
            check: {{journald: {{file: "{journal}", unit: fastapi, since: "-1h", target: web}}}}
            expect: ["count == 8", "count_errors < 10"]
        """
    )
    r = run_cli("run", str(path), "--dry-run", "--log-dir", "logs")
    assert r.code == 0, r.text
    (log,) = (path.parent / "logs").glob("*.jsonl")
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    (result,) = [x["data"] for x in rows if x["type"] == "step.result"]
    assert {h: v["fields"]["count_errors"] for h, v in result["hosts"].items()} == {
        "127.0.0.2": 3,
        "127.0.0.3": 3,
    }


def test_the_cap_on_kept_entries_is_shown_in_the_result(journal) -> None:
    result = read({"file": str(journal), "max_entries": 2})
    fields = result.fields
    assert fields["count"] == 10 and fields["count_errors"] == 4
    assert fields["entries_omitted"] == 8
    assert [e["message"] for e in fields["entries"]] == [
        "GET /health 200 #8",
        "ERROR database pool exhausted #9",
    ]
    assert fields["text"].startswith(
        "[... 8 older entries counted but not kept: "
        "showing the newest 2 of 10 (max_entries 2) ...]\n"
    )


def test_lines_split_anywhere_read_the_same(journal) -> None:
    """journalctl's output arrives in chunks of any size; a line may span several."""
    out = subprocess.run(
        ["journalctl", "--no-pager", "-o", "json", f"--file={journal}"],
        capture_output=True,
        check=True,
    ).stdout
    whole = JournalStream(100)
    whole.feed(out)
    whole.close()
    for size in (1, 2, 7, 300):
        pieces = JournalStream(100)
        for start in range(0, len(out), size):
            pieces.feed(out[start : start + size])
        pieces.close()
        assert pieces.fields() == whole.fields() and pieces.count == 10


def _fake_journalctl(tmp_path: Path, body: str) -> str:
    path = tmp_path / "journalctl"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def test_output_that_is_not_json_entries_is_an_error_not_a_low_count(tmp_path) -> None:
    fake = _fake_journalctl(tmp_path, "echo '{\"PRIORITY\": \"3\"}'; echo 'Hint: no JSON here'")
    result = read({"journalctl": fake})
    assert not result.ok
    assert result.error == (
        "journalctl printed 1 line(s) that are not JSON entries, so its entries cannot all "
        "be counted; the first: 'Hint: no JSON here'"
    )


def test_an_endless_line_is_never_held_in_memory(tmp_path) -> None:
    fake = _fake_journalctl(tmp_path, "head -c 20000000 /dev/zero | tr '\\0' x")
    result = read({"journalctl": fake})
    assert not result.ok and "1 line(s) that are not JSON entries" in (result.error or "")
    assert result.error.endswith("xxx ...'")


def test_endless_output_streams_until_the_timeout(tmp_path) -> None:
    fake = _fake_journalctl(tmp_path, 'exec yes \'{"PRIORITY": "3", "MESSAGE": "again"}\'')
    spec = PluginRegistry.from_entry_points().executor("journald")
    ctx = ExecContext(step_id="j", target=None, timeout=1)
    try:
        result = spec.run({"journalctl": fake}, ctx)
    finally:
        ctx.resources["runbook.connections"].close()
    assert result.timed_out and not result.ok
