"""`runbook-demo`: the embedded demo environment and its guided tour.

`runbook-demo tour` starts a local service on 127.0.0.1, wedges it, then runs
the real shipped `service-outage` runbook against it with `runbook run`: the
health check fails, triage shows status and logs, the restart is confirmed,
the re-check passes, and the incident log is verified. The other verbs are the
supervisor the runbook drives (`status`, `logs`, `restart`, ...).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from runbook.demo.supervisor import Service, free_port, state_dir

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


def tour(log_dir: str, service_name: str = "demo-api") -> int:
    svc = _service(service_name)
    svc.stop()
    svc.log.unlink(missing_ok=True)  # each tour starts with a fresh service log
    port = free_port()
    print(
        f"[demo] starting {service_name} on http://127.0.0.1:{port} and wedging it "
        "(database pool exhausted)"
    )
    if svc.start(port) != 0:
        print("[demo] the demo service did not start; see " + str(svc.log), file=sys.stderr)
        return 1
    svc.wedge()
    time.sleep(0.2)
    argv = [
        "runbook",
        "run",
        "service-outage",
        "-p",
        "platform=demo",
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
    env = _env_with_bin()
    run: subprocess.CompletedProcess[bytes] = subprocess.CompletedProcess(argv, 1)
    try:
        run = subprocess.run([sys.executable, "-m", "runbook", *argv[1:]], env=env, check=False)
        logs = sorted(
            Path(log_dir).glob("*-service-outage-*.jsonl"), key=lambda p: p.stat().st_mtime
        )
        if logs:
            print(f"\n[demo] $ runbook log verify {logs[-1]}", flush=True)
            subprocess.run(
                [sys.executable, "-m", "runbook", "log", "verify", str(logs[-1])],
                env=env,
                check=False,
            )
    finally:
        svc.stop()
        print(f"[demo] stopped {service_name}; exit code of the run: ", end="")
    print(run.returncode)
    return run.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="runbook-demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = sub.add_parser("tour", help="wedge a demo service and run service-outage against it")
    p.add_argument("--log-dir", default=os.environ.get("RUNBOOK_LOG_DIR", "incident-logs"))
    for verb in ("start", "stop", "restart", "status", "wedge"):
        sub.add_parser(verb, help=f"{verb} a demo service").add_argument("service")
    p = sub.add_parser("logs", help="last lines of a demo service's log")
    p.add_argument("service")
    p.add_argument("-n", "--lines", type=int, default=50)
    args = parser.parse_args(argv)
    if args.verb == "tour":
        return tour(args.log_dir)
    svc = _service(args.service)
    if args.verb == "restart":
        svc.stop()
        return svc.start()
    if args.verb == "logs":
        return svc.logs(args.lines)
    return int(getattr(svc, args.verb)())


if __name__ == "__main__":
    sys.exit(main())
