"""Re-verify the hash chain from parsed records, so a report vouches for itself.

A report format receives records, not a file (the `runbook_report_formats`
contract), yet a post-mortem must say whether the log it was built from is
intact. Re-serialising each record canonically reproduces the exact bytes the
writer hashed (the writer's output *is* canonical JSON, and JSON round-trips
losslessly in Python), so the same verdict as `runbook log verify` follows
from the records alone. It is slower than verifying bytes on disk, which is
why `log verify` does not work this way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runbook.log.journal import FINAL_TYPES, GENESIS, canonical_json


@dataclass(frozen=True)
class ChainCheck:
    """The `log verify` verdict as a report states it.

    `records` counts records that verified before any problem; `first_bad_seq`
    names where it broke; `final_hash` is the last good record's sha256.
    """

    ok: bool
    truncated: bool
    tampered: bool
    reason: str
    first_bad_seq: int | None
    records: int
    final_hash: str


def _problem(index: int, record: Mapping[str, Any], prev: str) -> str | None:
    body = {key: value for key, value in record.items() if key != "sha256"}
    try:
        digest = hashlib.sha256(canonical_json(body).encode("ascii")).hexdigest()
    except (TypeError, ValueError):
        return f"seq {index}: malformed record"
    if record.get("sha256") != digest:
        return f"seq {index}: hash mismatch: the record was changed after it was written"
    if record.get("seq") != index:
        return f"seq {index}: found seq {record.get('seq')} in its place (missing or reordered)"
    if record.get("prev") != prev:
        return f"seq {index}: broken chain: prev is not the sha256 of the record before"
    if index == 0 and record.get("type") != "header":
        return f"seq 0: the first record is {record.get('type')!r}, not the header"
    return None


class VerifiedRecords(list[dict[str, Any]]):
    """Records read from a file that `log verify` just passed, with that verdict attached.

    `runbook report` verifies the bytes on disk first (fast); handing formats this list
    spares them re-serialising every record to check the chain again, which is most
    of a report's time on a long log. A plain list is always re-checked.
    """

    def __init__(self, records: list[dict[str, Any]], verdict: ChainCheck) -> None:
        super().__init__(records)
        self.verdict = verdict


def check_chain(records: Sequence[Mapping[str, Any]]) -> ChainCheck:
    """Verify `records` in order: tampered at the first bad one, truncated if unfinished."""
    if isinstance(records, VerifiedRecords):
        return records.verdict
    if not records:
        return ChainCheck(False, True, False, "empty log", 0, 0, "")
    prev = GENESIS
    for index, record in enumerate(records):
        problem = _problem(index, record, prev)
        if problem is not None:
            return ChainCheck(False, False, True, problem, index, index, _last(index, prev))
        prev = str(record["sha256"])
    if records[-1].get("type") not in FINAL_TYPES:
        reason = (
            "no run.finished record; the run crashed or is still running; "
            f"last good seq {len(records) - 1}"
        )
        return ChainCheck(False, True, False, reason, None, len(records), prev)
    return ChainCheck(True, False, False, "ok", None, len(records), prev)


def _last(index: int, prev: str) -> str:
    return prev if index else ""
