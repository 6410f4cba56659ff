"""Benchmark fan-out at scale: 50-1,000 loopback sshd hosts x 3 commands, paired against peers.

Issue 15's goals: `runbook run` within 1.1x raw paramiko threads at 50 hosts and
within 1.3x asyncssh at 500 and 1,000 hosts, with client CPU per host flat
(within 1.5x) from 50 to 1,000 hosts. Every tool runs as a whole process
against the same sshd processes (our own: at most 16 listen addresses each,
torn down by PID), and the tools take turns within each round -- the order
reverses every other round -- so a machine loaded by other work slows them
alike and the per-round ratios stay meaningful; the load average is printed
beside each block. For each run: wall time, the client's CPU (user + system,
from wait4) per host, and its peak RSS (total and per host).

The tools: `runbook run` (one process, incl. the fsync'd incident log), raw
paramiko with a thread per host loading known_hosts per client as its docs
show, the same with one HostKeys shared by all threads (what any
paramiko-based transport can reach at best), and asyncssh (one event loop,
known_hosts read once). Run (as root, so the hosts' login shell reads no rc
files -- see bench_fanout.py):

    .venv/bin/python bench/bench_fanout_scale.py [--hosts 50,200,500,1000] [--repeat 3]
        [--tools runbook,paramiko,paramiko-shared,asyncssh] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))
from bench_fanout import COMMANDS, RAW, bench_user  # noqa: E402
from support import sshd  # noqa: E402

LOGIN_TIMEOUT = 120
"""Seconds a host may take to connect and log in, for every tool (asyncssh's default): with
1,000 handshakes at once on 2 loaded cores, paramiko's 15 s key-exchange limit is hit."""

RAW_SHARED = (
    textwrap.dedent(
        """
    import sys, threading, paramiko
    port, user, key, known, *hosts = sys.argv[1:]
    keys = paramiko.HostKeys(known)
    class Patient(paramiko.Transport):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.handshake_timeout = LOGIN
    failed = []
    def one(host):
        try:
            c = paramiko.SSHClient()
            c._host_keys = keys  # one parsed known_hosts for every thread
            c.set_missing_host_key_policy(paramiko.RejectPolicy())
            c.connect(host, port=int(port), username=user, key_filename=key,
                      allow_agent=False, look_for_keys=False, timeout=LOGIN,
                      banner_timeout=LOGIN, auth_timeout=LOGIN, transport_factory=Patient)
            for cmd in COMMANDS:
                _, out, _ = c.exec_command(cmd)
                out.read(); out.channel.recv_exit_status()
            c.close()
        except Exception as exc:
            failed.append(f"{host}: {exc!r}")
    threads = [threading.Thread(target=one, args=(h,)) for h in hosts]
    [t.start() for t in threads]; [t.join() for t in threads]
    sys.exit("\\n".join(failed) if failed else 0)
    """
    )
    .replace("COMMANDS", repr(COMMANDS))
    .replace("LOGIN", str(LOGIN_TIMEOUT))
)

ASYNCSSH = (
    textwrap.dedent(
        """
    import asyncio, sys, asyncssh
    port, user, key, known, *hosts = sys.argv[1:]
    async def one(host, keys, client_keys):
        async with asyncssh.connect(host, port=int(port), username=user, known_hosts=keys,
                                    client_keys=client_keys, agent_path=None,
                                    login_timeout=LOGIN) as c:
            for cmd in COMMANDS:
                await c.run(cmd, check=True)
    async def main():
        keys = asyncssh.read_known_hosts(known)
        client_keys = [asyncssh.read_private_key(key)]
        results = await asyncio.gather(*(one(h, keys, client_keys) for h in hosts),
                                       return_exceptions=True)
        failed = [f"{h}: {r!r}" for h, r in zip(hosts, results) if r is not None]
        sys.exit("\\n".join(failed) if failed else 0)
    asyncio.run(main())
    """
    )
    .replace("COMMANDS", repr(COMMANDS))
    .replace("LOGIN", str(LOGIN_TIMEOUT))
)


def runbook_text(fleet: sshd.Fleet) -> str:
    """bench_fanout's runbook: the 3 commands as 3 steps on all hosts at once."""
    target = fleet.target_yaml(connect_timeout=LOGIN_TIMEOUT)
    steps = "".join(
        f"  - id: c{i}\n    phase: triage\n    concurrency: {len(fleet.addresses)}\n"
        f"    check: {{shell: {{command: {cmd!r}, target: fleet}}}}\n"
        for i, cmd in enumerate(COMMANDS)
    )
    return (
        "apiVersion: runbook/v1\nkind: Runbook\n"
        "metadata: {name: bench-fanout, title: Bench fan-out, severity: P3}\n"
        f"targets:\n  fleet: {target}\nsteps:\n{steps}"
    )


TOOLS = {
    "runbook": "runbook run",
    "paramiko": "raw paramiko threads",
    "paramiko-shared": "paramiko threads, shared keys",
    "asyncssh": "asyncssh",
}


@dataclass
class Sample:
    tool: str
    hosts: int
    round: int
    wall: float
    cpu: float
    max_rss_kib: int
    load: float
    ok: bool = True


def measure(argv: list[str], cwd: Path, out: Path) -> tuple[float, float, int, bool]:
    """Wall seconds, CPU seconds (user + system), peak RSS (KiB) of one whole process, and
    whether it succeeded (a failure -- a host that timed out -- is shown and left out)."""
    with out.open("wb") as sink:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    text = out.read_text(errors="replace")
    ok = code == 0 and "Exception in thread" not in text  # RAW (bench_fanout) only prints it
    if not ok:
        print(f"  FAILED ({code}), left out of the summary: {argv[:4]}\n{text[-1500:]}", flush=True)
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, ok


def raise_fd_limit(hosts: int) -> None:
    """A client holds a socket per host (asyncssh, paramiko) and sshd a few per connection."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, 4 * hosts + 256)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))


def bench_hosts(
    count: int, tools: list[str], repeat: int, work: Path, warm_up: bool = False
) -> list[Sample]:
    user = bench_user()
    root = work / f"fleet{count}"
    fleet = sshd.start_fleet(root, count, user=user)
    if user:  # sshd reads authorized_keys as the login user
        for path in (work, root, root / "authorized_keys"):
            path.chmod(0o755 if path.is_dir() else 0o644)
    samples: list[Sample] = []
    try:
        base = work / f"run{count}"
        base.mkdir()
        rb = runbook_text(fleet)
        (base / "rb.yaml").write_text(rb)
        scripts = {"paramiko": RAW, "paramiko-shared": RAW_SHARED, "asyncssh": ASYNCSSH}
        for name, text in scripts.items():
            (base / f"peer_{name}.py").write_text(text)
        peer_args = [str(fleet.port), fleet.user, str(fleet.key_file), str(fleet.known_hosts)]
        argv = {
            name: [sys.executable, f"peer_{name}.py", *peer_args, *fleet.addresses]
            for name in scripts
        }
        argv["runbook"] = [sys.executable, "-m", "runbook", "run", "rb.yaml", "--log-dir", "logs"]
        if warm_up:  # compiles and caches bytecode, fills the page cache: not measured
            for tool in tools:
                measure(argv[tool], base, base / f"{tool}.out")
        for number in range(repeat):
            order = tools if number % 2 == 0 else list(reversed(tools))
            for tool in order:
                load = os.getloadavg()[0]
                wall, cpu, rss, ok = measure(argv[tool], base, base / f"{tool}.out")
                samples.append(Sample(tool, count, number, wall, cpu, rss, load, ok))
                print(
                    f"  {count:5} hosts round {number + 1} {TOOLS[tool]:30} wall {wall:7.2f}s  "
                    f"cpu/host {1000 * cpu / count:6.1f} ms  rss/host {rss / count:7.0f} KiB  "
                    f"(load {load:.1f})",
                    flush=True,
                )
    finally:
        fleet.stop()
    return samples


def summarise(samples: list[Sample], tools: list[str]) -> None:
    failed = [s for s in samples if not s.ok]
    if failed:
        print("\nleft out (failed): " + ", ".join(f"{s.tool} {s.hosts}" for s in failed))
    samples = [s for s in samples if s.ok]
    counts = sorted({s.hosts for s in samples})
    print(
        "\n| hosts | tool | wall (median) | CPU/host | peak RSS | RSS/host | load |\n"
        "|---|---|---|---|---|---|---|"
    )
    for count in counts:
        for tool in tools:
            mine = [s for s in samples if s.hosts == count and s.tool == tool]
            if not mine:
                continue
            wall = statistics.median(s.wall for s in mine)
            cpu = statistics.median(s.cpu for s in mine) / count
            rss = statistics.median(s.max_rss_kib for s in mine)
            load = statistics.median(s.load for s in mine)
            print(
                f"| {count} | {TOOLS[tool]} | {wall:.2f} s | {1000 * cpu:.1f} ms | "
                f"{rss / 1024:.0f} MiB | {rss / count:.0f} KiB | {load:.1f} |"
            )
    if "runbook" not in tools:
        return
    print("\nPaired ratios (runbook / peer, median of the per-round ratios):")
    for count in counts:
        ours = {s.round: s for s in samples if s.hosts == count and s.tool == "runbook"}
        parts = []
        for tool in tools:
            if tool == "runbook":
                continue
            theirs = {s.round: s for s in samples if s.hosts == count and s.tool == tool}
            ratios = [ours[r].wall / theirs[r].wall for r in ours if r in theirs]
            if ratios:
                parts.append(f"{statistics.median(ratios):.2f}x {TOOLS[tool]}")
        print(f"  {count:5} hosts: " + ", ".join(parts))
    first, last = counts[0], counts[-1]
    per_host = {
        c: statistics.median(s.cpu for s in samples if s.hosts == c and s.tool == "runbook") / c
        for c in (first, last)
    }
    print(
        f"runbook CPU per host {1000 * per_host[first]:.1f} ms ({first}) -> "
        f"{1000 * per_host[last]:.1f} ms ({last}): {per_host[last] / per_host[first]:.2f}x"
    )
    print("\nCPU per added host (slope between sizes, start-up cancels out):")
    for tool in tools:
        cpu = {
            c: statistics.median(s.cpu for s in samples if s.hosts == c and s.tool == tool)
            for c in counts
            if any(s.hosts == c and s.tool == tool for s in samples)
        }
        sizes = sorted(cpu)
        slopes = [
            f"{a}->{b}: {1000 * (cpu[b] - cpu[a]) / (b - a):.1f} ms"
            for a, b in zip(sizes, sizes[1:], strict=False)
        ]
        print(f"  {TOOLS[tool]:30} " + ", ".join(slopes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", default="50,200,500,1000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--json", type=Path, help="also write every sample here")
    parser.add_argument(
        "--raw-max",
        type=int,
        default=500,
        help="run `paramiko` (known_hosts loaded per client: quadratic) only up to this many "
        "hosts; at 1,000 one run costs ~10 CPU-minutes",
    )
    args = parser.parse_args()
    tools = [t for t in args.tools.split(",") if t]
    unknown = sorted(set(tools) - set(TOOLS))
    if unknown:
        raise SystemExit(f"unknown tools {unknown}; known: {', '.join(TOOLS)}")
    if "asyncssh" in tools:
        try:
            import asyncssh  # noqa: F401
        except ImportError:
            raise SystemExit("asyncssh is missing: pip install -e '.[bench]'") from None
    reason = sshd.ensure_sshd()
    if reason:
        raise SystemExit(reason)
    counts = [int(c) for c in args.hosts.split(",")]
    raise_fd_limit(max(counts))
    work = Path(tempfile.mkdtemp(prefix="bench-fanout-scale-"))
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()} at start", flush=True)
    samples: list[Sample] = []
    for count in counts:
        here = [t for t in tools if t != "paramiko" or count <= args.raw_max]
        samples += bench_hosts(count, here, args.repeat, work, warm_up=count == counts[0])
    summarise(samples, tools)
    print(f"load average {os.getloadavg()} at end")
    if args.json:
        args.json.write_text(json.dumps([asdict(s) for s in samples], indent=1))


if __name__ == "__main__":
    main()
