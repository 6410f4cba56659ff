"""Benchmark fan-out: 50 loopback sshd hosts x 3 read-only commands, `runbook run` vs raw paramiko.

DESIGN.md's goal: `runbook run` of this workload within 1.1x of raw paramiko
with 50 threads (issue 4 asks for 1.5x). Both are timed as whole processes
(interpreter start, imports, connects, commands, and for runbook the hash-chained
incident log), median of R runs, against the same sshd processes. Needs root or
an sshd that may bind 127.0.0.2-51 (tests/support/sshd.py starts them). Run:

    .venv/bin/python bench/bench_fanout.py [--hosts 50] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from support import sshd  # noqa: E402

COMMANDS = ["uptime", "cat /etc/hostname", "test -d /tmp"]

RAW = textwrap.dedent(
    """
    import sys, threading, paramiko
    port, user, key, known, *hosts = sys.argv[1:]
    def one(host):
        c = paramiko.SSHClient()
        c.load_host_keys(known)
        c.set_missing_host_key_policy(paramiko.RejectPolicy())
        c.connect(host, port=int(port), username=user, key_filename=key,
                  allow_agent=False, look_for_keys=False)
        for cmd in COMMANDS:
            _, out, _ = c.exec_command(cmd)
            out.read(); out.channel.recv_exit_status()
        c.close()
    threads = [threading.Thread(target=one, args=(h,)) for h in hosts]
    [t.start() for t in threads]; [t.join() for t in threads]
    """
).replace("COMMANDS", repr(COMMANDS))


def runbook_text(fleet: sshd.Fleet) -> str:
    steps = "".join(
        f"  - id: c{i}\n    phase: triage\n    concurrency: {len(fleet.addresses)}\n"
        f"    check: {{shell: {{command: {cmd!r}, target: fleet}}}}\n"
        for i, cmd in enumerate(COMMANDS)
    )
    return (
        "apiVersion: runbook/v1\nkind: Runbook\n"
        "metadata: {name: bench-fanout, title: Bench fan-out, severity: P3}\n"
        f"targets:\n  fleet: {fleet.target_yaml()}\nsteps:\n{steps}"
    )


def ansible_files(fleet: sshd.Fleet, work: Path) -> list[str] | None:
    """An inventory + playbook doing the same 3 commands, if ansible-playbook is available.

    Looked up as $ANSIBLE_PLAYBOOK, then on PATH; ansible-core is not a dependency of
    ours, so install it in a venv of its own (`pip install ansible-core`) to compare.
    """
    import os
    import shutil

    program = os.environ.get("ANSIBLE_PLAYBOOK") or shutil.which("ansible-playbook")
    if not program:
        return None
    hosts = "\n".join(
        f"{a} ansible_port={fleet.port} ansible_user={fleet.user} "
        f"ansible_ssh_private_key_file={fleet.key_file}"
        for a in fleet.addresses
    )
    (work / "hosts.ini").write_text(f"[fleet]\n{hosts}\n")
    tasks = "".join(
        f"    - ansible.builtin.shell: {cmd!r}\n      changed_when: false\n" for cmd in COMMANDS
    )
    (work / "play.yml").write_text(f"- hosts: fleet\n  gather_facts: false\n  tasks:\n{tasks}")
    (work / "ansible.cfg").write_text(
        "[defaults]\nforks = 50\nhost_key_checking = True\nstdout_callback = minimal\n"
        "interpreter_python = /usr/bin/python3\n"
        "[ssh_connection]\npipelining = True\n"
        f"ssh_args = -o UserKnownHostsFile={fleet.known_hosts} -o ControlMaster=auto "
        "-o ControlPersist=60s\n"
    )
    return [program, "-i", "hosts.ini", "play.yml"]


def bench_user() -> str | None:
    """A login user whose shell reads no rc files, so the remote side costs what SSH costs.

    Logging in as root here runs root's ~/.bashrc (pyenv init, ~4 s) for every command,
    which would measure bash start-up, not the tools. As root we create `runbook-bench`
    (shell /bin/sh, no home); otherwise the current user is used and the numbers say so.
    """
    import os
    import pwd

    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("runbook-bench")
    except KeyError:
        subprocess.run(
            ["useradd", "-M", "-d", "/tmp", "-s", "/bin/sh", "runbook-bench"], check=True
        )
    subprocess.run(["usermod", "-p", "*", "runbook-bench"], check=True)  # key login only
    return "runbook-bench"


def timed(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if sshd.ensure_sshd():
        raise SystemExit("sshd is not available")
    work = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    user = bench_user()
    if user:  # sshd reads authorized_keys as the login user
        work.chmod(0o755)
    fleet = sshd.start_fleet(work / "sshd", args.hosts, user=user)
    if user:
        for path in (work / "sshd", work / "sshd" / "authorized_keys"):
            path.chmod(0o755 if path.is_dir() else 0o644)
    try:
        (work / "rb.yaml").write_text(runbook_text(fleet))
        (work / "raw.py").write_text(RAW)
        raw = [
            sys.executable,
            "raw.py",
            str(fleet.port),
            fleet.user,
            str(fleet.key_file),
            str(fleet.known_hosts),
            *fleet.addresses,
        ]
        ours = [sys.executable, "-m", "runbook", "run", "rb.yaml", "--log-dir", "logs"]
        results: dict[str, list[float]] = {"raw paramiko threads": [], "runbook run": []}
        ansible = ansible_files(fleet, work)
        if ansible:
            results["ansible-playbook"] = []
        for _ in range(args.repeat):
            results["raw paramiko threads"].append(timed(raw, work))
            results["runbook run"].append(timed(ours, work))
            if ansible:
                results["ansible-playbook"].append(timed(ansible, work))
        for name, times in results.items():
            print(
                f"{name:22} min {min(times):.3f}s  median {statistics.median(times):.3f}s  "
                f"max {max(times):.3f}s"
            )
        ratio = statistics.median(results["runbook run"]) / statistics.median(
            results["raw paramiko threads"]
        )
        print(
            f"runbook / raw paramiko = {ratio:.2f}x ({args.hosts} hosts x {len(COMMANDS)} commands)"
        )
        if ansible:
            speedup = statistics.median(results["ansible-playbook"]) / statistics.median(
                results["runbook run"]
            )
            print(f"ansible-playbook / runbook = {speedup:.1f}x")
        else:
            print("ansible-playbook not found (set ANSIBLE_PLAYBOOK to compare with ansible-core)")
    finally:
        fleet.stop()


if __name__ == "__main__":
    main()
