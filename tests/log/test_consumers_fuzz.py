"""Whatever a chain-valid log holds, its readers render it or refuse it in one line.

`runbook log verify` vouches for the bytes, not for what they say: a log written
by another version, by another tool, or edited and re-chained verifies and can
hold anything JSON (or Python's JSON reader) allows. So these logs are built
from a real run's log (`tests/data/reports/golden-run.jsonl`, plus fan-out
records) with junk swapped in -- wrong types for any field, missing fields, odd
timestamps, huge strings, unicode and control characters, NaN and Infinity,
huge and deeply nested values, unknown record types -- and chained the way
`runbook.log.verify` checks, so every reader gets past verification. Each log
then goes through `log show`, `log list` (with `--sla`), `report` in every
format and `run --resume`, in-process; the only exceptions allowed are the
project's own (`RunbookError`), a JSON report still validates against its
schema and a JUnit report still parses. A few logs go through the real CLI,
whose stderr must hold no traceback.

`RUNBOOK_FUZZ_EXAMPLES` raises the number of examples (default 40, which keeps
this file well under a minute on two cores), e.g. `RUNBOOK_FUZZ_EXAMPLES=3000`.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.cli import ROOT, RunCli

from runbook.cli.report import run_report, sla_overview
from runbook.errors import InvalidInput, JournalCorrupt, RunbookError
from runbook.load.model import Runbook
from runbook.log.journal import JournalWriter, read_log
from runbook.log.records import RecordType
from runbook.log.verify import verify_log
from runbook.log.view import format_timeline, list_logs
from runbook.registry import PluginRegistry
from runbook.run.resume import load_resume
from runbook.run.secrets import Masker
from runbook.session import Session

EXAMPLES = int(os.environ.get("RUNBOOK_FUZZ_EXAMPLES", "40"))
DATA = ROOT / "tests" / "data" / "reports"
GOLDEN = [json.loads(line) for line in (DATA / "golden-run.jsonl").read_text().splitlines()]
RUNBOOK_FILE = DATA / "golden.yaml"
FORMATS = ("postmortem", "json", "junit", "html")
REPORT_SCHEMA = json.loads((ROOT / "schemas" / "report.schema.json").read_text())
TYPES = [str(kind) for kind in RecordType]
CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
SESSION = Session()
RUNBOOK: Runbook = SESSION.load_file(RUNBOOK_FILE)
SHA256 = RUNBOOK.sha256
REGISTRY: PluginRegistry = SESSION.registry
_COUNTER = itertools.count()

_TS = "2026-11-25T12:26:55.{:06d}Z"
FANOUT: list[dict[str, Any]] = [
    {"type": "step.started", "data": {"step": "restart", "kind": "action", "phase": "mitigate"}},
    {"type": "step.attempt", "data": {"step": "restart", "attempt": 1, "summary": "$ true"}},
    {"type": "step.hosts_started", "data": {"step": "restart", "hosts": ["web1", "web2", "web3"]}},
    {
        "type": "step.host_finished",
        "data": {"step": "restart", "host": "web1", "ok": True, "fields": {"exit_code": 0}},
    },
    {
        "type": "step.host_finished",
        "data": {"step": "restart", "host": "web2", "ok": False, "error": "boom", "elapsed": 0.2},
    },
    {
        "type": "step.result",
        "data": {
            "step": "restart",
            "ok": False,
            "error": "1 of 3 hosts failed",
            "hosts": {"web1": {"ok": True}, "web2": {"ok": False, "timed_out": True}},
        },
    },
    {"type": "step.retry", "data": {"step": "restart", "delay": 2, "next_attempt": 2}},
    {"type": "step.restored", "data": {"step": "logs", "kind": "check", "status": "passed"}},
    {"type": "incident.mark", "data": {"mark": "mitigated", "step": "restart"}},
    {"type": "observer.error", "data": {"step": "restart", "message": "webhook down"}},
    {"type": "step.planned", "data": {"step": "restart", "summary": "$ true", "unknown": "x"}},
    {"type": "step.skipped", "data": {"step": "recovered", "reason": "when is false"}},
]
for _n, _record in enumerate(FANOUT):
    _record["ts"] = _TS.format(_n)

# Bytes a log can hold that `json.dumps` of Python data never writes: the writer's
# canonical JSON refuses them, Python's reader takes them, `verify` never parses.
RAW = {
    "@@nan@@": "NaN",
    "@@inf@@": "Infinity",
    "@@-inf@@": "-Infinity",
    "@@e999@@": "1e999",
    "@@bigint@@": "9" * 5000,
    "@@deep@@": "[" * 3000 + "]" * 3000,
    "@@nested@@": "[" * 400 + "]" * 400,
}
KEYS = ["step", "status", "phase", "kind", "hosts", "host", "fields", "ok", "elapsed"]
KEYS += ["attempts", "runbook", "name", "sha256", "params", "targets", "resumed_from"]
KEYS += ["log", "final_hash", "identity", "os_user", "counts", "exit_code", "message"]
TIMESTAMPS = st.one_of(
    st.sampled_from(
        [
            "",
            "yesterday",
            "2026-13-45T25:61:61Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
            "2026-11-25",
            "2026-11-25T12:26:54+05:00",
            "1700000000",
            "\u202e\x1b[2J\ud800",
        ]
    ),
    st.text(max_size=40).filter(lambda t: '"' not in t),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**64, -(2**63), 10**300]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(["passed", "failed", "action", "check", "restart", "*", "***", "\x00"]),
    st.sampled_from(["x" * 70_000, "\u202e\x1b]52;c;AAAA\x07\ud800é漢"]),
    st.sampled_from(TYPES),
    st.sampled_from(sorted(RAW)),
    TIMESTAMPS,
)
JUNK = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=3),
    ),
    max_leaves=8,
)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*path, index))
    return found


@st.composite
def junk_logs(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A run's records with junk in them (not yet chained)."""
    records = copy.deepcopy(GOLDEN)
    records[0]["data"]["runbook"]["sha256"] = draw(st.sampled_from([SHA256, "0" * 64]))
    if draw(st.booleans()):
        records[-1]["data"]["status"] = "failed"  # resumable
    if draw(st.booleans()):
        at = draw(st.integers(1, len(records) - 1))
        records[at:at] = copy.deepcopy(FANOUT)
    for _ in range(draw(st.integers(1, 6))):
        index = draw(st.integers(0, len(records) - 1))
        record = records[index]
        how = draw(st.sampled_from(["value", "value", "value", "drop", "ts", "type", "insert"]))
        if how in ("value", "drop"):
            path = draw(st.sampled_from(_paths(record["data"])))
            if not path:
                record["data"] = draw(JUNK)
                continue
            parent = record["data"]
            for part in path[:-1]:
                parent = parent[part]
            if how == "drop":
                del parent[path[-1]]
            else:
                parent[path[-1]] = draw(JUNK)
        elif how == "ts":
            record["ts"] = draw(TIMESTAMPS)
        elif how == "type" and index:
            record["type"] = draw(st.sampled_from([*TYPES, "zzz", "step.x"]))
        elif how == "insert":
            kind = draw(st.sampled_from(TYPES[1:]))
            records.insert(
                max(index, 1), {"type": kind, "ts": draw(TIMESTAMPS), "data": draw(JUNK)}
            )
    if draw(st.integers(0, 9)) == 0:
        records.pop()  # stops early: a crash
    if draw(st.integers(0, 9)) == 0:
        records[0]["auth"] = draw(JUNK)  # extra keys before `prev` stay chain-valid
    return records


def write_chained(path: Path, records: list[dict[str, Any]]) -> None:
    """Write `records` as a chain `runbook.log.verify` accepts: canonical-looking JSON
    (sorted keys, no spaces, ASCII) with seq, prev and sha256 as the writer computes them,
    and RAW's tokens spliced in as bytes."""
    prev, lines = "0" * 64, []
    for seq, record in enumerate(records):
        body = {key: value for key, value in record.items() if key not in ("prev", "seq", "sha256")}
        body.update(prev=prev, seq=seq)
        body.setdefault("ts", "")
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        for token, raw in RAW.items():
            text = text.replace(f'"{token}"', raw)
        prev = hashlib.sha256(text.encode("ascii")).hexdigest()
        lines.append(f'{text[:-1]},"sha256":"{prev}"}}\n')
    path.write_text("".join(lines), encoding="ascii")


@pytest.fixture(autouse=True)
def default_sla(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reports state SLA targets: keep the operator's own config out of the tests."""
    monkeypatch.delenv("RUNBOOK_SLA_FILE", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("no-config")))


@pytest.fixture(scope="module")
def logs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("junk-logs")


def _fresh_log(root: Path, records: list[dict[str, Any]]) -> Path:
    """The log alone in a new directory (resume looks at its neighbours)."""
    directory = root / f"d{next(_COUNTER)}"
    directory.mkdir()
    path = directory / "20261125T122654Z-golden-baf1cb3b3e31.jsonl"
    write_chained(path, records)
    assert not verify_log(path).tampered, verify_log(path).reason
    return path


def _allowed(exc: RunbookError) -> None:
    """A refusal is one printable line with the exit code of its kind."""
    assert exc.message and "\n" not in exc.message.strip()
    assert isinstance(exc, InvalidInput | JournalCorrupt), repr(exc)


def read_every_way(path: Path) -> None:
    """Every consumer of a log, in-process, as the CLI verbs call them."""
    try:
        records = read_log(path)
    except JournalCorrupt as exc:
        _allowed(exc)  # a line Python's JSON reader cannot parse (nested too deep)
    else:
        for color in (False, True):
            shown = format_timeline(records, color=color)
            assert shown.encode("utf-8")  # printable: no lone surrogate left
    [summary] = list_logs(path.parent)
    listed = f"{summary.runbook} {summary.run_id} {summary.started} {summary.status}"
    listed += "\n".join(sla_overview([path]))
    assert not CONTROLS.search(listed), listed
    assert listed.encode("utf-8")
    for fmt in FORMATS:
        out = path.parent / f"report.{fmt}"
        try:
            run_report(REGISTRY, str(path), fmt, str(out), allow_unverified=True)
        except RunbookError as exc:
            _allowed(exc)
            continue
        text = out.read_text(encoding="utf-8")
        if fmt == "json":
            jsonschema.validate(json.loads(text, parse_constant=_no_constant), REPORT_SCHEMA)
        elif fmt == "junit":
            ET.fromstring(text.encode("utf-8"))
    try:
        load_resume(path, RUNBOOK)
    except RunbookError as exc:
        _allowed(exc)


def _no_constant(name: str) -> None:
    raise AssertionError(f"the JSON report holds {name}, which is not JSON")


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(records=junk_logs())
def test_a_chain_valid_log_with_junk_is_rendered_or_refused_never_a_traceback(
    records: list[dict[str, Any]], logs_root: Path
) -> None:
    read_every_way(_fresh_log(logs_root, records))


def test_the_golden_log_itself_passes_every_reader(logs_root: Path) -> None:
    read_every_way(_fresh_log(logs_root, copy.deepcopy(GOLDEN)))


# -- the classes the first fuzz found, pinned ------------------------------------------------
def _golden_with(change: Any, logs_root: Path) -> Path:
    records = copy.deepcopy(GOLDEN)
    records[0]["data"]["runbook"]["sha256"] = SHA256
    records[-1]["data"]["status"] = "failed"
    change(records)
    return _fresh_log(logs_root, records)


def test_a_timestamp_that_is_not_one_is_shown_as_unreadable_in_every_report(
    logs_root: Path,
) -> None:
    def odd_times(records: list[dict[str, Any]]) -> None:
        records[0]["data"]["started"] = "1700000000"
        records[-1]["ts"] = "yesterday"

    path = _golden_with(odd_times, logs_root)
    read_every_way(path)
    out = path.parent / "report.md"
    run_report(REGISTRY, str(path), "postmortem", str(out), allow_unverified=False)
    assert "time unreadable" in out.read_text()


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda r: r[0]["data"].update(runbook=True), id="header-runbook-bool"),
        pytest.param(lambda r: r[0]["data"].update(params=1.5), id="header-params-float"),
        pytest.param(lambda r: r[9].update(data=7), id="record-data-int"),
        pytest.param(lambda r: r[10]["data"].update(attempts="many"), id="attempts-text"),
        pytest.param(lambda r: r[10]["data"].update(elapsed="slow"), id="elapsed-text"),
        pytest.param(lambda r: r[3]["data"].update(fields=[1]), id="fields-list"),
    ],
)
def test_resume_refuses_a_field_it_cannot_act_on_naming_seq_and_field(
    change: Any, logs_root: Path
) -> None:
    path = _golden_with(change, logs_root)
    with pytest.raises(InvalidInput) as info:
        load_resume(path, RUNBOOK)
    assert "seq " in info.value.message and "cannot be resumed safely" in info.value.message
    read_every_way(path)


def test_resume_of_a_log_naming_an_impossible_predecessor_is_refused(logs_root: Path) -> None:
    def link(records: list[dict[str, Any]]) -> None:
        link = {"log": "a\x00b" + "x" * 5000, "final_hash": "0" * 64, "run_id": "r"}
        records[0]["data"]["resumed_from"] = link

    with pytest.raises(InvalidInput, match="which is not there"):
        load_resume(_golden_with(link, logs_root), RUNBOOK)


def test_nan_and_infinity_in_a_log_stay_out_of_the_json_report(logs_root: Path) -> None:
    def non_finite(records: list[dict[str, Any]]) -> None:
        records[0]["data"]["params"]["ratio"] = "@@nan@@"
        records[6]["data"]["elapsed"] = "@@inf@@"

    path = _golden_with(non_finite, logs_root)
    out = path.parent / "report.json"
    run_report(REGISTRY, str(path), "json", str(out), allow_unverified=False)
    report = json.loads(out.read_text(), parse_constant=_no_constant)
    assert report["incident"]["params"]["ratio"] == "nan"
    health = next(step for step in report["steps"] if step["id"] == "health")
    assert health["elapsed"] is None


def test_log_show_escapes_what_a_terminal_would_obey(logs_root: Path) -> None:
    def escapes(records: list[dict[str, Any]]) -> None:
        records[6]["data"]["status"] = "\x1b[2Kpassed\ud800"
        records[1]["ts"] = "2026-11-25T\x1b]52;c;AAAA\x07"

    shown = format_timeline(read_log(_golden_with(escapes, logs_root)))
    assert "\x1b" not in shown and "\x07" not in shown
    assert "\\x1b[2Kpassed\\ud800" in shown


def test_junk_written_through_the_real_writer_is_read_back(tmp_path: Path) -> None:
    header = {"runbook": ["not", "a", "mapping"], "params": "none", "started": 5}
    writer = JournalWriter.create(tmp_path, "golden", "r1", header, Masker([]))
    with writer:
        writer.append(RecordType.STEP_STARTED, {"step": {"id": 1}, "phase": None})
        writer.append(RecordType.STEP_FINISHED, {"step": "x", "status": 3, "attempts": "2"})
        writer.append(RecordType.RUN_FINISHED, {"status": ["failed"], "exit_code": True})
    assert verify_log(writer.path).ok
    read_every_way(writer.path)


# -- through the CLI -----------------------------------------------------------------------
def _cli_logs() -> list[tuple[str, list[dict[str, Any]]]]:
    def changed(fn: Any) -> list[dict[str, Any]]:
        records = copy.deepcopy(GOLDEN)
        records[0]["data"]["runbook"]["sha256"] = SHA256
        records[-1]["data"]["status"] = "failed"
        fn(records)
        return records

    return [
        ("odd-times", changed(lambda r: [x.update(ts="1700000000") for x in r])),
        ("header-junk", changed(lambda r: r[0]["data"].update(runbook=True, identity=[None]))),
        ("data-junk", changed(lambda r: [x.update(data=["@@nan@@", "\x1b[2J"]) for x in r[1:]])),
        ("surrogates", changed(lambda r: r[6]["data"].update(step="\ud800", status="\udfff"))),
        ("severity", changed(lambda r: r[0]["data"].update(severity="\ud800\x1b[2J"))),
    ]


@pytest.mark.parametrize(("case", "records"), _cli_logs(), ids=[c for c, _ in _cli_logs()])
def test_the_cli_reads_a_junk_log_without_a_traceback(
    case: str, records: list[dict[str, Any]], run_cli: RunCli, tmp_path: Path
) -> None:
    logs = tmp_path / "junk"
    logs.mkdir()
    path = logs / "20261125T122654Z-golden-baf1cb3b3e31.jsonl"
    write_chained(path, records)
    calls = [
        (("log", "show", str(path)), {0}),
        (("log", "list", "--log-dir", str(logs), "--sla"), {0}),
        *((("report", str(path), "--format", fmt), {0, 5}) for fmt in FORMATS),
        (
            (
                "run",
                str(RUNBOOK_FILE),
                "--resume",
                str(path),
                "--yes",
                "--answer",
                "ack=yes",
                "--log-dir",
                str(tmp_path / "new"),
            ),
            {0, 1, 2, 5},
        ),
    ]
    for args, codes in calls:
        result = run_cli(*args)
        assert "Traceback" not in result.err, (case, args, result.err)
        assert result.code in codes, (case, args, result.code, result.err)
