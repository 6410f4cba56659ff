"""Read an incident log file once into an `IncidentBuilder`, verifying each line first.

`runbook report` on a long log must neither hold every record nor read the file
twice: `VerifyingReader` hands out chunks of lines only after the chain has
vouched for them, each line is parsed only if its type tells part of the story
(`incident.TOLD`; the type is read from the tail the verifier checked), and the
parsed record goes straight into the builder and is dropped. Parsing is most of
the time spent, so the common line skips `json.loads`' per-call wrapper.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json.scanner import make_scanner
from pathlib import Path
from typing import Any

from runbook.log.verify import LineChunks, Verification, VerifyingReader
from runbook.report.incident import DEFAULT_LIMITS, TOLD, IncidentBuilder, Limits

_TOLD_BYTES = frozenset(kind.encode() for kind in TOLD)
_SUFFIX_LEN = len(',"sha256":"') + 64 + len('"}')
# what json.loads scans with; typeshed types make_scanner's argument as the scanner itself
_scan: Callable[[str, int], tuple[Any, int]] = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def _parse(line: bytes) -> Any:
    """`json.loads(line)`, or None for a line that is not JSON (or nested too deep to read).

    Most lines are a JSON object from the first byte to the last, which the
    decoder's scanner reads without the wrapper's per-call work.
    """
    try:
        if line[:1] == b"{" and line[1:2] != b"\0":  # json.loads would decode it as UTF-8
            text = line.decode("utf-8", "surrogatepass")
            value, end = _scan(text, 0)
            if end == len(text):
                return value
        return json.loads(line)
    except (ValueError, RecursionError, StopIteration):
        return None


def _kind(line: bytes) -> bytes:
    """The type of a verified line, read from the tail `verify` checked."""
    end = len(line) - _SUFFIX_LEN - 1
    return line[line.rfind(b'"type":"', 0, end) + 8 : end]


def build_from_log(
    path: Path | str, *, unverified: bool = False, limits: Limits = DEFAULT_LIMITS
) -> tuple[Verification, IncidentBuilder]:
    """Read the log at `path` once into a builder, verifying every line before it is used.

    The verdict is `verify_log`'s. Lines are parsed only where their type tells
    part of the story (`TOLD`); a line that does not parse is left out. The builder
    holds the records that verified; when the log does not verify and `unverified`
    asks for a report anyway, it holds every line that parses, read again from the
    start (the chain check no longer vouches for one record per seq).
    """
    builder = IncidentBuilder(limits)
    feed, skip, told = builder.feed, builder.skip, _TOLD_BYTES
    with open(path, "rb") as file:
        reader = VerifyingReader(file)
        for lines in reader:
            for line in lines:
                if builder.records:
                    kind = _kind(line)
                    if kind not in told:
                        skip(kind.decode("ascii", "replace"))
                        continue
                record = _parse(line)
                if isinstance(record, dict):
                    feed(record)
    verdict = reader.verdict
    if verdict.ok or not unverified:
        return verdict, builder
    builder = IncidentBuilder(limits)
    with open(path, "rb") as file:
        chunks = LineChunks(file)
        for lines in chunks:
            for line in lines:
                record = _parse(line)
                if isinstance(record, dict):
                    builder.feed(record)
        record = _parse(chunks.partial) if chunks.partial else None
        if isinstance(record, dict):
            builder.feed(record)
    return verdict, builder
