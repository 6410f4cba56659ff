"""Exit codes and signals outside a run: what `runbook` itself answers before and after the runner.

Inside a run, the runner decides the exit code (tests/run/test_signals.py). These are the
edges around it: no command, `--version`, a signal while the CLI is still reading its
input, a reader that went away, and a CLI started with signals already ignored (`nohup`,
`cmd &` in a script), where an SRE expects the ignored ones to stay ignored except the one
that must always stop us (SIGTERM: that is how systemd, Kubernetes and CI stop a job).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from runbook.cli.main import main

LIBRARY_RUN = ["run", "service-outage", "-p", "health_url=http://127.0.0.1:9/", "-p", "service=x"]


def test_version_exits_zero(run_cli):
    result = run_cli("--version")
    assert result.code == 0
    assert result.out.startswith("runbook ")


def test_no_command_prints_help_and_exits_two(run_cli):
    result = run_cli()
    assert result.code == 2
    assert "usage: runbook" in result.out


def _blocked_on_a_fifo(
    tmp_path: Path, cli_env: dict[str, str], ignore: tuple[int, ...] = ()
) -> subprocess.Popen[str]:
    """`runbook run --plan FIFO`: the CLI sits in open(), before any run or log exists."""
    fifo = tmp_path / "plan.json"
    os.mkfifo(fifo)

    def ignore_signals() -> None:  # what nohup / a non-interactive `cmd &` hand down
        for sig in ignore:
            signal.signal(sig, signal.SIG_IGN)

    proc = subprocess.Popen(
        [sys.executable, "-m", "runbook", *LIBRARY_RUN, "--plan", str(fifo)],
        cwd=tmp_path,
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ignore_signals,
    )
    _wait_until_blocked(proc, fifo)
    return proc


def _wait_until_blocked(proc: subprocess.Popen[str], fifo: Path) -> None:
    """Until the CLI has the FIFO open for reading; then it waits in read(), forever.

    A non-blocking open of the write end succeeds only once a reader is there (ENXIO
    before). The write end is left open and empty, so the CLI keeps waiting for data.
    """
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, proc.communicate()
        try:
            os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # closed when the test process ends
            return
        except OSError:
            assert time.monotonic() < deadline, "the CLI never opened the plan file"
            time.sleep(0.02)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_outside_a_run_exits_130_naming_it(tmp_path, cli_env, sig):
    proc = _blocked_on_a_fifo(tmp_path, cli_env)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert f"runbook: interrupted ({sig.name})" in err
    assert "Traceback" not in err


def test_sigterm_stops_us_even_when_the_parent_ignored_it(tmp_path, cli_env):
    proc = _blocked_on_a_fifo(tmp_path, cli_env, ignore=(signal.SIGTERM,))
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted (SIGTERM)" in err


def test_signals_ignored_by_nohup_stay_ignored(tmp_path, cli_env):
    """Under `nohup`, a hang-up must not stop the run; SIGTERM still does."""
    proc = _blocked_on_a_fifo(tmp_path, cli_env, ignore=(signal.SIGHUP,))
    proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert proc.poll() is None, "SIGHUP stopped a CLI started under nohup"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "interrupted (SIGTERM)" in err


def test_an_ignored_sigint_does_not_disarm_the_other_signals(tmp_path, cli_env):
    """`cmd &` in a script ignores SIGINT; SIGHUP (listed after it) must still stop us."""
    proc = _blocked_on_a_fifo(tmp_path, cli_env, ignore=(signal.SIGINT,))
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert proc.poll() is None, "an ignored SIGINT stopped the CLI"
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "interrupted (SIGHUP)" in err


def test_main_gives_the_signal_handlers_back(capsys):
    """An embedding program (a test runner, a service) keeps its own handlers."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    assert main(["--version"]) == 0
    after = {sig: signal.getsignal(sig) for sig in before}
    assert after == before
    assert capsys.readouterr().out.startswith("runbook ")


def test_main_runs_from_a_thread_without_touching_signals(capsys):
    """Only the main thread may set handlers: from a worker thread, main() still works."""
    before = signal.getsignal(signal.SIGTERM)
    codes: list[int] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            codes.append(main(["--version"]))
        except BaseException as exc:  # noqa: BLE001 -- the assertion below names it
            errors.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    worker.join(30)
    assert errors == [] and codes == [0]
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_reader_that_went_away_ends_quietly_with_exit_1(tmp_path, cli_env):
    """`runbook schema | head -1`: the pipe closes early; no traceback, exit 1."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    proc = subprocess.run(
        [sys.executable, "-m", "runbook", "schema"],
        cwd=tmp_path,
        env=cli_env,
        stdout=write_end,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
    )
    os.close(write_end)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
