"""The hash-chained incident log: one JSON Lines file per run, written, read, verified.

A post-mortem trusts the log only if it can tell a log that stopped (a crash, a
run still going) from one that was edited. So every line is the canonical JSON
of its record body (`data`, `prev`, `seq`, `ts`, `type`; sorted keys, no spaces,
`ensure_ascii=True`) with `,"sha256":"<hex>"` spliced in before the closing
brace, where the hash covers exactly the body's bytes and `prev` is the previous
record's hash. Verify therefore hashes the bytes on disk as they are, never a
re-serialisation, which is what makes it fast (DESIGN: >= 500k records/s).

`ensure_ascii=True` is deliberate: lines are pure ASCII, so any string can be
written (even lone surrogates from undecodable command output), byte and
character offsets agree, and no tool's text encoding can alter the bytes that
were hashed. Readers decode `\\uXXXX` escapes as usual.

Records become durable in groups (group commit): `defer` queues a record and
`commit` writes everything queued with one write and one fsync, which makes it
a durable point; `append` and `append_many` are a defer and a commit in one
call. The caller puts a commit wherever something leaves the process -- a
command, an action, a question to the operator, a notification, the exit -- so
a crash loses only records nothing outside had seen yet, and they are the tail
of the file: `log verify` calls the log truncated, never tampered. With a
`Signer`, the last record of every commit also carries `auth`, a signature over
the chain up to it (`runbook.log.signing`), so every durable point is signed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO

from runbook.errors import JournalCorrupt, LogDirError
from runbook.log.records import AUTH_KEY, FINAL_TYPES, GENESIS, RecordType
from runbook.log.verify import LineChunks, Verification, canonical_json, verify_log
from runbook.log.view import LogSummary, list_logs
from runbook.run.secrets import Masker

if TYPE_CHECKING:
    from runbook.log.signing import Signer

__all__ = [
    "FINAL_TYPES",
    "FORMAT_VERSION",
    "GENESIS",
    "MAX_STRING_BYTES",
    "STRUCTURAL_FIELDS",
    "JournalWriter",
    "LogSummary",
    "Verification",
    "canonical_json",
    "list_logs",
    "read_log",
    "verify_log",
]

FORMAT_VERSION = 1
MAX_STRING_BYTES = 64 * 1024

_TYPE = re.compile(r"[a-z0-9_.-]+\Z")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _cap(text: str) -> str:
    """Cut a string over MAX_STRING_BYTES (UTF-8) at a character boundary, noting the size.

    The note fits inside the limit, so a capped string is never cut again (the
    console's excerpt of a capped output is logged with the same note).
    """
    if len(text) * 4 <= MAX_STRING_BYTES:  # cannot be over: skip the encode
        return text
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= MAX_STRING_BYTES:
        return text
    note = f"…[truncated, {len(raw)} bytes total]"
    cut = MAX_STRING_BYTES - len(note.encode())
    while raw[cut] & 0xC0 == 0x80:  # never split a multi-byte character
        cut -= 1
    return raw[:cut].decode("utf-8", "surrogatepass") + note


STRUCTURAL_FIELDS = frozenset(
    {
        "run_id",
        "started",
        "format",
        "severity",
        "runbook.name",
        "runbook.sha256",
        "versions",
        "resumed_from",
        "step",
        "phase",
        "kind",
        "executor",
        "status",
        "verifies",
        "verify",
        "from_run",
        "method",
        "mark",
    }
)
"""Fields of a record's `data` (dotted paths) that are never masked, nor anything under them.

The engine writes them itself: ids, hashes, enum values and timestamps that readers
find runs and steps by (`--resume`, reports, `log show`), so no secret can be in them
and a masked one would break every reader. Keys are never masked either; only values
that can carry rendered or captured text are.
"""


def _clean(value: Any, masker: Masker | None, path: str = "") -> Any:
    """A JSON-safe copy of `value` with every string value masked and capped.

    Masking comes before the cap so a cut can never leave half a secret. Keys
    and STRUCTURAL_FIELDS are not masked (`masker` is None below one). Values
    JSON cannot hold (NaN, bytes, arbitrary objects) become strings rather than
    failing the run in the middle of an incident.
    """
    if isinstance(value, str):
        return _cap(masker.mask(value) if masker is not None else value)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, Mapping):
        cleaned = {}
        for key, item in value.items():
            name = f"{path}.{key}" if path else str(key)
            inner = None if masker is None or name in STRUCTURAL_FIELDS else masker
            cleaned[_cap(str(key))] = _clean(item, inner, name)
        return cleaned
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(item, masker, path) for item in value]
    if isinstance(value, bytes | bytearray):
        return _clean(bytes(value).decode("utf-8", "replace"), masker, path)
    return _clean(str(value), masker, path)


def _seal(record: dict[str, Any]) -> tuple[str, str]:
    """(line, sha256) for a record body: the hash spliced in before the last brace."""
    body = canonical_json(record)
    digest = hashlib.sha256(body.encode("ascii")).hexdigest()
    return f'{body[:-1]},"sha256":"{digest}"}}\n', digest


def _oserror_reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


DEFAULT_LOG_MODE = 0o600
"""Incident logs hold commands, outputs and operators' names: owner only by default."""


def log_mode(environ: Mapping[str, str] | None = None) -> int:
    """The mode new logs are created with: `$RUNBOOK_LOG_MODE` (octal, e.g. 0640) or 0600.

    The umask still applies on top. A directory the writer creates gets the same
    bits plus search (x) wherever read is given: 0600 -> 0700, 0640 -> 0750.
    Raises LogDirError for a value that is not octal or leaves the owner unable to
    read and write.
    """
    text = (os.environ if environ is None else environ).get("RUNBOOK_LOG_MODE", "").strip()
    if not text:
        return DEFAULT_LOG_MODE
    try:
        mode = int(text, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777 or mode & 0o600 != 0o600:
        raise LogDirError(
            f"RUNBOOK_LOG_MODE={text!r}: give an octal file mode the owner can read and "
            "write, e.g. 0600 or 0640"
        )
    return mode


def _dir_mode(file_mode: int) -> int:
    return file_mode | (file_mode & 0o444) >> 2


Event = tuple[RecordType, Mapping[str, Any]]
"""A record to write: its type and its `data` (cleaned and masked on the way in)."""


class JournalWriter:
    """Appends records to one run's log; a record is durable once a commit has written it.

    Made by `create`. `append`/`append_many` return once their records (and any
    deferred before them) are fsynced; `defer` queues a record for the next
    commit. Thread-safe: many hosts' results go through one writer, whose lock
    keeps `seq` and the chain in the order records were deferred or appended.
    After a failed write (disk full) it refuses further records, since the file
    may now end in a partial line that only a crash should leave.
    """

    def __init__(
        self,
        path: Path,
        file: BinaryIO,
        masker: Masker,
        run_id: str,
        signer: Signer | None = None,
    ) -> None:
        self._path = path
        self._file = file
        self._masker = masker
        self._signer = signer
        self._run_id = run_id
        self._header: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._seq = -1
        self._last_hash = GENESIS
        self._failure: str | None = None
        self._pending: list[tuple[str, Any, str]] = []  # (type, cleaned data, ts), not written

    @classmethod
    def create(
        cls,
        log_dir: Path,
        runbook: str,
        run_id: str,
        header: Mapping[str, Any],
        masker: Masker,
        mode: int | None = None,
        signer: Signer | None = None,
    ) -> JournalWriter:
        """Create `<log_dir>/<UTC stamp>-<runbook>-<run_id>.jsonl` and write the header.

        The file gets `mode` (default `log_mode()`: 0600), a directory made here
        the matching directory mode (0700); an existing directory keeps its own.
        Raises LogDirError (one printable line) if the directory cannot be made
        or written, or the header cannot be written (a full disk): then no file
        is left behind, since no run started. An existing file is never overwritten.
        With `signer`, the header names its key (`signing`), and the header and the last
        record of every commit are signed.
        """
        mode = log_mode() if mode is None else mode
        log_dir = Path(log_dir)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        name = f"{stamp}-{_UNSAFE_NAME.sub('_', runbook)}-{_UNSAFE_NAME.sub('_', run_id)}.jsonl"
        path = log_dir / name
        try:
            if log_dir.exists() and not log_dir.is_dir():
                raise NotADirectoryError(20, "Not a directory")
            log_dir.mkdir(mode=_dir_mode(mode), parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
            file = os.fdopen(os.open(path, flags, mode), "wb")
        except OSError as exc:
            raise LogDirError(
                f"cannot write incident logs to {log_dir}: {_oserror_reason(exc)}"
            ) from exc
        _fsync_dir(log_dir)
        writer = cls(path, file, masker, run_id, signer)
        try:
            signing = {"signing": signer.info()} if signer is not None else {}
            [writer._header] = writer._queue(
                [(RecordType.HEADER, {**header, **signing, "format": FORMAT_VERSION})],
                commit=True,
                own=True,
                header=True,
            )
        except BaseException as exc:
            writer.close()
            path.unlink(missing_ok=True)
            if isinstance(exc, LogDirError) and isinstance(exc.__cause__, OSError):
                reason = _oserror_reason(exc.__cause__)
                raise LogDirError(f"cannot write incident logs to {log_dir}: {reason}") from exc
            raise
        return writer

    @property
    def path(self) -> Path:
        return self._path

    @property
    def run_id(self) -> str:
        return self._run_id

    @property
    def masker(self) -> Masker:
        """The masker every record goes through; secrets added to it apply from then on."""
        return self._masker

    def as_logged(self, text: str) -> str:
        """`text` as a record holds it: masked, then capped (and the cut noted) like any value."""
        return _cap(self._masker.mask(text))

    @property
    def header_record(self) -> dict[str, Any]:
        """The header as written (seq 0), e.g. for a console that echoes records."""
        return self._header

    @property
    def started(self) -> str:
        """When the run started (UTC ISO-8601): the header's `started`, else its ts."""
        return str(self._header["data"].get("started") or self._header["ts"])

    @property
    def last_hash(self) -> str:
        """sha256 of the last record written: what a resumed run links to.

        Deferred records are not written yet: a head read after a commit is durable.
        """
        return self._last_hash

    @property
    def seq(self) -> int:
        """seq of the last record written (0 right after the header); deferred ones not counted."""
        return self._seq

    @property
    def pending(self) -> int:
        """How many deferred records the next commit will write."""
        return len(self._pending)

    def append(self, type: RecordType, data: Mapping[str, Any]) -> dict[str, Any]:
        """Write one record and fsync; returns it as written (masked, with seq/ts/sha256).

        A commit: records deferred before it are written with it, in the same write.
        """
        return self._queue([(type, data)], commit=True, own=True)[0]

    def append_many(self, events: Iterable[Event]) -> list[dict[str, Any]]:
        """Write several records with one write and one fsync (they arrived together).

        A commit: records deferred before them are written first, in the same write.
        Returns the records of `events` as written.
        """
        return self._queue(events, commit=True, own=True)

    def defer(self, type: RecordType, data: Mapping[str, Any]) -> None:
        """Queue a record for the next commit; nothing reaches the file before it.

        Its `ts` is now, and its data is masked now. A crash before the next
        commit loses it, so defer only what nothing outside the process has
        seen or acted on: the caller commits before a command runs, a question
        is asked, a notification leaves or the record is shown.
        """
        self._queue([(type, data)], commit=False)

    def commit(self, events: Iterable[Event] = ()) -> list[dict[str, Any]]:
        """A durable point: write every deferred record, then `events`, with one write and
        one fsync.

        Returns all of them as written, in order (empty when there was nothing to
        write); in a signed log the last one carries `auth`. Raises LogDirError
        when the log cannot be written, and refuses every record after that.
        """
        return self._queue(events, commit=True)

    def _queue(
        self, events: Iterable[Event], *, commit: bool, own: bool = False, header: bool = False
    ) -> list[dict[str, Any]]:
        """Defer `events` (checked and cleaned first), then commit if asked.

        Returns what the commit wrote, or with `own` only the records of `events`.
        """
        cleaned = []
        for kind, data in events:
            if not _TYPE.match(kind):
                raise ValueError(f"invalid event type {kind!r}: use [a-z0-9_.-]+")
            if (kind == RecordType.HEADER) != header:
                raise ValueError("the header is written once, by JournalWriter.create")
            cleaned.append((kind, _clean(data, self._masker)))
        with self._lock:
            if self._failure is not None:
                raise LogDirError(self._failure)
            first = len(self._pending)
            # ts when the event happened, which is also the order records are written in
            self._pending.extend((kind, data, _utc_now()) for kind, data in cleaned)
            if not commit:
                return []
            written = self._commit()
            return written[first:] if own else written

    def _commit(self) -> list[dict[str, Any]]:
        """Write and fsync what is deferred; the caller holds the lock."""
        if self._failure is not None:
            raise LogDirError(self._failure)
        if not self._pending:
            return []
        records, lines = self._chain(self._pending)
        self._write("".join(lines).encode("ascii"), records)
        return records

    def _chain(self, events: list[tuple[str, Any, str]]) -> tuple[list[dict[str, Any]], list[str]]:
        records: list[dict[str, Any]] = []
        lines: list[str] = []
        prev, seq = self._last_hash, self._seq
        for kind, data, ts in events:
            seq += 1
            record = {"data": data, "prev": prev, "seq": seq, "ts": ts, "type": kind}
            if self._signer is not None and len(records) == len(events) - 1:
                # the last record of a commit: its signature vouches for the chain so far
                record[AUTH_KEY] = self._signer.auth(canonical_json(record))
            line, prev = _seal(record)
            record["sha256"] = prev
            records.append(record)
            lines.append(line)
        return records, lines

    def _write(self, payload: bytes, records: list[dict[str, Any]]) -> None:
        """Write and fsync `payload`, the lines of `records`; the chain then ends at the last."""
        if self._file.closed:
            raise ValueError(f"incident log {self._path} is closed")
        end = self._file.tell() + len(payload)
        try:
            self._file.write(payload)
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            self._failure = (
                f"cannot write incident log {self._path}: {_oserror_reason(exc)}; "
                f"it ends at seq {self._seq} and the run stops here"
            )
            raise LogDirError(self._failure) from exc
        finally:
            # Bytes in the file are in the chain even when SIGINT lands during the flush
            # or fsync: run.interrupted must follow them, not reuse their seq (tampered).
            # Records that never reached it stay deferred, for the next commit.
            if not self._file.closed and self._file.tell() == end:
                self._seq, self._last_hash = records[-1]["seq"], records[-1]["sha256"]
                del self._pending[: len(records)]

    def close(self) -> None:
        """Close the file; safe to call twice, never raises. Does not write run.finished.

        Records still deferred are committed first while the log can take them
        (they happened; a run that ends without its final record is truncated
        either way). After a failed write the buffer may still hold bytes the
        disk will not take; closing drops them (the chain already ends before
        them) rather than raise a second error over the first.
        """
        with self._lock:
            if self._pending and self._failure is None and not self._file.closed:
                with contextlib.suppress(LogDirError, ValueError):
                    self._commit()
            try:
                self._file.close()
            except OSError as exc:
                if self._failure is None:
                    self._failure = (
                        f"cannot write incident log {self._path}: {_oserror_reason(exc)}"
                    )

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _fsync_dir(directory: Path) -> None:
    """Make the new file's directory entry durable too (best effort)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_log(path: Path | str) -> list[dict[str, Any]]:
    """Parse every record (dicts with seq, prev, ts, type, data, sha256); no verification.

    An unparsable last line is skipped (a crash mid-write, or the writer is
    still going); an unparsable line elsewhere raises JournalCorrupt.
    """
    with open(path, "rb") as file:
        lines = [line for chunk in LineChunks(file) for line in chunk]  # drops a partial tail
    while lines and not lines[-1].strip(b"\0"):  # zero bytes left by a crash
        lines.pop()
    records: list[dict[str, Any]] = []
    for index, line in enumerate(lines):
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep to parse
            if index == len(lines) - 1:
                break
            raise JournalCorrupt(f"{path}: line {index + 1} is not JSON: {exc}", seq=index) from exc
        if not isinstance(record, dict):
            raise JournalCorrupt(f"{path}: line {index + 1} is not a record", seq=index)
        records.append(record)
    return records
