"""The demo's `journalctl`: the real journalctl reading a real journal file.

There is no journald in the demo (no systemd as PID 1), so before every call
this turns the demo units' log files (`ROOT/var/log/UNIT.log`, one
`<ISO time> <LEVEL> <message>` line each) into journal export format, has
`systemd-journal-remote` write `ROOT/journal/demo.journal` from it, and then
execs the real `journalctl --directory=ROOT/journal` with the caller's
arguments, so `-u demo-api -p err -o json` work exactly as on a real host.

Usage (what the tour's `journalctl` shim runs): `python -m runbook_demo.journal ROOT ARGS...`
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote"
JOURNALCTL = "/usr/bin/journalctl"
ERROR_LEVELS = {"CRITICAL": 2, "ERROR": 3, "WARNING": 4, "WARN": 4}


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")
    except OSError:
        return uuid.uuid4().hex


def _field(name: str, value: str) -> bytes:
    """One field in the binary-safe form (any byte, newlines included, is allowed)."""
    data = value.encode("utf-8", errors="replace")
    return name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"


def parse_line(line: str, fallback_us: int) -> tuple[int, int, str]:
    """(realtime in µs, syslog priority, message) of one `<ISO time> <LEVEL> <message>` line."""
    stamp, _, rest = line.partition(" ")
    try:
        when = int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1e6)
    except ValueError:
        return fallback_us, 6, line
    level = rest.split(" ", 1)[0]
    return when, ERROR_LEVELS.get(level, 6), rest


def export_entries(logs: Iterable[tuple[str, Path]]) -> Iterator[bytes]:
    """Journal export format entries for (unit, log file) pairs, like journald's stdout capture."""
    boot, seq = _boot_id(), 0
    for unit, log in logs:
        previous = 0
        for line in log.read_text(errors="replace").splitlines():
            if not line.strip():
                continue
            previous, priority, message = parse_line(line, previous)
            seq += 1
            yield (
                (
                    f"__REALTIME_TIMESTAMP={previous}\n__MONOTONIC_TIMESTAMP={seq}\n"
                    f"_BOOT_ID={boot}\n_TRANSPORT=stdout\n_SYSTEMD_UNIT={unit}\n"
                    f"SYSLOG_IDENTIFIER={unit.removesuffix('.service')}\nPRIORITY={priority}\n"
                ).encode()
                + _field("MESSAGE", message)
                + b"\n"
            )


def build_journal(root: Path) -> Path:
    """(Re)create ROOT/journal/demo.journal from every ROOT/var/log/*.log; returns its dir."""
    logs = sorted((root / "var" / "log").glob("*.log"))
    export = b"".join(export_entries((f"{p.stem}.service", p) for p in logs))
    staging, journal_dir = root / "journal.new", root / "journal"
    staging.mkdir(parents=True, exist_ok=True)
    journal_dir.mkdir(parents=True, exist_ok=True)
    fresh = staging / "demo.journal"
    fresh.unlink(missing_ok=True)  # systemd-journal-remote appends to an existing file
    subprocess.run(
        [JOURNAL_REMOTE, "-o", str(fresh), "-"], input=export, check=True, capture_output=True
    )
    os.replace(fresh, journal_dir / "demo.journal")
    return journal_dir


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m runbook_demo.journal ROOT [journalctl args...]", file=sys.stderr)
        return 2
    root, args = Path(argv[0]), argv[1:]
    try:
        journal_dir = build_journal(root)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = (getattr(exc, "stderr", b"") or b"").decode(errors="replace")
        print(f"demo journalctl: could not build the journal: {exc} {detail}", file=sys.stderr)
        return 1
    os.execv(JOURNALCTL, [JOURNALCTL, f"--directory={journal_dir}", *args])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
