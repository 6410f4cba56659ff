"""The one chain verifier: over the exact bytes on disk (fast), or over parsed records.

`verify_log` is the hot path (DESIGN: >= 500k records/s) and the part a
post-mortem relies on to tell a log that stopped from one that was edited; see
`runbook.log.journal` for the line format it checks. It never parses JSON or
touches a Masker: it works on the raw lines. `verify_records` gives the same
verdict for records already parsed (a report format receives records, not a
file): it rebuilds each record's line with `canonical_json`, the serialisation
the writer hashed, and feeds those lines through the same checks. Every reader
(`runbook log verify`, `runbook report`, `--resume`, scenario tests) verifies
here; nothing else checks hashes, `seq` or `prev`. `check_log` is the whole
verdict of `runbook log verify`: the chain, then signatures (`runbook.log.signing`)
and the anchor (`--expect`) over the records the chain verified, each reported
on its own.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from runbook.errors import JournalCorrupt
from runbook.log.records import FINAL_TYPES, GENESIS, RecordType

if TYPE_CHECKING:
    from runbook.log.signing import SignatureCheck, TrustedKey

_SUFFIX_LEN = len(',"sha256":"') + 64 + len('"}')  # 77
_SUFFIX = re.compile(rb',"sha256":"[0-9a-f]{64}"\}\Z')
_TAIL = re.compile(
    rb',"prev":"([0-9a-f]{64})","seq":(\d+),"ts":"([^"]*)","type":"([a-z0-9_.-]+)"\Z'
)
_TYPE_BYTES = re.compile(rb"[a-z0-9_.-]+\Z")
_HEADER = RecordType.HEADER.encode()
_CHUNK_BYTES = 8 << 20


def canonical_json(obj: Any) -> str:
    """The one serialisation whose bytes are hashed (see `runbook.log.journal`)."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


class LineChunks:
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
    """What `verify_log` (or `verify_records`) found.

    `records` counts the records that verified, in order, before any problem;
    `first_bad_seq` is the position (the seq it should have) of the first bad
    or incomplete record, None when every line verified. `tampered` means a
    complete line does not verify; `truncated` means the log just stops (a
    partial last line, zero bytes left by a crash, or no run.finished /
    run.interrupted record). `final_hash` is the sha256 of the last good
    record ("" if none), which a resumed run links to. `complete` says the last
    good record closes the run (one of `FINAL_TYPES`).
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
            if fields is None or fields[4] != _HEADER:
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
        if self.seq == 0 and fields[4] != _HEADER:
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


def _rest_of(
    lines: list[bytes], chunks: Iterator[list[bytes]], tail: Callable[[], bytes]
) -> Iterator[bytes]:
    yield from lines
    for chunk in chunks:
        yield from chunk
    partial = tail()
    if partial:
        yield partial


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
        reason = (
            f"no {RecordType.RUN_FINISHED} record; the run crashed or is still running; "
            f"{_last_good(chain)}"
        )
        return _verdict(chain, reason, truncated=True)
    return _verdict(chain, "ok")


def _verify(chunks: Iterator[list[bytes]], tail: Callable[[], bytes]) -> Verification:
    """The verdict on `chunks` of complete lines; `tail()` is the partial line after them."""
    chain = _Chain()
    for lines in chunks:
        bad = chain.feed(lines)
        if bad is not None:
            return _failure(chain, _rest_of(lines[bad:], chunks, tail))
    return _ending(chain, tail())


def verify_log(path: Path | str) -> Verification:
    """Recompute the chain over the exact bytes on disk; name the first bad seq.

    Any change to a complete line (one byte, a dropped or moved record) makes
    it tampered. A log that merely stops is truncated: an unterminated last
    line, zero bytes after the last record, or no closing run record. Dropping
    the final records is indistinguishable from a crash (truncated): keep the
    final_hash somewhere else when that matters.
    """
    with open(path, "rb") as file:  # OSError (missing, unreadable) is the caller's to report
        reader = LineChunks(file)
        return _verify(iter(reader), lambda: reader.partial)


class VerifyingReader:
    """A log's lines in chunks, each chunk verified before it is handed out.

    For a reader that needs the records (a report): the file is read and hashed
    once, and no line is used before the chain vouches for it. Iterate it once;
    `verdict` is then what `verify_log` says of the same file. Lines from the
    first bad one on are not handed out.
    """

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self.verdict = _verdict(_Chain(), "not read yet", truncated=True)

    def __iter__(self) -> Iterator[list[bytes]]:
        reader = LineChunks(self._file)
        chunks = iter(reader)
        chain = _Chain()
        for lines in chunks:
            bad = chain.feed(lines)
            if bad is None:
                yield lines
                continue
            if bad:
                yield lines[:bad]
            self.verdict = _failure(chain, _rest_of(lines[bad:], chunks, lambda: reader.partial))
            return
        self.verdict = _ending(chain, reader.partial)


class VerifiedRecords(list[dict[str, Any]]):
    """Records read from a file that `verify_log` just passed, with that verdict attached.

    `runbook report` verifies the bytes on disk first (fast); handing formats this list
    spares `verify_records` rebuilding every line to check the chain again, which is
    most of a report's time on a long log. A plain list is always re-checked.
    """

    def __init__(self, records: Iterable[dict[str, Any]], verdict: Verification) -> None:
        super().__init__(records)
        self.verdict = verdict


def _line_of(record: Mapping[str, Any]) -> bytes:
    """The line the writer wrote for `record`: its canonical body with the sha256 spliced in.

    JSON round-trips losslessly in Python and the writer's body is canonical, so
    this is byte for byte what was hashed, unless the record was changed.
    """
    body = {key: value for key, value in record.items() if key != "sha256"}
    try:
        text = canonical_json(body)
    except (TypeError, ValueError):
        return b""  # not JSON the writer could have written: diagnosed as malformed
    line = f'{text[:-1]},"sha256":"{record.get("sha256")}"}}'
    return line.encode("ascii", "backslashreplace")


def verify_records(records: Sequence[Mapping[str, Any]]) -> Verification:
    """The verdict `verify_log` gives the file these records were read from, in order.

    Formatting is lost in parsing, so a record whose bytes were re-spaced but whose
    values are unchanged still verifies here; everything else reads the same.
    """
    if isinstance(records, VerifiedRecords):
        return records.verdict
    return _verify(iter([[_line_of(record) for record in records]]), lambda: b"")


# -- the whole verdict of `runbook log verify`: chain, truncation, signature, anchor -------

_HEX64 = re.compile(r"[0-9a-f]{64}\Z")


@dataclass(frozen=True)
class Anchor:
    """`--expect`: the final hash the run printed (`HASH`), or a chain head sent out
    mid-run (`SEQ:HASH`, e.g. a notification's log head) that pins seq 0..SEQ."""

    hash: str
    seq: int | None = None

    @classmethod
    def parse(cls, text: str) -> Anchor:
        """Raises ValueError for anything but 64 hex digits, optionally after `SEQ:`."""
        seq_text, _, digest = text.strip().lower().rpartition(":")
        if not _HEX64.match(digest) or (seq_text and not seq_text.isdigit()):
            raise ValueError(
                f"{text!r}: give the 64-hex-digit final hash the run printed, or SEQ:HASH"
            )
        return cls(digest, int(seq_text) if seq_text else None)


@dataclass(frozen=True)
class AnchorCheck:
    """The anchor part of `runbook log verify`: does the log hold the expected hash where
    it should? `state` is `unchecked` (no `--expect`), `ok` or `mismatch`."""

    state: str
    ok: bool
    text: str
    first_bad_seq: int | None = None


def _hash_of(line: bytes) -> str:
    return line[-66:-2].decode("ascii", "replace")


def _check_anchor(anchor: Anchor | None, chain: Verification, lines: list[bytes]) -> AnchorCheck:
    if anchor is None:
        return AnchorCheck(
            "unchecked", True, "not checked (pass --expect HASH: the final hash the run printed)"
        )
    last = chain.records - 1
    if anchor.seq is not None:
        if anchor.seq > last:
            return AnchorCheck(
                "mismatch",
                False,
                f"MISMATCH: the anchor pins seq {anchor.seq} but the log's verified records "
                f"end at seq {last}: records were deleted",
                last + 1,
            )
        found = _hash_of(lines[anchor.seq])
        if found != anchor.hash:
            return AnchorCheck(
                "mismatch",
                False,
                f"MISMATCH: seq {anchor.seq} has sha256 {found}, not {anchor.hash}: "
                f"seq 0-{anchor.seq} were rewritten",
            )
        rest = f"; seq {anchor.seq + 1}-{last} are not covered by it" if anchor.seq < last else ""
        return AnchorCheck("ok", True, f"ok: seq 0-{anchor.seq} match the anchor{rest}")
    if chain.records and chain.final_hash == anchor.hash:
        return AnchorCheck("ok", True, f"ok: the log ends at the expected hash (seq {last})")
    at = next((seq for seq, line in enumerate(lines) if _hash_of(line) == anchor.hash), None)
    if at is not None:
        return AnchorCheck(
            "mismatch",
            False,
            f"MISMATCH: the expected final hash is seq {at}'s, but the log goes on to seq "
            f"{last}: records were added after the run ended",
            at + 1,
        )
    ends = f"ends at seq {last} with sha256 {chain.final_hash}" if chain.records else "is empty"
    return AnchorCheck(
        "mismatch",
        False,
        f"MISMATCH: no record has the expected hash (the log {ends}): "
        "it was rewritten or its newest records were deleted",
    )


@dataclass(frozen=True)
class LogCheck:
    """Everything `runbook log verify` says, each part on its own: chain, truncation,
    signature (`runbook.log.signing.SignatureCheck`), anchor. `ok` only if all hold."""

    chain: Verification
    signature: SignatureCheck
    anchor: AnchorCheck

    @property
    def ok(self) -> bool:
        return self.chain.ok and self.signature.ok and self.anchor.ok

    def _chain_text(self) -> str:
        chain = self.chain
        if chain.tampered:
            return f"TAMPERED: {chain.reason}"
        if not chain.records:
            return "no record verified"
        return (
            f"ok: seq 0-{chain.records - 1} ({chain.records} records): every hash recomputed, "
            "each linked to the one before"
        )

    def _truncation_text(self) -> str:
        chain = self.chain
        if chain.tampered:
            return "not known: the chain breaks first"
        if chain.truncated:
            return f"TRUNCATED: {chain.reason}"
        return "none: the log ends with the run's final record"

    def lines(self) -> list[str]:
        """One labelled line per part, as `runbook log verify` prints them."""
        return [
            f"chain:      {self._chain_text()}",
            f"truncation: {self._truncation_text()}",
            f"signature:  {self.signature.text}",
            f"anchor:     {self.anchor.text}",
        ]

    def summary(self) -> str:
        """The last line when everything holds: how far the log can be trusted."""
        trust = []
        if self.signature.state == "authentic":
            trust.append(f"authentic: signed by {self.signature.fingerprint}")
        if self.anchor.state == "ok":
            trust.append("anchored to the expected hash")
        if not trust:
            signed = self.signature.state == "self-signed"
            trust.append(
                "integrity only: signed, signer not checked (pass --key)"
                if signed
                else "integrity only, unsigned"
            )
        return (
            f"ok ({'; '.join(trust)}): {self.chain.records} records, chain intact, "
            f"final hash {self.chain.final_hash}"
        )

    def failures(self) -> list[tuple[str, str]]:
        """(what failed, why) for each part that failed, naming the first bad seq where known."""
        found = []
        if not self.chain.ok:
            chain = self.chain
            found.append(
                (
                    "truncated" if chain.truncated and not chain.tampered else "TAMPERED",
                    chain.reason,
                )
            )
        if not self.signature.ok:
            found.append(("signature", self.signature.text))
        if not self.anchor.ok:
            found.append(("anchor", self.anchor.text))
        return found


def _verified_lines(path: Path | str, count: int) -> list[bytes]:
    """The first `count` lines of the file: the records the chain verified."""
    lines: list[bytes] = []
    with open(path, "rb") as file:
        for chunk in LineChunks(file):
            lines.extend(chunk[: count - len(lines)])
            if len(lines) >= count:
                break
    return lines


def check_log(
    path: Path | str, key: TrustedKey | None = None, anchor: Anchor | None = None
) -> LogCheck:
    """`runbook log verify LOG [--key PUB] [--expect HASH]`: each part judged on its own.

    The chain is `verify_log`. Signatures and the anchor are checked over the records
    the chain verified; an unsigned log is read no further than its header unless
    an anchor has to be looked for.
    """
    from runbook.log.signing import UNSIGNED_TEXT, SignatureCheck, check_signatures

    chain = verify_log(path)
    header: Mapping[str, Any] = {}
    lines: list[bytes] = []
    if chain.records:
        with open(path, "rb") as file:
            first = json.loads(file.readline())  # verified: the header, a JSON object
        data = first.get("data")
        header = data if isinstance(data, Mapping) else {}
        signed = isinstance(header.get("signing"), Mapping)
        look_for_anchor = anchor is not None and (
            anchor.seq is not None or anchor.hash != chain.final_hash
        )
        if signed or look_for_anchor:
            lines = _verified_lines(path, chain.records)
    if chain.records:
        signature = check_signatures(lines, header, key, chain.complete)
    elif key is not None:
        signature = SignatureCheck("missing", False, "MISSING: no record verified", first_bad_seq=0)
    else:
        signature = SignatureCheck("unsigned", True, UNSIGNED_TEXT)
    return LogCheck(chain, signature, _check_anchor(anchor, chain, lines))
