"""The incident log: what is written, what verify tells apart, and how it is shown."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runbook.errors import ExitCode, JournalCorrupt, LogDirError
from runbook.log.journal import (
    GENESIS,
    MAX_STRING_BYTES,
    JournalWriter,
    Verification,
    canonical_json,
    list_logs,
    read_log,
    verify_log,
)
from runbook.log.verify import VerifiedRecords, verify_records
from runbook.log.view import format_timeline
from runbook.run.secrets import Masker

HEADER = {
    "run_id": "r1",
    "runbook": {"name": "service-outage", "title": "Service outage", "severity": "P0"},
    "params": {"service": "api"},
    "operator": "alice",
    "host": "ops-1",
    "dry_run": False,
    "started": "2024-05-01T12:00:00.000000Z",
}
RECORDS = 12  # header, 10 step events, run.finished


def write_run(
    log_dir: Path,
    *,
    run_id: str = "r1",
    steps: int = RECORDS - 2,
    final: str | None = "run.finished",
    header: dict[str, object] | None = None,
    masker: Masker | None = None,
) -> Path:
    """A real log: header, `steps` step events (one with non-ASCII text), a final record."""
    head = {**(header or HEADER), "run_id": run_id}
    with JournalWriter.create(log_dir, "service-outage", run_id, head, masker or Masker()) as w:
        for i in range(steps):
            w.append("step.finished", {"step": f"s{i}", "status": "passed", "note": "naïve ✓"})
        if final:
            w.append(final, {"status": "passed", "exit_code": 0})
        return w.path


@pytest.fixture(scope="module")
def good_log(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_run(tmp_path_factory.mktemp("good")).read_bytes()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One file that property tests overwrite per example (hypothesis and tmp_path don't mix)."""
    return tmp_path_factory.mktemp("scratch") / "log.jsonl"


def verify_bytes(scratch: Path, data: bytes) -> Verification:
    scratch.write_bytes(data)
    return verify_log(scratch)


def lines_of(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


# --- writing -------------------------------------------------------------------------


def test_written_log_verifies_and_links_every_record(tmp_path: Path) -> None:
    path = write_run(tmp_path)
    result = verify_log(path)
    assert result == Verification(
        ok=True,
        records=RECORDS,
        first_bad_seq=None,
        truncated=False,
        tampered=False,
        reason="ok",
        final_hash=read_log(path)[-1]["sha256"],
        complete=True,
    )
    records = read_log(path)
    assert [r["seq"] for r in records] == list(range(RECORDS))
    assert records[0]["type"] == "header" and records[0]["data"]["format"] == 1
    assert records[0]["prev"] == GENESIS
    for before, after in zip(records, records[1:], strict=False):
        assert after["prev"] == before["sha256"]


def test_sha256_covers_the_canonical_json_of_the_record_without_it(tmp_path: Path) -> None:
    path = write_run(tmp_path)
    for raw, record in zip(path.read_bytes().splitlines(), read_log(path), strict=True):
        body = {k: v for k, v in record.items() if k != "sha256"}
        assert hashlib.sha256(canonical_json(body).encode()).hexdigest() == record["sha256"]
        assert raw == (canonical_json(body)[:-1] + f',"sha256":"{record["sha256"]}"}}').encode()
        assert raw.isascii()
    assert path.name.endswith("-service-outage-r1.jsonl")


def test_append_returns_the_record_as_written(tmp_path: Path) -> None:
    with JournalWriter.create(tmp_path, "rb", "r1", HEADER, Masker()) as writer:
        record = writer.append("step.started", {"step": "health", "phase": "detect"})
        assert writer.seq == 1 and writer.last_hash == record["sha256"]
    assert read_log(writer.path)[1] == record
    assert set(record) == {"seq", "prev", "ts", "type", "data", "sha256"}
    assert record["ts"].endswith("Z") and len(record["ts"]) == len("2024-05-01T12:00:00.000000Z")


def test_writer_exposes_what_the_runner_needs(tmp_path: Path) -> None:
    masker = Masker(["hunter22"])
    with JournalWriter.create(tmp_path, "rb", "r7", HEADER, masker) as writer:
        assert (writer.run_id, writer.masker, writer.seq) == ("r7", masker, 0)
        assert writer.header_record == read_log(writer.path)[0]
        assert writer.started == HEADER["started"]
        assert writer.last_hash == writer.header_record["sha256"]


def test_append_many_writes_consecutive_records(tmp_path: Path) -> None:
    with JournalWriter.create(tmp_path, "rb", "r1", HEADER, Masker()) as writer:
        written = writer.append_many([("step.started", {"i": i}) for i in range(5)])
        writer.append("run.finished", {"status": "passed"})
    assert [r["seq"] for r in written] == [1, 2, 3, 4, 5]
    assert verify_log(writer.path).ok


class _InterruptedFlush(io.BufferedWriter):
    """A real file whose first flush raises KeyboardInterrupt: SIGINT landing mid-fsync."""

    pending = True

    def flush(self) -> None:
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt
        super().flush()


def test_a_record_interrupted_while_syncing_is_still_followed_by_the_next(
    tmp_path: Path,
) -> None:
    """SIGINT after the bytes reached the file: run.interrupted links to that record.

    Otherwise it would reuse the record's seq, and `log verify` would call the log
    of an interrupted run tampered.
    """
    path = tmp_path / "log.jsonl"
    writer = JournalWriter(path, _InterruptedFlush(io.FileIO(path, "wb")), Masker(), "r1")
    with pytest.raises(KeyboardInterrupt):
        writer.append("step.attempt", {"step": "wait", "attempt": 1})
    writer.append("run.interrupted", {"reason": "interrupted by the operator (SIGINT)"})
    writer.close()
    first, second = read_log(path)
    assert (first["seq"], second["seq"]) == (0, 1) and second["prev"] == first["sha256"]
    assert writer.seq == 1 and writer.last_hash == second["sha256"]


def test_concurrent_appends_keep_one_chain(tmp_path: Path) -> None:
    with JournalWriter.create(tmp_path, "rb", "r1", HEADER, Masker()) as writer:

        def host(name: str) -> None:
            for i in range(25):
                writer.append("step.result", {"host": name, "i": i})

        threads = [threading.Thread(target=host, args=(f"web-{n}",)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        writer.append("run.finished", {"status": "passed"})
    result = verify_log(writer.path)
    assert result.ok and result.records == 1 + 8 * 25 + 1


def test_log_is_readable_while_the_writer_is_open(tmp_path: Path) -> None:
    with JournalWriter.create(tmp_path, "rb", "r1", HEADER, Masker()) as writer:
        writer.append("step.started", {"step": "health"})
        assert [r["type"] for r in read_log(writer.path)] == ["header", "step.started"]
        running = verify_log(writer.path)
        assert running.truncated and not running.tampered
        assert "still running; last good seq 1" in running.reason


def test_values_json_cannot_hold_are_stored_as_text(tmp_path: Path) -> None:
    odd = {"nan": float("nan"), "bytes": b"\xffok", "set": {1}, "obj": object(), 3: "key"}
    with JournalWriter.create(tmp_path, "rb", "r1", HEADER, Masker()) as writer:
        record = writer.append("step.result", {"odd": odd, "surrogate": "bad \udcff byte"})
        writer.append("run.finished", {"status": "passed"})
    assert verify_log(writer.path).ok
    data = read_log(writer.path)[1]["data"]
    assert data == record["data"]
    assert data["odd"]["nan"] == "nan" and data["odd"]["set"] == [1] and data["odd"]["3"] == "key"
    assert data["surrogate"] == "bad \udcff byte"


def test_huge_strings_are_capped_with_their_size_noted(tmp_path: Path) -> None:
    big = "é" * MAX_STRING_BYTES  # 2 bytes each: twice the cap
    with JournalWriter.create(tmp_path, "rb", "r1", HEADER, Masker()) as writer:
        stored = writer.append("step.result", {"stdout": big, "small": "x" * 100})["data"]
    head, note = stored["stdout"].split("…")
    assert len(head.encode()) <= MAX_STRING_BYTES and set(head) == {"é"}
    assert note == f"[truncated, {2 * MAX_STRING_BYTES} bytes total]"
    assert stored["small"] == "x" * 100


def test_event_types_are_checked(tmp_path: Path) -> None:
    with JournalWriter.create(tmp_path, "rb", "r1", HEADER, Masker()) as writer:
        with pytest.raises(ValueError, match="invalid event type"):
            writer.append("Step Finished", {})
        with pytest.raises(ValueError, match="header"):
            writer.append("header", {})
    assert read_log(writer.path)[-1]["seq"] == 0


def test_unwritable_log_dir_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    for log_dir in (blocker / "logs", blocker):
        with pytest.raises(LogDirError) as caught:
            JournalWriter.create(log_dir, "rb", "r1", HEADER, Masker())
        assert str(caught.value) == f"cannot write incident logs to {log_dir}: Not a directory"
        assert caught.value.exit_code == ExitCode.INVALID


def test_an_existing_log_is_never_overwritten(tmp_path: Path) -> None:
    first = JournalWriter.create(tmp_path, "rb", "same", HEADER, Masker())
    try:
        with pytest.raises(LogDirError, match="File exists"):
            JournalWriter.create(tmp_path, "rb", "same", HEADER, Masker())
    finally:
        first.close()
    # (both calls fall in the same second almost always; if not, nothing to test)


def test_log_dir_is_created(tmp_path: Path) -> None:
    path = write_run(tmp_path / "deep" / "logs")
    assert path.parent == tmp_path / "deep" / "logs" and verify_log(path).ok


# --- secrets --------------------------------------------------------------------------

SECRET = "p@ss:w0rd/+=é-42"


def test_secrets_never_reach_the_file_in_any_encoding(tmp_path: Path) -> None:
    basic = base64.b64encode(f"admin:{SECRET}".encode()).decode()
    header = {**HEADER, "params": {"password": SECRET}}
    with JournalWriter.create(tmp_path, "rb", "r1", header, Masker([SECRET])) as writer:
        writer.append(
            "step.result",
            {
                "stdout": f"login with {SECRET} ok",
                "b64": base64.b64encode(SECRET.encode()).decode(),
                "urlsafe": base64.urlsafe_b64encode(SECRET.encode()).decode().rstrip("="),
                "url": f"https://db/?pw={quote(SECRET, safe='')}&q={quote_plus(SECRET)}",
                "headers": {"Authorization": f"Basic {basic}"},
                "nested": [("in", "a tuple", SECRET)],
            },
        )
    text = writer.path.read_text()
    decoded = json.dumps(read_log(writer.path), ensure_ascii=False)
    forms = [
        SECRET,
        json.dumps(SECRET)[1:-1],
        quote(SECRET, safe=""),
        quote_plus(SECRET),
        base64.b64encode(SECRET.encode()).decode().rstrip("="),
        base64.urlsafe_b64encode(SECRET.encode()).decode().rstrip("="),
        basic,
    ]
    for form in forms:
        assert form not in text and form not in decoded
    assert '"password":"***"' in text and '"nested":[["in","a tuple","***"]]' in text
    assert "Basic " in decoded
    assert not verify_log(writer.path).tampered  # masking happens before hashing


# --- verification: properties ----------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_single_byte_change_is_detected(
    good_log: bytes, scratch: Path, data: st.DataObject
) -> None:
    """Every byte of a complete line is covered by its hash (or is the hash, or a newline).

    Changing the last byte of the file (the final newline) leaves an
    unterminated line: truncated. Any other change: tampered, at the line
    holding the byte.
    """
    offset = data.draw(st.integers(0, len(good_log) - 1), label="offset")
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != good_log[offset]), label="byte")
    changed = good_log[:offset] + bytes([byte]) + good_log[offset + 1 :]
    result = verify_bytes(scratch, changed)
    assert not result.ok
    line = good_log.count(b"\n", 0, offset)
    if offset == len(good_log) - 1:
        assert result.truncated and not result.tampered
        assert (result.first_bad_seq, result.records) == (RECORDS - 1, RECORDS - 1)
    else:
        assert result.tampered and not result.truncated
        assert result.first_bad_seq == line and result.records == line
        assert result.reason.startswith(f"seq {line}: ")


@settings(max_examples=50, deadline=None)
@given(index=st.integers(0, RECORDS - 1))
def test_dropping_a_record_is_detected(good_log: bytes, scratch: Path, index: int) -> None:
    lines = lines_of(good_log)
    result = verify_bytes(scratch, b"".join(lines[:index] + lines[index + 1 :]))
    assert not result.ok
    if index == RECORDS - 1:  # looks exactly like a crash before run.finished
        assert result.truncated and not result.tampered and result.records == RECORDS - 1
        assert "no run.finished" in result.reason
    else:
        assert result.tampered and result.first_bad_seq == index
        assert "seq gap" in result.reason or index == 0


@settings(max_examples=50, deadline=None)
@given(pair=st.lists(st.integers(0, RECORDS - 1), min_size=2, max_size=2, unique=True))
def test_swapping_two_records_is_detected(good_log: bytes, scratch: Path, pair: list[int]) -> None:
    i, j = sorted(pair)
    lines = lines_of(good_log)
    lines[i], lines[j] = lines[j], lines[i]
    result = verify_bytes(scratch, b"".join(lines))
    assert result.tampered and not result.ok and result.first_bad_seq == i
    assert "reordered" in result.reason or i == 0


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_a_cut_log_is_truncated_not_tampered(
    good_log: bytes, scratch: Path, data: st.DataObject
) -> None:
    cut = data.draw(st.integers(1, len(good_log) - 1), label="cut")
    result = verify_bytes(scratch, good_log[:cut])
    kept = good_log.count(b"\n", 0, cut)
    assert result.truncated and not result.tampered and not result.ok
    last_good = f"last good seq {kept - 1}" if kept else "no good record"
    assert result.records == kept and last_good in result.reason
    if good_log[cut - 1 : cut] == b"\n":  # cut between records: the run never finished
        assert result.first_bad_seq is None and "no run.finished record" in result.reason
    else:
        assert result.first_bad_seq == kept and "incomplete" in result.reason


def _edited(line: bytes, rehash: bool) -> bytes:
    """`line` with one value changed, re-serialised canonically; its sha256 kept or redone."""
    record = json.loads(line)
    record["data"]["edited"] = True
    body = canonical_json({k: v for k, v in record.items() if k != "sha256"})
    digest = hashlib.sha256(body.encode()).hexdigest() if rehash else record["sha256"]
    return (body[:-1] + f',"sha256":"{digest}"}}\n').encode()


@settings(max_examples=150, deadline=None)
@given(
    edit=st.sampled_from(["none", "drop", "swap", "change", "rehash", "cut"]),
    i=st.integers(0, RECORDS - 1),
    j=st.integers(0, RECORDS - 1),
)
def test_parsed_records_get_the_verdict_of_their_bytes(
    good_log: bytes, scratch: Path, edit: str, i: int, j: int
) -> None:
    """`verify_records` (reports) and `verify_log` are one verifier: same verdict, field by field.

    Edits are to whole records, so every line still parses; a line that does not parse
    is left out by a tolerant reader, which the records then show as a seq gap.
    """
    lines = lines_of(good_log)
    if edit == "drop":
        del lines[i]
    elif edit == "swap":
        lines[i], lines[j] = lines[j], lines[i]
    elif edit in ("change", "rehash"):
        lines[i] = _edited(lines[i], rehash=edit == "rehash")
    elif edit == "cut":
        lines = lines[:i]
    from_bytes = verify_bytes(scratch, b"".join(lines))
    assert verify_records([json.loads(line) for line in lines]) == from_bytes


def test_verified_records_carry_their_verdict(tmp_path: Path) -> None:
    path = write_run(tmp_path)
    verdict = verify_log(path)
    records = VerifiedRecords(read_log(path), verdict)
    assert verify_records(records) is verdict
    assert verify_records(list(records)) == verdict


# --- verification: named cases -----------------------------------------------------------


def test_tampered_record_is_named_by_seq(good_log: bytes, scratch: Path) -> None:
    lines = lines_of(good_log)
    lines[4] = lines[4].replace(b'"status":"passed"', b'"status":"failed"')
    result = verify_bytes(scratch, b"".join(lines))
    assert result.tampered and result.first_bad_seq == 4
    assert result.reason == "seq 4: hash mismatch: the record was changed after it was written"
    with pytest.raises(JournalCorrupt) as caught:
        result.raise_if_bad(scratch)
    assert caught.value.seq == 4 and caught.value.exit_code == ExitCode.LOG_CORRUPT


def test_a_rehashed_record_breaks_the_chain_at_the_next_one(good_log: bytes, scratch: Path) -> None:
    record = json.loads(lines_of(good_log)[4])
    record["data"]["status"] = "failed"
    body = canonical_json({k: v for k, v in record.items() if k != "sha256"})
    digest = hashlib.sha256(body.encode()).hexdigest()
    lines = lines_of(good_log)
    lines[4] = (body[:-1] + f',"sha256":"{digest}"}}\n').encode()
    result = verify_bytes(scratch, b"".join(lines))
    assert result.tampered and result.first_bad_seq == 5 and "broken chain" in result.reason


def test_first_record_must_be_the_header(tmp_path: Path, scratch: Path) -> None:
    with JournalWriter.create(tmp_path, "rb", "r1", HEADER, Masker()) as writer:
        writer.append("run.finished", {"status": "passed"})
    raw = writer.path.read_bytes().replace(b'"type":"header"', b'"type":"headex"', 1)
    first = json.loads(raw.splitlines()[0])
    body = canonical_json({k: v for k, v in first.items() if k != "sha256"})
    fixed = body[:-1] + f',"sha256":"{hashlib.sha256(body.encode()).hexdigest()}"}}\n'
    result = verify_bytes(scratch, fixed.encode())
    assert result.tampered and result.first_bad_seq == 0 and "not the header" in result.reason


def test_empty_log(scratch: Path) -> None:
    result = verify_bytes(scratch, b"")
    assert (result.truncated, result.tampered, result.reason, result.records) == (
        True,
        False,
        "empty log",
        0,
    )


def test_zero_bytes_after_a_crash_are_truncation(good_log: bytes, scratch: Path) -> None:
    lines = lines_of(good_log)[:5]
    result = verify_bytes(scratch, b"".join(lines) + b"\0" * 300 + b"\n" + b"\0" * 10)
    assert result.truncated and not result.tampered and result.records == 5
    assert "last good seq 4" in result.reason


def test_interrupted_run_is_complete(tmp_path: Path) -> None:
    result = verify_log(write_run(tmp_path, final="run.interrupted"))
    assert result.ok and result.complete


def test_verify_spans_read_chunks(tmp_path: Path) -> None:
    with JournalWriter.create(tmp_path, "rb", "big", HEADER, Masker()) as writer:
        for _ in range(40):  # ~12 MB: more than one 8 MiB read
            writer.append_many([("step.result", {"stdout": "x" * 200})] * 1000)
        writer.append("run.finished", {"status": "passed"})
    assert verify_log(writer.path).records == 40_002
    with writer.path.open("r+b") as file:
        file.seek(-100, 2)
        file.write(b"X")
    assert verify_log(writer.path).first_bad_seq == 40_001


# --- reading and listing -----------------------------------------------------------------


def test_read_log_skips_a_partial_last_line_but_not_a_bad_middle(
    good_log: bytes, scratch: Path
) -> None:
    scratch.write_bytes(good_log[:-40])
    assert len(read_log(scratch)) == RECORDS - 1
    lines = lines_of(good_log)
    lines[3] = b"{not json\n"
    scratch.write_bytes(b"".join(lines))
    with pytest.raises(JournalCorrupt) as caught:
        read_log(scratch)
    assert caught.value.seq == 3


def test_list_logs_summarises_each_run(tmp_path: Path) -> None:
    done = write_run(tmp_path, run_id="b", header={**HEADER, "started": "2024-05-02T00:00:00Z"})
    crashed = write_run(tmp_path, run_id="a", final=None, header={**HEADER, "dry_run": True})
    cut = write_run(tmp_path, run_id="c", header={**HEADER, "started": "2024-05-03T00:00:00Z"})
    cut.write_bytes(cut.read_bytes()[:-30])
    (tmp_path / "junk.jsonl").write_text("nope\n")
    (tmp_path / "notes.txt").write_text("ignored")
    summaries = list_logs(tmp_path)
    assert [s.path for s in summaries] == [tmp_path / "junk.jsonl", crashed, done, cut]
    junk, first, second, third = summaries
    assert junk.status == "unreadable"
    assert (first.run_id, first.runbook, first.status, first.dry_run, first.records) == (
        "a",
        "service-outage",
        "incomplete",
        True,
        RECORDS - 1,
    )
    assert (second.status, second.started, second.records) == ("passed", "2024-05-02T00:00:00Z", 12)
    assert (third.status, third.records) == ("incomplete", RECORDS - 1)
    assert list_logs(tmp_path / "missing") == []


# --- the timeline ------------------------------------------------------------------------


def story(tmp_path: Path) -> list[dict[str, object]]:
    with JournalWriter.create(tmp_path, "service-outage", "r9", HEADER, Masker()) as w:
        w.append(
            "step.restored",
            {"step": "collect", "phase": "detect", "kind": "check", "status": "passed"}
            | {"from_run": "r8", "reason": "finished in the interrupted run; not run again"},
        )
        w.append(
            "step.started",
            {"step": "health", "phase": "detect", "kind": "check", "executor": "http"},
        )
        w.append(
            "step.attempt", {"step": "health", "attempt": 1, "call": {"summary": "GET /health"}}
        )
        w.append("step.expectation", {"step": "health", "expr": "status == 200", "passed": True})
        w.append(
            "step.expectation",
            {
                "step": "health",
                "expr": "json.ok",
                "passed": False,
                "message": "assert False\n(json.ok)",
            },
        )
        w.append(
            "step.retry",
            {"step": "health", "delay": 2, "next_attempt": 2, "attempts": 3, "reason": "failed"},
        )
        w.append(
            "step.attempt", {"step": "health", "attempt": 2, "call": {"summary": "GET /health"}}
        )
        w.append(
            "step.finished",
            {"step": "health", "kind": "check", "status": "failed", "elapsed": 1.24},
        )
        w.append("step.started", {"step": "restart", "phase": "mitigate", "kind": "action"})
        w.append(
            "step.confirmation",
            {
                "step": "restart",
                "prompt": "Restart api?",
                "answer": "yes",
                "accepted": True,
                "operator": "bob",
            },
        )
        w.append(
            "step.result", {"step": "restart", "attempt": 1, "ok": False, "error": "\x1b[31mboom"}
        )
        w.append(
            "step.finished",
            {"step": "restart", "status": "passed", "kind": "action", "elapsed": 0.5},
        )
        w.append("incident.mark", {"mark": "mitigated", "step": "restart"})
        w.append("step.skipped", {"step": "notify", "reason": "when is false"})
        w.append("step.output", {"step": "page", "text": "🚨 api is down\nsecond\nthird"})
        w.append("mystery.event", {})
        w.append("run.finished", {"status": "failed", "exit_code": 1, "elapsed": 75.0})
    return read_log(w.path)


def test_timeline_tells_the_story(tmp_path: Path) -> None:
    text = format_timeline(story(tmp_path))
    assert "runbook:  service-outage — Service outage (P0)" in text
    assert "operator: alice on ops-1" in text and "dry-run:  no" in text
    assert "── detect ──" in text and "── mitigate ──" in text
    assert "[detect] health  check failed (1.2s)" in text
    assert "expectation failed `json.ok`: assert False\\n(json.ok)" in text
    assert "status == 200" not in text  # passing expectations are noise
    assert "[detect] health  failed, retrying in 2.0s (attempt 2 of 3)" in text
    assert text.count("GET /health") == 1  # a first attempt is implied by "started"
    assert "[detect] health  attempt 2: GET /health" in text
    assert "page  output: 🚨 api is down (+2 more lines)" in text
    assert "[mitigate] restart  confirmation accepted by bob answered 'yes': Restart api?" in text
    assert "[mitigate] restart  action passed (500ms)" in text
    assert "[detect] collect  check passed in run r8: restored, not run again" in text
    assert "incident mitigated (step restart)" in text
    assert "error: \\x1b[31mboom" in text and "\x1b" not in text
    assert "notify  skipped: when is false" in text and "mystery.event" in text
    assert text.rstrip().endswith("run finished: failed (exit 1, 1m15s)")
    assert all(line[:12].count(":") == 2 for line in text.splitlines()[6:] if "seq" in line)


def test_timeline_colours_only_when_asked(tmp_path: Path) -> None:
    records = story(tmp_path)
    assert "\x1b[" not in format_timeline(records)
    assert "\x1b[31mfailed\x1b[0m" in format_timeline(records, color=True)


def test_timeline_tolerates_missing_keys() -> None:
    records: list[dict[str, object]] = [{"type": "header"}, {"type": "step.finished"}, {"seq": 3}]
    text = format_timeline(records)
    assert "runbook:  ?" in text and "step finished" in text
    assert format_timeline([]) == "\n"
