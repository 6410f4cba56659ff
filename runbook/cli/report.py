"""`runbook report` and `runbook log list --sla`: the CLI side of reports.

A report is evidence, so it is refused (exit 5) for a log that does not verify
unless the operator asks for it anyway with `--allow-unverified`; the report
then carries a banner saying so. An empty log has nothing to tell and is
refused either way. A format that renders the Incident (every built-in one)
gets it built while the log is read once, each line verified before it is
used, so memory stays bounded however long the log is; a format that takes
the records gets them all, in a list. Output is written as UTF-8 bytes: any
lone surrogate the log kept from undecodable command output becomes U+FFFD
instead of a crash.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runbook.errors import InvalidInput, JournalCorrupt
from runbook.registry import PluginRegistry

if TYPE_CHECKING:
    from runbook.log.verify import Verification


def _tolerant_records(path: Path) -> list[dict[str, Any]]:
    """Every line that parses as a record; unparsable ones are left out, so the
    chain check inside the report (`verify_records`) sees the gap and names where it broke."""
    records: list[dict[str, Any]] = []
    with open(path, "rb") as file:
        for line in file:
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def _refuse_unless_allowed(path: Path, verdict: Verification, allow_unverified: bool) -> None:
    """Raise JournalCorrupt (exit 5) for an empty log, or one that does not verify unless
    that is allowed."""
    if verdict.ok:
        return
    if verdict.records == 0 and verdict.truncated and not verdict.tampered:
        raise JournalCorrupt(f"{path}: empty log: nothing to report", 0, True)
    if not allow_unverified:
        kind = "truncated" if verdict.truncated and not verdict.tampered else "TAMPERED"
        raise JournalCorrupt(
            f"{path}: {kind}: {verdict.reason}; refusing to report from an unverified log "
            "(--allow-unverified reports anyway, with a warning banner)",
            verdict.first_bad_seq,
            verdict.truncated,
        )


def _no_record(path: Path) -> JournalCorrupt:
    return JournalCorrupt(f"{path}: no readable record: nothing to report", 0)


def _from_incident(path: Path, render: Callable[[Any], str], allow_unverified: bool) -> str:
    """Read the log once into the bounded Incident (verifying as it goes), then render it."""
    from runbook.report import sla
    from runbook.report.reader import build_from_log

    verdict, builder = build_from_log(path, unverified=allow_unverified)
    _refuse_unless_allowed(path, verdict, allow_unverified)
    if not builder.records:
        raise _no_record(path)
    return render(builder.finish(verdict, sla.load_targets()))


def _from_records(
    path: Path, render: Callable[[list[dict[str, Any]]], str], allow_unverified: bool
) -> str:
    """For a format that takes the records: every one of them, in a list."""
    from runbook.log.verify import VerifiedRecords, verify_log

    verdict = verify_log(path)
    _refuse_unless_allowed(path, verdict, allow_unverified)
    records: list[dict[str, Any]] = _tolerant_records(path)
    if not records:
        raise _no_record(path)
    verified = len(records) == verdict.records and records[-1].get("sha256") == verdict.final_hash
    if verdict.ok and verified:
        records = VerifiedRecords(records, verdict)  # formats need not verify it again
    return render(records)


def run_report(
    registry: PluginRegistry, log: str, fmt: str, output: str | None, allow_unverified: bool
) -> int:
    """Render LOG in format `fmt` to `output` (or stdout); the exit code."""
    formats = registry.report_formats()
    if fmt not in formats:
        listed = ", ".join(f"{name} ({formats[name].description})" for name in sorted(formats))
        raise InvalidInput(f"unknown report format '{fmt}'; available: {listed or 'none'}")
    path = Path(log)
    if not path.is_file():
        raise InvalidInput(f"no such log file: {path}")
    chosen = formats[fmt]
    if chosen.render_incident is not None:
        text = _from_incident(path, chosen.render_incident, allow_unverified)
    else:
        text = _from_records(path, chosen.render, allow_unverified)
    data = text.encode("utf-8", "replace")
    if output:
        Path(output).write_bytes(data)
        print(f"{fmt} report written to {output}", file=sys.stderr)
    else:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    return 0


def sla_overview(paths: list[Path]) -> list[str]:
    """Per-log clocks and MTTD/MTTR over the real (not dry-run) runs among `paths`.

    Reads each log in full (unlike the plain listing), which is why it is
    asked for with `--sla`. MTTD is the mean time from run start to
    detection; MTTR the mean time from run start to resolution, over the runs
    that resolved.
    """
    from runbook.log import journal
    from runbook.report import sla

    targets = sla.load_targets()
    detect, resolve, lines, unresolved = [], [], [], 0
    for path in paths:
        try:
            records = journal.read_log(path)
        except (OSError, JournalCorrupt):
            continue
        head = records[0].get("data") if records else None
        if not records or (isinstance(head, dict) and head.get("dry_run")):
            continue
        marks = sla.clocks(records)
        if marks.detected and marks.detected.elapsed is not None:
            detect.append(marks.detected.elapsed)
        if marks.resolved and marks.resolved.elapsed is not None:
            resolve.append(marks.resolved.elapsed)
        else:
            unresolved += 1
        lines.append(f"  {path.name}: {sla.summary_line(records, targets)}")
    mean = sla.format_duration
    mttd = mean(sum(detect) / len(detect)) if detect else "—"
    mttr = mean(sum(resolve) / len(resolve)) if resolve else "—"
    lines.append(
        f"MTTD {mttd}, MTTR {mttr} over {len(lines)} run(s); "
        f"{unresolved} not resolved (dry-runs excluded)"
    )
    return lines
