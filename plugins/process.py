"""Run one local command to completion, a timeout, or a cancel, and never leave strays.

The shell executor (and later systemd/journald over the local transport) needs
more than `subprocess.run`: output bounded per stream so a chatty command cannot
exhaust memory, stdout and stderr read together so neither pipe fills and
deadlocks the child, a `threading.Event` checked while waiting so Ctrl-C and
deadlines take effect within ~50 ms, and the child started in its own process
group so stopping it stops everything it spawned. Everything here is stdlib;
the executor imports this module only inside `run()` to keep plugin loading cheap.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Literal

from runbook.contract import Target

POLL_INTERVAL = 0.05
"""How often a waiting loop looks at the cancel event and the clock."""

TERM_GRACE = 2.0
"""Seconds a process group gets between SIGTERM and SIGKILL."""

DRAIN_AFTER_EXIT = 1.0
"""How long to keep reading after the command exited while a background child
it started still holds stdout/stderr open; after that we return what we have
rather than wait for a daemon that may never close them."""

DRAIN_AFTER_KILL = 0.5
"""The same after we killed the group; kept short so that SIGTERM grace plus
drain stays inside the runner's own grace for an attempt that overran."""

_READ_CHUNK = 65536
_WRITE_CHUNK = 4096  # writes up to PIPE_BUF never block a pipe we were told is writable

StopReason = Literal["exited", "timeout", "cancelled"]


class BoundedBuffer:
    """Keeps the first `limit` bytes of a stream and counts what it had to drop."""

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 0)
        self.data = bytearray()
        self.dropped = 0

    def feed(self, chunk: bytes) -> None:
        room = self.limit - len(self.data)
        if room > 0:
            self.data += chunk[:room]
        self.dropped += max(len(chunk) - max(room, 0), 0)

    def text(self) -> str:
        """Decoded text; a truncated stream ends with a note saying how much was cut."""
        text = bytes(self.data).decode("utf-8", errors="replace")
        if self.dropped:
            text += f"\n[... truncated {self.dropped} bytes (kept the first {self.limit}) ...]"
        return text


class StreamedBuffer(BoundedBuffer):
    """Hands every chunk to `sink` as it arrives and keeps none of it (its text is empty).

    For a caller that reads a stream whatever its size (journald counting every
    entry): the sink sees all the bytes, memory holds none of them.
    """

    def __init__(self, sink: Callable[[bytes], None]) -> None:
        super().__init__(0)
        self._sink = sink

    def feed(self, chunk: bytes) -> None:
        if chunk:
            self._sink(chunk)


@dataclass(frozen=True)
class ProcessOutcome:
    """How a command ended and what it wrote, whatever the reason it ended."""

    pid: int
    exit_code: int | None
    stdout: BoundedBuffer
    stderr: BoundedBuffer
    elapsed: float
    stopped: StopReason


class _Pump:
    """Moves bytes between us and the child's pipes without ever blocking on one."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        stdin: bytes | None,
        limit: int,
        on_stdout: Callable[[bytes], None] | None = None,
    ) -> None:
        self.stdout = BoundedBuffer(limit) if on_stdout is None else StreamedBuffer(on_stdout)
        self.stderr = BoundedBuffer(limit)
        self._selector = selectors.DefaultSelector()
        self._pending = memoryview(stdin or b"")
        for pipe, sink in ((proc.stdout, self.stdout), (proc.stderr, self.stderr)):
            if pipe is not None:
                self._selector.register(pipe, selectors.EVENT_READ, sink)
        if proc.stdin is not None:
            os.set_blocking(proc.stdin.fileno(), False)
            self._selector.register(proc.stdin, selectors.EVENT_WRITE, None)

    @property
    def open(self) -> bool:
        return bool(self._selector.get_map())

    def step(self, wait: float) -> None:
        """One round: wait up to `wait` seconds for any pipe, then serve the ready ones."""
        if not self.open:
            time.sleep(wait)
            return
        for key, _events in self._selector.select(wait):
            if key.data is None:
                self._write(key.fileobj)  # type: ignore[arg-type]
            else:
                self._read(key.fileobj, key.data)  # type: ignore[arg-type]

    def _read(self, pipe: IO[bytes], sink: BoundedBuffer) -> None:
        chunk = os.read(pipe.fileno(), _READ_CHUNK)
        if chunk:
            sink.feed(chunk)
        else:
            self._forget(pipe)

    def _write(self, pipe: IO[bytes]) -> None:
        try:
            written = os.write(pipe.fileno(), self._pending[:_WRITE_CHUNK])
        except BlockingIOError:
            return
        except BrokenPipeError:  # the command stopped reading; that is its business
            written = len(self._pending)
        self._pending = self._pending[written:]
        if not self._pending:
            self._forget(pipe)

    def _forget(self, pipe: IO[bytes]) -> None:
        self._selector.unregister(pipe)
        pipe.close()

    def close(self) -> None:
        for key in list(self._selector.get_map().values()):
            self._forget(key.fileobj)  # type: ignore[arg-type]
        self._selector.close()


def run_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    stdin: bytes | None = None,
    timeout: float | None = None,
    cancel: threading.Event | None = None,
    max_output: int = 1024 * 1024,
    on_stdout: Callable[[bytes], None] | None = None,
) -> ProcessOutcome:
    """Start `argv` in its own process group and wait for it, its timeout, or `cancel`.

    Raises OSError (FileNotFoundError, PermissionError, ...) when it cannot start.
    With `on_stdout`, stdout goes to it as it is read instead of being kept.
    Without `stdin` the child reads /dev/null, so a command that unexpectedly
    reads its input cannot steal the operator's keystrokes or hang the run.
    """
    cancel = cancel or threading.Event()
    start = time.monotonic()
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,
    )
    pump = _Pump(proc, stdin, max_output, on_stdout)
    stopped: StopReason = "timeout"
    try:
        deadline = start + timeout if timeout is not None else None
        stopped = _wait(proc, pump, deadline, cancel)
    finally:
        if stopped != "exited":  # also on KeyboardInterrupt: no orphans left behind
            kill_group(proc, pump)
        _drain(pump, DRAIN_AFTER_EXIT if stopped == "exited" else DRAIN_AFTER_KILL)
        pump.close()
    return ProcessOutcome(
        pid=proc.pid,
        exit_code=proc.returncode,
        stdout=pump.stdout,
        stderr=pump.stderr,
        elapsed=time.monotonic() - start,
        stopped=stopped,
    )


def _wait(
    proc: subprocess.Popen[bytes], pump: _Pump, deadline: float | None, cancel: threading.Event
) -> StopReason:
    """Serve the pipes until the command has exited, the deadline passed, or cancel is set."""
    while True:
        if proc.poll() is not None:  # first: a command that finished in time did not time out
            return "exited"
        if cancel.is_set():
            return "cancelled"
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return "timeout"
        wait = max(POLL_INTERVAL if deadline is None else min(POLL_INTERVAL, deadline - now), 0.0)
        if pump.open:
            pump.step(wait)
        else:  # the pipes closed, so it is exiting: wait for that, not a whole poll interval
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(wait)


def _drain(pump: _Pump, budget: float) -> None:
    """Collect output still in flight, up to `budget` seconds (see DRAIN_AFTER_EXIT)."""
    until = time.monotonic() + budget
    while pump.open and time.monotonic() < until:
        pump.step(POLL_INTERVAL)


def kill_group(proc: subprocess.Popen[bytes], pump: _Pump | None = None) -> None:
    """Stop the command and everything it spawned: SIGTERM the group, SIGKILL stragglers.

    The group id equals the leader's pid (start_new_session). Linux does not hand
    out a pid again while it still names a live process group, so signalling the
    group after reaping the leader reaches only its remaining members.
    """
    pgid = proc.pid
    if _signal_group(pgid, signal.SIGTERM):
        until = time.monotonic() + TERM_GRACE
        while time.monotonic() < until:
            proc.poll()  # reap the leader, or its zombie keeps the group "alive"
            if not _group_alive(pgid):
                break
            if pump is not None:
                pump.step(POLL_INTERVAL)  # keep reading: a child blocked on a full pipe
            else:  # cannot act on SIGTERM
                time.sleep(POLL_INTERVAL)
        _signal_group(pgid, signal.SIGKILL)
    proc.wait()


def _signal_group(pgid: int, sig: int) -> bool:
    """Signal every process in the group; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member changed user (setuid); it exists, we cannot touch it
        return True
    return True


def _group_alive(pgid: int) -> bool:
    """Whether any member of the group still runs (zombies do not count)."""
    if not _signal_group(pgid, 0):
        return False
    members = _running_members(pgid)
    return members is None or members > 0


def _running_members(pgid: int) -> int | None:
    """Non-zombie processes in group `pgid`, read from /proc; None without /proc.

    Orphaned grandchildren are reparented to pid 1, and in containers pid 1 often
    never reaps them: their zombies keep `killpg(pgid, 0)` succeeding, which
    would make every stop wait out the whole SIGTERM grace period.
    """
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    running = 0
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat_file:
                stat = stat_file.read()
        except OSError:
            continue  # exited while we looked
        # "pid (comm) state ppid pgrp ...": comm may contain spaces and parentheses
        state, _ppid, pgrp = stat[stat.rfind(b")") + 2 :].split()[:3]
        if int(pgrp) == pgid and state not in (b"Z", b"X"):
            running += 1
    return running


def transport_problem(executor: str, target_name: str | None, target: Target | None) -> str | None:
    """Why this executor cannot reach `target` from here, or None when it runs locally.

    Only the local transport is built in so far. Refusing a remote target is
    deliberate: running a command meant for `web-1` on the operator's laptop
    would be worse than not running it at all.
    """
    if target is None:
        if target_name in (None, "", "local"):
            return None
        return f"target '{target_name}' was not resolved: the runner passed no target details"
    if target.transport == "local":
        return None
    return (
        f"transport '{target.transport}' is not available: the {executor} executor can only "
        f"run on this machine (transport 'local') so far, and target '{target.name}' "
        f"uses '{target.transport}'"
    )
