"""journald against journalctl itself: the same journal, the same filters, the same answers.

Two real journals are built once for this module with `systemd-journal-remote`
from generated export-format entries: `history` (12,000 entries over eight days
of May 2024, about 6 MB of `-o json`, far past any 1 MiB output cap) and
`recent` (3,000 entries over the last three hours, none between 70 and 50
minutes ago, so `since: -1h` has the same answer for a few minutes whenever it
is asked). The entries hold what real journals hold: multi-line messages,
unicode, invalid UTF-8 and control characters (binary fields, which
`journalctl -o json` prints as arrays of byte numbers), fields an entry
repeats (printed as arrays), messages over 4096 bytes (printed as null),
entries without PRIORITY, systemd's own messages about a unit (`_PID=1`,
`UNIT=`), several units, identifiers and priorities.

The oracle is the real `journalctl --file F [filters] -o json`, run here with
its own short options (`-u -p -S -U -g -n`): which entries match, how many,
which are the newest N. Our side runs through the executor's call path for the
many filter combinations and as a user runs it (a runbook through the CLI,
locally and over SSH) for the cases that matter most. How each entry is shown
(repeated, binary and omitted fields) follows the table in docs/peers.md,
checked here against the oracle's JSON and against what the generator wrote.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
import subprocess
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support import sshd

from runbook.contract import ExecContext, StepResult
from runbook.registry import PluginRegistry

pytestmark = pytest.mark.slow
REMOTE = "/lib/systemd/systemd-journal-remote"
JOURNALCTL = shutil.which("journalctl") or "/usr/bin/journalctl"
HISTORY_START = 1_714_521_600 * 1_000_000  # 2024-05-01T00:00:00Z, in microseconds
HISTORY_ENTRIES = 12_000
RECENT_ENTRIES = 3_000
OMITTED = "[over 4096 bytes: journalctl -o json leaves it out]"
UNITS = (
    ("api.service", "api"),
    ("worker.service", "worker"),
    ("nginx.service", "nginx"),
    ("db.service", "postgres"),
    ("cron.service", "CRON"),
)
PRIORITY_WEIGHTS = (2, 3, 10, 90, 100, 100, 600, 95)  # 0 emerg .. 7 debug, per 1000


# -- the journals ---------------------------------------------------------------------------
Field = tuple[str, bytes]


@dataclass(frozen=True)
class Written:
    """What the generator wrote for one entry (MESSAGE values in the order written)."""

    realtime: int
    messages: tuple[bytes, ...] | None


@dataclass(frozen=True)
class Journals:
    history: Path
    recent: Path
    written: dict[int, Written]

    def path(self, name: str) -> str:
        return str(self.history if name == "history" else self.recent)


def _message(rng: random.Random, i: int, priority: int | None) -> bytes:
    kind = rng.random()
    if priority is not None and priority <= 3 and kind < 0.5:
        return f"ERROR timeout talking to db after {rng.randint(1, 9999)}ms (request {i})".encode()
    if kind < 0.45:
        status = rng.choice((200, 200, 200, 204, 301, 404, 500, 502, 503))
        return f"GET /api/v1/items/{i} {status} {rng.randint(1, 900)}ms".encode()
    if kind < 0.55:
        return (
            f'Traceback (most recent call last):\n  File "app.py", line {i % 500}, in handler'
            f"\n    raise ValueError(item)\nValueError: bad input {i}"
        ).encode()
    if kind < 0.65:
        return f"utilisateur «élodie» connecté — 日本語のログ ✓ 🚀 {i}".encode()
    if kind < 0.70:  # not UTF-8: a binary field, printed as an array of byte numbers
        return b"payload \xff\xfe\x80 seq=" + str(i).encode() + b" \xc3\x28 end"
    if kind < 0.73:  # valid UTF-8 with control characters: also printed as bytes
        return f"\x1b[31mred alert\x1b[0m\r on line {i}".encode()
    if kind < 0.735:  # over 4096 bytes: `-o json` prints null
        return f"huge payload {i} ".encode() + b"x" * rng.randint(4200, 6000)
    return f"worker {i % 7} processed batch {i} in {rng.random():.3f}s".encode()


def _entry(rng: random.Random, i: int, realtime: int, boot: str) -> list[Field]:
    unit, ident = UNITS[rng.randrange(len(UNITS))]
    fields: list[Field] = [
        ("__REALTIME_TIMESTAMP", str(realtime).encode()),
        ("__MONOTONIC_TIMESTAMP", str(i + 1).encode()),
        ("_BOOT_ID", boot.encode()),
    ]
    roll = rng.random()
    priority: int | None = rng.choices(range(8), PRIORITY_WEIGHTS)[0]
    if roll < 0.01:  # systemd itself, about a unit: `-u` matches these through UNIT=
        fields += [("_PID", b"1"), ("_SYSTEMD_UNIT", b"init.scope"), ("UNIT", unit.encode())]
        fields += [("SYSLOG_IDENTIFIER", b"systemd"), ("PRIORITY", b"6")]
        fields.append(("MESSAGE", f"Started {unit} (run {i}).".encode()))
        return fields
    fields += [("_PID", str(1000 + i % 300).encode()), ("_SYSTEMD_UNIT", unit.encode())]
    if roll < 0.015:  # a repeated unit (both values are in the journal already)
        other = UNITS[(UNITS.index((unit, ident)) + 1) % len(UNITS)][0]
        fields.append(("_SYSTEMD_UNIT", other.encode()))
    fields.append(("SYSLOG_IDENTIFIER", ident.encode()))
    if 0.015 <= roll < 0.02:
        fields.append(("SYSLOG_IDENTIFIER", f"{ident}-helper".encode()))
    if 0.02 <= roll < 0.03:
        priority = None  # no PRIORITY at all: `-p` never matches it
    else:
        fields.append(("PRIORITY", str(priority).encode()))
    if 0.03 <= roll < 0.035:  # a repeated PRIORITY: `-p` matches either value
        fields.append(("PRIORITY", str(rng.choice((2, 3, 4, 6, 7))).encode()))
    if 0.035 <= roll < 0.037:
        return fields  # no MESSAGE
    fields.append(("MESSAGE", _message(rng, i, priority)))
    if 0.037 <= roll < 0.05:  # a repeated MESSAGE (values unique to the entry, as the
        # journal keeps a value once per entry), sometimes with a binary second value
        second = f"second line {i} ✓".encode() if roll < 0.045 else f"bytes {i} ".encode()
        fields.append(("MESSAGE", second if roll < 0.045 else second + b"\xff"))
    return fields


def _export(entries: Sequence[list[Field]]) -> bytes:
    """Journal export format: `KEY=value`, or the binary-safe `KEY\\n<le64 size><bytes>`."""
    out = bytearray()
    for fields in entries:
        for name, value in fields:
            try:
                printable = value.decode("utf-8").isprintable()
            except UnicodeDecodeError:
                printable = False
            if printable:
                out += name.encode() + b"=" + value + b"\n"
            else:
                out += name.encode() + b"\n" + struct.pack("<Q", len(value)) + value + b"\n"
        out += b"\n"
    return bytes(out)


def _generate(seed: int, count: int, times: Sequence[int]) -> list[list[Field]]:
    rng = random.Random(seed)
    boots = [f"{rng.getrandbits(128):032x}", f"{rng.getrandbits(128):032x}"]
    return [_entry(rng, i, t, boots[i * 2 // count]) for i, t in enumerate(times)]


def _history_times() -> list[int]:
    rng = random.Random(7)
    times, now = [], HISTORY_START
    for _ in range(HISTORY_ENTRIES):
        now += rng.randint(1_000, 115_000_000)  # 1 ms to ~2 min apart: ~8 days in all
        times.append(now)
    return times


def _recent_times(now: int) -> list[int]:
    """The last three hours without the 20 minutes around one hour ago."""
    rng = random.Random(11)
    start, hole = now - 3 * 3600 * 1_000_000, (now - 70 * 60_000_000, now - 50 * 60_000_000)
    times = sorted(rng.randrange(start, now - 60_000_000) for _ in range(RECENT_ENTRIES))
    times = [t if not hole[0] <= t < hole[1] else t - 20 * 60_000_000 for t in times]
    return sorted(set(times))


def _convert(entries: Sequence[list[Field]], path: Path) -> None:
    subprocess.run(
        [REMOTE, "-o", str(path), "-"], input=_export(entries), check=True, capture_output=True
    )


@pytest.fixture(scope="module")
def journals(tmp_path_factory: pytest.TempPathFactory) -> Journals:
    if not os.path.exists(REMOTE):
        subprocess.run(["bash", str(sshd.ROOT / ".ci" / "setup-system")], check=False)
    if not os.path.exists(REMOTE):
        pytest.skip(f"{REMOTE} is missing and could not be installed")
    root = tmp_path_factory.mktemp("journals")
    history = _generate(1, HISTORY_ENTRIES, _history_times())
    recent = _generate(2, RECENT_ENTRIES, _recent_times(int(time.time() * 1e6)))
    _convert(history, root / "history.journal")
    _convert(recent, root / "recent.journal")
    written = {}
    for fields in [*history, *recent]:
        realtime = int(fields[0][1])
        messages = tuple(v for name, v in fields if name == "MESSAGE")
        written[realtime] = Written(realtime, messages or None)
    return Journals(root / "history.journal", root / "recent.journal", written)


# -- the oracle and our side ----------------------------------------------------------------
def _listed(value: Any) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def oracle(journals: Journals, case: dict[str, Any], *extra: str) -> list[dict[str, Any]]:
    """`journalctl --file F [filters] -o json`, with journalctl's own short options."""
    argv = [JOURNALCTL, "--no-pager", "-o", "json"]
    argv += [f"--file={journals.path(f)}" for f in _listed(case.get("file", "history"))]
    for unit in _listed(case.get("unit")):
        argv += ["-u", unit]
    for key, option in (("priority", "-p"), ("since", "-S"), ("until", "-U"), ("grep", "-g")):
        if key in case:
            argv += [option, str(case[key])]
    if "lines" in case:
        argv += ["-n", str(case["lines"])]
    proc = subprocess.run([*argv, *extra], capture_output=True, timeout=120, check=False)
    assert proc.returncode == 0 or ("grep" in case and not proc.stdout), proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def ours(journals: Journals, case: dict[str, Any]) -> StepResult:
    """The executor's own call path, as the runner calls it."""
    config = dict(case)
    config["file"] = [journals.path(f) for f in _listed(case.get("file", "history"))]
    spec = PluginRegistry.from_entry_points().executor("journald")
    ctx = ExecContext(step_id="journal", target=None, timeout=120)
    try:
        return spec.run(config, ctx)
    finally:
        ctx.resources["runbook.connections"].close()


def _values(value: Any) -> list[Any]:
    """A field's values in journalctl's JSON: an array of numbers is one binary value."""
    if value is None:
        return [None]
    if isinstance(value, list) and not all(isinstance(v, int) for v in value):
        return value
    return [value]


def _as_text(value: Any) -> str:
    if value is None:
        return OMITTED
    if isinstance(value, list):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _priority(raw: dict[str, Any]) -> int | None:
    values = [int(v) for v in _values(raw.get("PRIORITY")) if v is not None]
    return min(values) if values else None


def _iso(realtime: int) -> str:
    seconds, micros = divmod(realtime, 1_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).replace(microsecond=micros)
    return stamp.isoformat().replace("+00:00", "Z")


def expected_entry(raw: dict[str, Any]) -> dict[str, Any]:
    """One oracle entry as docs/peers.md says we show it."""

    def first(*names: str) -> str:
        for name in names:
            if raw.get(name) is not None:
                return _as_text(_values(raw[name])[0])
        return ""

    pid = first("_PID")
    return {
        "time": _iso(int(raw["__REALTIME_TIMESTAMP"])),
        "priority": _priority(raw),
        "unit": first("_SYSTEMD_UNIT", "UNIT"),
        "identifier": first("SYSLOG_IDENTIFIER"),
        "pid": int(pid) if pid else None,
        "message": "\n".join(_as_text(v) for v in _values(raw["MESSAGE"]))
        if "MESSAGE" in raw
        else "",
    }


def by_priority(entries: list[dict[str, Any]]) -> dict[str, int]:
    names = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
    counts: dict[str, int] = {}
    for raw in entries:
        level = _priority(raw)
        name = "none" if level is None else names[level]
        counts[name] = counts.get(name, 0) + 1
    return counts


def assert_same_answer(journals: Journals, case: dict[str, Any], result: StepResult) -> None:
    """Counts, error counts, priorities and the newest kept entries, against journalctl."""
    assert result.ok, result.error
    truth = oracle(journals, case)
    fields = result.fields
    assert fields["count"] == len(truth)
    errors = sum(1 for raw in truth if (_priority(raw) if _priority(raw) is not None else 9) <= 3)
    assert fields["count_errors"] == errors
    if "priority" not in case and "lines" not in case:  # the same question, asked of journalctl
        assert fields["count_errors"] == len(oracle(journals, case, "-p", "0..3"))
    assert fields["by_priority"] == by_priority(truth)
    keep = int(case.get("max_entries", 1000))
    kept = truth[-keep:] if keep else []
    assert fields["entries"] == [expected_entry(raw) for raw in kept]
    assert fields["entries_omitted"] == len(truth) - len(kept)
    if fields["entries_omitted"]:
        assert fields["text"].startswith(
            f"[... {len(truth) - len(kept)} older entries counted but not kept: "
            f"showing the newest {len(kept)} of {len(truth)} (max_entries {keep}) ...]\n"
        )


# -- filter combinations --------------------------------------------------------------------
CASES: dict[str, dict[str, Any]] = {
    "everything": {},  # ~6 MB of JSON
    "one-unit": {"unit": "api"},
    "two-units": {"unit": ["worker.service", "nginx"]},
    "errors": {"priority": "err"},
    "warning-and-worse": {"priority": 4},
    "priority-range": {"priority": "crit..warning"},
    "debug-only": {"priority": "debug..debug"},
    "since": {"since": "2024-05-04 00:00:00"},
    "until": {"until": "2024-05-02 12:00:00"},
    "window": {"since": "2024-05-02 06:00", "until": "2024-05-03 18:30"},
    "epoch-window": {"since": "@1714700000", "until": "@1714900000"},
    "grep-word": {"grep": "timeout"},
    "grep-anchored": {"grep": "^GET /api/v1/items/[0-9]+ 5"},
    "grep-unicode": {"grep": "日本語"},
    "grep-multiline": {"grep": "ValueError: bad input"},
    "grep-smart-case": {"grep": "error"},
    "grep-repeated-second-value": {"grep": "second line"},
    "newest-5000": {"lines": 5000},
    "newest-1": {"lines": 1},
    "newest-more-than-there-are": {"lines": 20000},
    "unit-errors-since": {"unit": "api", "priority": "err", "since": "2024-05-02"},
    "grep-newest": {"grep": "ERROR", "lines": 300},
    "unit-window-newest": {
        "unit": "db",
        "since": "2024-05-02 00:00",
        "until": "2024-05-06 00:00",
        "lines": 50,
    },
    "errors-newest-2000": {"priority": "err", "lines": 2000},
    "two-files": {"file": ["history", "recent"]},
    "two-files-newest": {"file": ["history", "recent"], "lines": 4000},
    "recent-hour": {"file": "recent", "since": "-1h"},
    "recent-hour-errors-both-files": {"file": ["history", "recent"], "since": "-1h", "priority": 3},
    "keep-none": {"max_entries": 0},
    "keep-ten-errors": {"priority": "err", "max_entries": 10},
    "keep-more-than-asked": {"lines": 700, "max_entries": 5000},
    "no-match-grep": {"grep": "no such text anywhere"},
    "no-match-unit": {"unit": "absent.service"},
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_same_answers_as_journalctl(journals: Journals, case: dict[str, Any]) -> None:
    assert_same_answer(journals, case, ours(journals, case))


def test_the_cases_reach_far_past_one_mebibyte_of_output(journals: Journals) -> None:
    """The combinations above are not small: journalctl's JSON for them is megabytes."""
    proc = subprocess.run(
        [JOURNALCTL, "--no-pager", "-o", "json", f"--file={journals.history}"],
        capture_output=True,
        check=True,
    )
    assert len(proc.stdout) > 4 * 1024 * 1024
    assert len(oracle(journals, {"priority": "err"})) > 1000


def test_every_message_reads_as_written(journals: Journals) -> None:
    """Unicode, multi-line, binary (invalid UTF-8, control characters), repeated and
    over-4096-byte MESSAGE values, compared with what the generator wrote."""
    result = ours(journals, {"max_entries": HISTORY_ENTRIES})
    assert result.fields["count"] == HISTORY_ENTRIES
    kinds = {"binary": 0, "repeated": 0, "omitted": 0, "multi-line": 0, "unicode": 0}
    for entry in result.fields["entries"]:
        stamp = datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))
        written = journals.written[int(stamp.timestamp()) * 1_000_000 + stamp.microsecond]
        if written.messages is None:
            assert entry["message"] == ""
            continue
        shown = [
            OMITTED if len(v) > 4096 else v.decode("utf-8", "replace") for v in written.messages
        ]
        assert entry["message"] == "\n".join(shown)
        kinds["binary"] += any(b"\xff" in v or b"\x1b" in v for v in written.messages)
        kinds["repeated"] += len(written.messages) > 1
        kinds["omitted"] += any(len(v) > 4096 for v in written.messages)
        kinds["multi-line"] += "\n" in shown[0]
        kinds["unicode"] += "日本語" in shown[0]
    assert all(count >= 10 for count in kinds.values()), kinds


def test_memory_stays_bounded_however_many_entries_match(journals: Journals) -> None:
    """12,000 entries (~6 MB of JSON) read while holding only the newest 100.

    Holding them all takes ~19 MB here; streaming peaks at ~0.3 MB.
    """
    ours(journals, {"max_entries": 1})  # imports and plugin loading are not the point
    tracemalloc.start()
    try:
        result = ours(journals, {"max_entries": 100})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.fields["count"] == HISTORY_ENTRIES
    assert len(result.fields["entries"]) == 100
    assert peak < 1024 * 1024, f"peak {peak} bytes while reading"


# -- as a user runs it: a runbook through the CLI, here and over SSH ------------------------
def _runbook(journals: Journals, target: str = "", targets: str = "") -> str:
    errors = oracle(journals, {}, "-p", "0..3")
    everything = oracle(journals, {})
    newest = _iso(int(everything[-1]["__REALTIME_TIMESTAMP"]))
    fifth_thousand = _iso(int(everything[-5000]["__REALTIME_TIMESTAMP"]))
    file = f'file: "{journals.history}"{target}'
    return f"""
        apiVersion: runbook/v1
        kind: Runbook
        metadata: {{name: journal-volume, title: Journal volume, severity: P3}}
        {targets}
        steps:
          - id: every-entry
            phase: triage
            check: {{journald: {{{file}}}}}
            expect:
              - "count == {len(everything)}"
              - "count_errors == {len(errors)}"
              - "entries_omitted == {len(everything) - 1000}"
              - "len(entries) == 1000"
              - "entries[-1].time == '{newest}'"
          - id: newest-5000
            phase: triage
            check: {{journald: {{{file}, lines: 5000, max_entries: 5000}}}}
            expect:
              - "count == 5000"
              - "entries[0].time == '{fifth_thousand}'"
              - "entries[-1].time == '{newest}'"
          - id: few-errors
            phase: triage
            check: {{journald: {{{file}}}}}
            expect: ["count_errors < 300"]
        """


def _step_results(log_dir: Path) -> Iterator[dict[str, Any]]:
    (log,) = log_dir.glob("*.jsonl")
    for line in log.read_text().splitlines():
        row = json.loads(line)
        if row["type"] == "step.result":
            yield row["data"]


def test_a_runbook_counts_every_entry_and_fails_the_check_it_should(
    journals: Journals, run_cli, write_runbook
) -> None:
    """The issue's case: `count_errors < 300` must fail on a journal with 1,000+ errors."""
    path = write_runbook(_runbook(journals))
    r = run_cli("run", str(path), "--log-dir", "logs", timeout=180)
    assert r.code == 1, r.text
    results = {row["step"]: row for row in _step_results(path.parent / "logs")}
    assert results["every-entry"]["fields"]["count"] == HISTORY_ENTRIES
    assert results["newest-5000"]["fields"]["count"] == 5000
    assert results["few-errors"]["fields"]["count_errors"] > 1000
    logged = results["every-entry"]["fields"]
    assert logged["entries_omitted"] == HISTORY_ENTRIES - 1000 and len(logged["entries"]) == 1000
    assert logged["text"].startswith(f"[... {HISTORY_ENTRIES - 1000} older entries counted")
    errors = results["few-errors"]["fields"]["count_errors"]
    assert f"assert {errors} < 300 (count_errors)" in r.out


def test_a_runbook_over_ssh_streams_every_entry(
    journals: Journals, tmp_path_factory, run_cli, write_runbook
) -> None:
    reason = sshd.ensure_sshd()
    if reason:
        pytest.skip(reason)
    fleet = sshd.shared_fleet(tmp_path_factory.mktemp("sshd"))
    targets = f"targets:\n          web: {fleet.target_yaml(['127.0.0.2'])}"
    path = write_runbook(_runbook(journals, ", target: web", targets))
    r = run_cli("run", str(path), "--log-dir", "logs", timeout=180)
    assert r.code == 1, r.text
    results = {row["step"]: row for row in _step_results(path.parent / "logs")}
    for step, count in (("every-entry", HISTORY_ENTRIES), ("newest-5000", 5000)):
        host = results[step]["hosts"]["127.0.0.2"]
        assert host["ok"] and host["fields"]["count"] == count, host
    assert results["few-errors"]["hosts"]["127.0.0.2"]["fields"]["count_errors"] > 1000
