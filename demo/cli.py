"""`runbook-demo`: the embedded demo environment and its guided tour.

`runbook-demo tour` starts a local service on 127.0.0.1, wedges it, then runs
the real shipped `service-outage` runbook against it with `runbook run`: the
health check fails, triage shows status and logs, the restart is confirmed,
the re-check passes, and the incident log is verified. The other verbs are the
supervisor the runbook drives (`status`, `logs`, `restart`, ...).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from runbook_demo import journal
from runbook_demo.supervisor import Service, free_port, state_dir
from runbook_demo.units import UnitDemo, missing_tools

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def _service(name: str) -> Service:
    if not NAME.match(name):
        raise SystemExit(f"runbook-demo: invalid service name {name!r}")
    return Service(name, state_dir())


def _env_with_bin() -> dict[str, str]:
    """PATH with this interpreter's bin dir first, so `runbook-demo` resolves in steps."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def _run_outage(
    log_dir: str, service_name: str, platform: str, port: int, env: dict[str, str]
) -> int:
    """`runbook run service-outage` against the wedged service, then `runbook log verify`."""
    argv = [
        "runbook",
        "run",
        "service-outage",
        "-p",
        f"platform={platform}",
        "-p",
        f"service={service_name}",
        "-p",
        f"health_url=http://127.0.0.1:{port}/health",
        "--log-dir",
        log_dir,
    ]
    if not sys.stdin.isatty():
        argv.append("--yes")
    print("[demo] $ " + " ".join(argv) + "\n", flush=True)
    run = subprocess.run([sys.executable, "-m", "runbook", *argv[1:]], env=env, check=False)
    logs = sorted(Path(log_dir).glob("*-service-outage-*.jsonl"), key=lambda p: p.stat().st_mtime)
    if logs:
        print(f"\n[demo] $ runbook log verify {logs[-1]}", flush=True)
        subprocess.run(
            [sys.executable, "-m", "runbook", "log", "verify", str(logs[-1])],
            env=env,
            check=False,
        )
    return run.returncode


def supervisor_act(log_dir: str, service_name: str = "demo-api") -> int:
    """The service under the embedded demo supervisor (`platform=demo`)."""
    svc = _service(service_name)
    svc.stop()
    svc.log.unlink(missing_ok=True)  # each tour starts with a fresh service log
    port = free_port()
    print(
        f"[demo] starting {service_name} on http://127.0.0.1:{port} under the demo supervisor "
        "and wedging it (database pool exhausted)"
    )
    code = 1
    try:
        if svc.start(port) != 0:
            print("[demo] the demo service did not start; see " + str(svc.log), file=sys.stderr)
            return 1
        svc.wedge()
        time.sleep(0.2)
        code = _run_outage(log_dir, service_name, "demo", port, _env_with_bin())
    finally:
        with _signals_held():
            svc.stop()
        print(f"[demo] stopped {service_name}; exit code of the run: {code}", flush=True)
    return code


def systemd_act(log_dir: str, service_name: str = "demo-api") -> int | None:
    """The service as a real unit (`platform=systemd`); None when it could not be set up."""
    demo = UnitDemo(state_dir() / "systemd", service_name)
    port = free_port()
    print(
        "[demo] systemd act: the runbook's systemd and journald steps on a real unit, real tools\n"
        "[demo]   systemctl  = docker-systemctl-replacement (systemctl3.py) managing the real\n"
        f"[demo]                unit file {demo.unit}\n"
        "[demo]                and its process, no systemd as PID 1 needed\n"
        f"[demo]   journalctl = the real {journal.JOURNALCTL}, reading a journal file that\n"
        f"[demo]                systemd-journal-remote makes from the service's log\n"
        f"[demo]                {demo.log}\n"
        f"[demo]   both are shims in {demo.bin}, first on PATH for the runbook run only",
        flush=True,
    )
    code: int | None = None
    try:
        problem = _start_wedged(demo, port)
        if problem:
            print(f"[demo] {problem}", file=sys.stderr)
            return None
        code = _run_outage(log_dir, service_name, "systemd", port, demo.env(_env_with_bin()))
    finally:
        with _signals_held():  # a 2nd Ctrl-C or a SIGTERM must not cut the clean-up short
            demo.cleanup()
        done = "" if code is None else f"    # exit code of the run: {code}"
        print(f"[demo] $ systemctl stop {service_name}{done}", flush=True)
    return code


def _start_wedged(demo: UnitDemo, port: int) -> str | None:
    """Write the unit and shims, start the unit, wedge it; None, or what went wrong."""
    try:
        demo.prepare(port)
        print(f"[demo] $ systemctl start {demo.name}    # http://127.0.0.1:{port}", flush=True)
        failed = demo.start(port)
        if failed:
            return failed
        pid = demo.wedge()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"the systemd act could not be set up under {demo.root}: {exc}"
    if not pid:
        return f"systemctl shows no MainPID for {demo.name}; see {demo.log}"
    print(
        f"[demo] $ kill -USR1 {pid}    # wedge it: pool exhausted, /health answers 503", flush=True
    )
    time.sleep(0.2)
    return None


def tour(log_dir: str, service_name: str = "demo-api", act: str = "auto") -> int:
    """The systemd act when its tools are here, else (or with act=demo) the supervisor act."""
    if act != "demo":
        missing = missing_tools()
        if missing:
            print("[demo] the systemd act needs what this machine lacks:", file=sys.stderr)
            for item in missing:
                print(f"[demo]   - {item}", file=sys.stderr)
        else:
            code = systemd_act(log_dir, service_name)
            if code is not None:
                return code
        if act == "systemd":
            return 1
        print("[demo] falling back to the demo supervisor act (platform=demo)\n", flush=True)
    return supervisor_act(log_dir, service_name)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in held}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the acts' cleanup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="runbook-demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = sub.add_parser("tour", help="wedge a demo service and run service-outage against it")
    p.add_argument("--log-dir", default=os.environ.get("RUNBOOK_LOG_DIR", "incident-logs"))
    p.add_argument(
        "--act",
        choices=("auto", "systemd", "demo"),
        default="auto",
        help="systemd: a real unit (docker-systemctl-replacement) and journal; demo: the "
        "embedded supervisor; auto (default): systemd when its tools are installed",
    )
    for verb in ("start", "stop", "restart", "status", "wedge"):
        sub.add_parser(verb, help=f"{verb} a demo service").add_argument("service")
    p = sub.add_parser("logs", help="last lines of a demo service's log")
    p.add_argument("service")
    p.add_argument("-n", "--lines", type=int, default=50)
    args = parser.parse_args(argv)
    if args.verb == "tour":
        signal.signal(signal.SIGTERM, _terminate)
        try:
            return tour(args.log_dir, act=args.act)
        except KeyboardInterrupt:
            print("\n[demo] interrupted; the demo service was stopped", file=sys.stderr)
            return 130
    svc = _service(args.service)
    if args.verb == "restart":
        svc.stop()
        return svc.start()
    if args.verb == "logs":
        return svc.logs(args.lines)
    return int(getattr(svc, args.verb)())


if __name__ == "__main__":
    sys.exit(main())
