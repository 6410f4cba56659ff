"""The `runbook` command line: argparse only, so `runbook --help` stays instant.

Each verb's implementation lives in `runbook.cli.commands` and is imported only
when that verb runs. This module is the one place that catches broadly: every
`RunbookError` becomes its one-line message and its exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Sequence
from typing import Any

EXIT_CODES = """exit codes:
  0    all checks passed / actions succeeded (or the dry-run plan was produced)
  1    a check or action failed and the runbook did not handle it
  2    invalid input: runbook, params, inventory, plan mismatch, unknown name
  3    an operator declined a confirmation (or none could be asked) or aborted
  4    a step timed out and ended the run, or the run deadline passed
  5    the incident log failed verification (tampered or truncated)
  130  interrupted (Ctrl-C, SIGTERM or SIGHUP); the log is closed with an 'interrupted' record

environment:
  RUNBOOK_LOG_DIR        default incident-log directory (default ./incident-logs)
  RUNBOOK_LOG_MODE       mode of new incident logs, octal (default 0600, directory 0700)
  RUNBOOK_PATH           extra directories to find runbooks by NAME (':'-separated)
  RUNBOOK_PARAM_<NAME>   value of a secret param, so it never shows in `ps`
  RUNBOOK_OPERATOR       who is running this (default: login name)
  RUNBOOK_CACHE_DIR      where what the installed plugins provide is cached
                         (default $XDG_CACHE_HOME/runbook or ~/.cache/runbook)
  NO_COLOR               disable colour
"""

EXAMPLES = """examples:
  runbook list                                   what runbooks are available
  runbook show service-outage                    read a runbook's steps before using it
  runbook plan service-outage -p health_url=https://api.example.com/health
                                                 what would run; nothing is changed
  runbook run service-outage -p health_url=https://api.example.com/health -p service=api
                                                 run it; every action asks before it acts
  runbook log verify incident-logs/<file>.jsonl  prove the incident log is intact
  runbook report incident-logs/<file>.jsonl --format postmortem -o postmortem.md
"""


LIMIT_HELP = (
    "only the inventory hosts this Ansible host pattern selects (web:&prod, web[0:1], @FILE), "
    "as ansible-playbook --limit; needs --inventory"
)


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("runbook", metavar="NAME|PATH", help="runbook name or YAML file")
    p.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a param (repeatable); secrets: use RUNBOOK_PARAM_<NAME>",
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runbook",
        description="Incident runbooks as code: validate, dry-run, run and record YAML runbooks.",
        epilog=EXAMPLES + "\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    raw = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser(
        "list", help="runbooks available, with title, severity and tags", formatter_class=raw
    )
    p.add_argument(
        "--dir", action="append", default=[], help="also list runbooks in this directory"
    )
    p.add_argument("--tag", help="only runbooks with this tag")
    p.add_argument("--severity", choices=["P0", "P1", "P2", "P3"], help="only this severity")
    p.add_argument("filter", nargs="?", help="only names/titles containing this text")

    p = sub.add_parser("show", help="a runbook's params, targets and steps in reading order")
    p.add_argument("runbook", metavar="NAME|PATH")

    p = sub.add_parser(
        "validate",
        help="schema and semantic checks (exit 2 on errors)",
        epilog="--strict also fails on lint warnings: actions without confirm text or verify, "
        "checks without expect, steps without timeout, shell strings with rendered values, "
        "and unfilled template placeholders such as [Title] or TODO.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="runbook files or directories")
    p.add_argument("--strict", action="store_true", help="treat lint warnings as errors")

    p = sub.add_parser(
        "plan",
        help="dry-run: show exactly what would run; nothing is changed",
        epilog="With -o, the plan is saved with a digest; `run --plan FILE` then "
        "refuses to run if the runbook, params or targets changed.",
    )
    _run_args(p)
    p.add_argument("-o", "--output", metavar="plan.json", help="write the plan (with digest) here")
    p.add_argument(
        "--inventory", metavar="FILE", help="resolve targets' hosts as `run --inventory` will"
    )
    p.add_argument("--limit", metavar="PATTERN", help=LIMIT_HELP)
    p.add_argument("--format", choices=["text", "json"], default="text")

    p = sub.add_parser(
        "run",
        help="run a runbook and record a hash-chained incident log",
        formatter_class=raw,
        epilog=EXIT_CODES,
    )
    _run_args(p)
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="plan every step; actions never run, read-only checks do (see --no-checks)",
    )
    p.add_argument("--no-checks", action="store_true", help="with --dry-run: run nothing at all")
    p.add_argument("-y", "--yes", action="store_true", help="accept every confirmation (recorded)")
    p.add_argument(
        "--plan", metavar="plan.json", help="refuse to run unless the plan still matches"
    )
    p.add_argument(
        "--log-dir",
        metavar="DIR",
        help="where the incident log goes (default $RUNBOOK_LOG_DIR or ./incident-logs)",
    )
    p.add_argument(
        "--only", action="append", default=[], metavar="STEP", help="run only STEP (repeatable)"
    )
    p.add_argument("--from", dest="from_step", metavar="STEP", help="start at STEP")
    p.add_argument(
        "-a",
        "--answer",
        action="append",
        default=[],
        metavar="STEP=TEXT",
        help="answer a manual step in advance (repeatable)",
    )
    p.add_argument(
        "--operator",
        help="who is running this, as claimed (default $RUNBOOK_OPERATOR or login name); "
        "the OS user is recorded beside it",
    )
    p.add_argument(
        "--signing-key",
        metavar="FILE",
        help="sign the incident log with this ed25519 private key (default $RUNBOOK_SIGNING_KEY)",
    )
    p.add_argument(
        "--severity",
        choices=["P0", "P1", "P2", "P3"],
        help="override the runbook's severity for this incident (SLA targets, notifications)",
    )
    p.add_argument(
        "--deadline", metavar="DURATION", help="run deadline, e.g. 15m (overrides the runbook)"
    )
    p.add_argument(
        "--resume",
        metavar="LOG",
        help="continue an interrupted or failed run; steps it finished are not run again",
    )
    p.add_argument(
        "--rerun-unfinished",
        action="append",
        default=[],
        metavar="STEP",
        help="with --resume: run again action STEP, which the interrupted run started and did "
        "not finish (it may have taken effect; --yes does not allow this) (repeatable)",
    )
    p.add_argument("--inventory", metavar="FILE", help="host inventory: YAML, or Ansible INI/YAML")
    p.add_argument("--limit", metavar="PATTERN", help=LIMIT_HELP)
    p.add_argument(
        "--format",
        choices=["text", "json"],
        default="text",
        help="text for humans, json for one event per line",
    )

    p = sub.add_parser("log", help="list, show or verify incident logs")
    log_sub = p.add_subparsers(dest="log_command", metavar="ACTION", required=True)
    q = log_sub.add_parser("list", help="runs recorded in a log directory")
    q.add_argument("--log-dir", metavar="DIR")
    q.add_argument(
        "--sla",
        action="store_true",
        help="read every log in full: SLA clocks per run, then MTTD/MTTR",
    )
    q = log_sub.add_parser("show", help="a readable timeline of one log")
    q.add_argument("log", metavar="LOG")
    q = log_sub.add_parser(
        "verify",
        help="check chain, truncation, signature and anchor (exit 5 if any fails)",
        epilog="Without --key a log proves integrity only, not authenticity: anyone who edits "
        "it can recompute every hash. --key checks it was signed by your key; --expect "
        "checks it ends at the final hash the run printed.",
    )
    q.add_argument("log", metavar="LOG")
    q.add_argument(
        "--key",
        metavar="PUB",
        help="the signing key's public key file (OpenSSH .pub or PEM) or SHA256: fingerprint",
    )
    q.add_argument(
        "--expect",
        metavar="HASH",
        help="the final hash the run printed (or SEQ:HASH, a log head sent mid-run)",
    )

    p = sub.add_parser(
        "report",
        help="post-mortem, JSON, JUnit or HTML report from a log",
        epilog="Built from the log alone. A log that fails verification is refused "
        "(exit 5) unless --allow-unverified. SLA targets: $RUNBOOK_SLA_FILE or "
        "~/.config/runbook/sla.yaml (defaults: P0 respond 15m/resolve 1h, P1 30m/4h, "
        "P2 2h/24h, P3 24h/1w).",
    )
    p.add_argument("log", metavar="LOG")
    p.add_argument(
        "--format",
        default="postmortem",
        help="postmortem|json|junit|html, or one a plugin adds (default postmortem)",
    )
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    p.add_argument(
        "--allow-unverified",
        action="store_true",
        help="report from a truncated or tampered log anyway, with a warning banner",
    )

    p = sub.add_parser("new", help="scaffold a runbook and its scenario test")
    p.add_argument("name", help="runbook name: lowercase letters, digits, '-'")
    p.add_argument(
        "--from",
        dest="template",
        metavar="NAME|PATH",
        help="copy this runbook (e.g. a shipped one)",
    )
    p.add_argument("--severity", choices=["P0", "P1", "P2", "P3"], help="default P2")
    p.add_argument("--dir", default="runbooks", help="where to write (default ./runbooks)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")

    p = sub.add_parser("schema", help="print the JSON Schema (for editors / YAML language server)")
    p.add_argument("--executor", metavar="NAME", help="only this executor's config schema")

    sub.add_parser("plugins", help="executors and the plugins they come from")
    return parser


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Each stops a run the way Ctrl-C does (docs/cli.md, Signals)."""


def _on_stop_signal(signum: int, frame: object) -> None:
    """Unwind like Ctrl-C, naming the signal: the runner records it in `run.interrupted`."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _install_stop_handlers() -> dict[int, Any]:
    """Our handlers in; returns the ones they replaced, for `main` to put back."""
    previous: dict[int, Any] = {}
    for sig in STOP_SIGNALS:
        if sig != signal.SIGTERM and signal.getsignal(sig) is signal.SIG_IGN:
            continue  # nohup, `cmd &` in a script: whoever started us asked to ignore it
        try:
            previous[sig] = signal.signal(sig, _on_stop_signal)
        except ValueError:  # not the main thread (main() called from a thread): leave them
            break
    return previous


def _say(text: str) -> None:
    """Best effort: after SIGHUP or with a closed pipe, stderr may be gone."""
    with contextlib.suppress(OSError, ValueError):
        print(text, file=sys.stderr)


def _silence_dead_stdout() -> None:
    """Point stdout at /dev/null if it cannot take what is buffered (a hung-up terminal,
    a closed pipe), so the interpreter's last flush does not turn the exit code into 120."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        import os

        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    previous = _install_stop_handlers()
    try:
        return _main(argv)
    except KeyboardInterrupt as exc:  # loading, a prompt, ... anywhere outside a run
        _say(f"runbook: interrupted ({exc.args[0] if exc.args else 'SIGINT'})")
        return 130
    finally:
        _silence_dead_stdout()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _main(argv: Sequence[str] | None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from runbook import __version__

        print(f"runbook {__version__}")
        return 0
    if not args.command:
        parser.print_help()
        return 2
    from runbook.cli import commands
    from runbook.errors import RunbookError

    handler = getattr(commands, "cmd_" + args.command)
    try:
        return int(handler(args))
    except RunbookError as exc:
        _say(f"runbook: error: {exc}")
        return int(exc.exit_code)
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
