"""Verifying a log's hash chain over the exact bytes on disk, fast, naming the first bad seq.

`verify_log` is the hot path (DESIGN: >= 500k records/s) and the part a
post-mortem relies on to tell a log that stopped from one that was edited; see
`runbook.log.journal` for the line format it checks. It is separate from the writer
and reader because it never parses JSON or touches a Masker: it works on the
raw lines. The chain's start (`GENESIS`), the record types that close a run
(`FINAL_TYPES`) and the chunked line reader live here too, so `runbook.log.journal`
imports them from this module (not the other way round) and re-exports the
public names.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from runbook.errors import JournalCorrupt

GENESIS = "0" * 64
FINAL_TYPES = ("run.finished", "run.interrupted")

_SUFFIX_LEN = len(',"sha256":"') + 64 + len('"}')  # 77
_SUFFIX = re.compile(rb',"sha256":"[0-9a-f]{64}"\}\Z')
_TAIL = re.compile(
    rb',"prev":"([0-9a-f]{64})","seq":(\d+),"ts":"([^"]*)","type":"([a-z0-9_.-]+)"\Z'
)
_TYPE_BYTES = re.compile(rb"[a-z0-9_.-]+\Z")
_CHUNK_BYTES = 8 << 20


class _Lines:
    """Complete lines of a file in big chunks; `partial` is the unterminated tail."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self.partial = b""

    def __iter__(self) -> Iterator[list[bytes]]:
        rest = b""
        while chunk := self._file.read(_CHUNK_BYTES):
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            if lines:
                yield lines
        self.partial = rest


@dataclass(frozen=True)
class Verification:
    """What `verify_log` found.

    `records` counts the records that verified, in order, before any problem;
    `first_bad_seq` is the position (the seq it should have) of the first bad
    or incomplete record, None when every line verified. `tampered` means a
    complete line does not verify; `truncated` means the log just stops (a
    partial last line, zero bytes left by a crash, or no run.finished /
    run.interrupted record). `final_hash` is the sha256 of the last good
    record ("" if none), which a resumed run links to.
    """

    ok: bool
    records: int
    first_bad_seq: int | None
    truncated: bool
    tampered: bool
    reason: str
    final_hash: str
    complete: bool

    def raise_if_bad(self, path: Path | str = "") -> None:
        """Raise JournalCorrupt (exit 5) naming the first bad seq unless ok."""
        if not self.ok:
            where = f"{path}: " if path else ""
            raise JournalCorrupt(where + self.reason, self.first_bad_seq, self.truncated)


class _Chain:
    """The running state of a verification: next seq, previous hash, last type."""

    def __init__(self) -> None:
        self.seq = 0
        self.prev = GENESIS.encode()
        self.last_type = b""
        self._types: set[bytes] = set()

    def feed(self, lines: list[bytes]) -> int | None:
        """Verify `lines` in order; the index of the first bad one, or None."""
        if self.seq == 0 and lines:
            fields = _fields(lines[0])
            if fields is None or fields[4] != b"header":
                return 0
        return self._fast(lines)

    def _fast(self, lines: list[bytes]) -> int | None:
        # The hot loop (DESIGN: >= 500k records/s): C-level slices, one hash and
        # a few find/compare calls per line. Instead of parsing the tail, build
        # the exact bytes it must hold (prev and seq are known) and look for them.
        sha256, prev, seq, last = hashlib.sha256, self.prev, self.seq, self.last_type
        types = self._types
        for line in lines:
            n = len(line) - _SUFFIX_LEN
            if n <= 0 or line[n : n + 11] != b',"sha256":"' or line[-2:] != b'"}':
                break
            stored = line[n + 11 : -2]
            if sha256(line[:n] + b"}").hexdigest().encode() != stored:
                break
            head = b',"prev":"%s","seq":%d,"ts":"' % (prev, seq)
            at = line.rfind(head, 0, n)
            if at < 0:
                break
            ts_start = at + len(head)
            sep = line.find(b'","type":"', ts_start, n)
            if sep < 0 or line[n - 1] != 0x22 or line.find(b'"', ts_start, sep) >= 0:
                break
            kind = line[sep + 10 : n - 1]
            if kind not in types:  # a log has a dozen types: check each once
                if not _TYPE_BYTES.match(kind):
                    break
                types.add(kind)
            prev, seq, last = stored, seq + 1, kind
        else:
            self.prev, self.seq, self.last_type = prev, seq, last
            return None
        bad = seq - self.seq
        self.prev, self.seq, self.last_type = prev, seq, last
        return bad

    def diagnose(self, line: bytes) -> tuple[str, int | None]:
        """Why `line` does not verify, and the seq it claims when it has a valid hash."""
        at, n = f"seq {self.seq}", len(line) - _SUFFIX_LEN
        if n <= 0 or not _SUFFIX.match(line, n):
            return f"{at}: malformed record (no sha256 at the end of the line)", None
        if hashlib.sha256(line[:n] + b"}").hexdigest().encode() != line[n + 11 : -2]:
            return f"{at}: hash mismatch: the record was changed after it was written", None
        fields = _fields(line)
        if fields is None:
            return f"{at}: malformed record (prev/seq/ts/type fields)", None
        found = int(fields[2])
        if found != self.seq:
            return f"{at}: found seq {found}", found  # _failure words it once it looked ahead
        if fields[1] != self.prev:
            return f"{at}: broken chain: prev is not the sha256 of the record before", None
        if self.seq == 0 and fields[4] != b"header":
            return f"{at}: the first record is {fields[4].decode()!r}, not the header", None
        return f"{at}: malformed record (non-canonical seq)", None


def _fields(line: bytes) -> re.Match[bytes] | None:
    """The prev/seq/ts/type tail of a line's body (slow path: diagnosis only)."""
    n = len(line) - _SUFFIX_LEN
    if n <= 0:
        return None
    return _TAIL.match(line, max(line.rfind(b',"prev":"', 0, n), 0), n)


def _seq_of(line: bytes) -> int | None:
    fields = _fields(line)
    return int(fields[2]) if fields else None


def _rest_of(lines: list[bytes], chunks: Iterator[list[bytes]], reader: _Lines) -> Iterator[bytes]:
    yield from lines
    for chunk in chunks:
        yield from chunk
    if reader.partial:
        yield reader.partial


def _verdict(
    chain: _Chain,
    reason: str,
    *,
    bad: int | None = None,
    truncated: bool = False,
    tampered: bool = False,
) -> Verification:
    """A Verification of the records `chain` accepted, with what stopped it (if anything)."""
    return Verification(
        ok=not (truncated or tampered),
        records=chain.seq,
        first_bad_seq=bad,
        truncated=truncated,
        tampered=tampered,
        reason=reason,
        final_hash=chain.prev.decode() if chain.seq else "",
        complete=chain.last_type.decode() in FINAL_TYPES,
    )


def _last_good(chain: _Chain) -> str:
    return f"last good seq {chain.seq - 1}" if chain.seq else "no good record"


def _seq_reason(chain: _Chain, found: int, appears_later: bool) -> str:
    if found < chain.seq or appears_later:
        return f"seq {chain.seq}: records reordered: found seq {found} in its place"
    return f"seq {chain.seq}: seq gap: found seq {found}, {found - chain.seq} record(s) missing"


def _failure(chain: _Chain, rest: Iterator[bytes]) -> Verification:
    """The verdict for the first line that failed, looking ahead only as far as needed.

    Ahead means: is everything from here zero bytes (a crash: truncated), and
    does the seq we expected turn up later (reordered, not missing)?
    """
    bad = next(rest)
    reason, found = chain.diagnose(bad)
    residue = b"\0" in bad and not bad.strip(b"\0")
    appears_later = False
    for line in rest:
        residue = residue and not line.strip(b"\0")
        appears_later = appears_later or (found is not None and _seq_of(line) == chain.seq)
        if not residue and (found is None or appears_later):
            break
    if residue:
        reason = f"zero bytes after the last record (a crash mid-write); {_last_good(chain)}"
        return _verdict(chain, reason, bad=chain.seq, truncated=True)
    if found is not None:
        reason = _seq_reason(chain, found, appears_later)
    return _verdict(chain, reason, bad=chain.seq, tampered=True)


def _ending(chain: _Chain, partial: bytes) -> Verification:
    """The verdict when every complete line verified: complete, or where it stops."""
    if not chain.seq and not partial:
        return _verdict(chain, "empty log", truncated=True)
    if partial:
        reason = f"the last line is incomplete (cut mid-write); {_last_good(chain)}"
        return _verdict(chain, reason, bad=chain.seq, truncated=True)
    if chain.last_type.decode() not in FINAL_TYPES:
        reason = f"no run.finished record; the run crashed or is still running; {_last_good(chain)}"
        return _verdict(chain, reason, truncated=True)
    return _verdict(chain, "ok")


def verify_log(path: Path | str) -> Verification:
    """Recompute the chain over the exact bytes on disk; name the first bad seq.

    Any change to a complete line (one byte, a dropped or moved record) makes
    it tampered. A log that merely stops is truncated: an unterminated last
    line, zero bytes after the last record, or no closing run record. Dropping
    the final records is indistinguishable from a crash (truncated): keep the
    final_hash somewhere else when that matters.
    """
    chain = _Chain()
    with open(path, "rb") as file:  # OSError (missing, unreadable) is the caller's to report
        reader = _Lines(file)
        chunks = iter(reader)
        for lines in chunks:
            bad = chain.feed(lines)
            if bad is not None:
                return _failure(chain, _rest_of(lines[bad:], chunks, reader))
    return _ending(chain, reader.partial)
