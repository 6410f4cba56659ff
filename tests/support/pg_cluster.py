"""A real PostgreSQL primary with a streaming replica, on 127.0.0.1, for tests.

`initdb`/`pg_ctl`/`pg_basebackup` run as the `postgres` OS user (the server
refuses root) in a temporary directory; the replica comes from
`pg_basebackup -R`, so `pg_stat_replication` and its lag are the server's own.
Password auth (scram) is on for TCP so an authentication failure is real too.
Both servers are stopped by PID (read from postmaster.pid) when the session ends.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from support.http_servers import closed_port

BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
PASSWORD = "s3cret-pg-pass"
USER = "runbook"


def available() -> str | None:
    """Why PostgreSQL cannot be started here, or None when it can."""
    if not (BIN / "initdb").exists():
        return f"PostgreSQL server binaries not found in {BIN} (run .ci/setup-system)"
    if os.geteuid() != 0 and shutil.which("sudo") is None:
        return "needs root to run the server as the postgres user"
    return None


@dataclass
class PgCluster:
    root: Path
    primary_port: int
    replica_port: int

    def settings(self, port: int | None = None, password: str = PASSWORD) -> dict[str, object]:
        return {
            "host": "127.0.0.1",
            "port": port or self.primary_port,
            "user": USER,
            "dbname": "app",
            "password": password,
        }

    def psql(self, sql: str, port: int | None = None) -> str:
        return _as_postgres(
            [
                str(BIN / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port or self.primary_port),
                "-U",
                "postgres",
                "-d",
                "app",
                "-Atc",
                sql,
            ],
        )


def _as_postgres(argv: list[str]) -> str:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    proc = subprocess.run(
        prefix + argv,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PGPASSWORD": PASSWORD},
        cwd="/",
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def _start(data: Path, port: int, sockets: Path) -> None:
    _as_postgres(
        [
            str(BIN / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(data.parent / f"{data.name}.log"),
            "-w",
            "-t",
            "30",
            "-o",
            f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1",
            "start",
        ]
    )


def _init_primary(root: Path, port: int, sockets: Path) -> Path:
    data = root / "primary"
    pwfile = root / "pw"
    pwfile.write_text(PASSWORD)
    shutil.chown(pwfile, "postgres")
    _as_postgres(
        [
            str(BIN / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "scram-sha-256",
            f"--pwfile={pwfile}",
            "--no-sync",
        ]
    )
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(
            "wal_level = replica\nmax_wal_senders = 5\nfsync = off\n"
            "synchronous_commit = off\nmax_connections = 50\n"
        )
    _start(data, port, sockets)
    for sql in (
        f"CREATE ROLE {USER} LOGIN SUPERUSER PASSWORD '{PASSWORD}'",
        "CREATE DATABASE app",
    ):
        _as_postgres(
            [
                str(BIN / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                sql,
            ]
        )
    return data


def _init_replica(root: Path, primary_port: int, port: int, sockets: Path) -> Path:
    data = root / "replica"
    _as_postgres(
        [
            str(BIN / "pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(primary_port),
            "-U",
            "postgres",
            "-D",
            str(data),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
        ]
    )
    with (data / "postgresql.auto.conf").open("a") as conf:
        conf.write(
            f"primary_conninfo = 'host=127.0.0.1 port={primary_port} user=postgres "
            f"password={PASSWORD} application_name=replica1'\n"
        )
    _start(data, port, sockets)
    return data


def _stop(data: Path) -> None:
    pidfile = data / "postmaster.pid"
    if not pidfile.exists():
        return
    pid = int(pidfile.read_text().splitlines()[0])
    try:
        os.kill(pid, signal.SIGINT)  # "fast" shutdown
    except ProcessLookupError:
        return
    until = time.monotonic() + 15
    while time.monotonic() < until and pidfile.exists():
        time.sleep(0.05)


@contextmanager
def pg_cluster() -> Iterator[PgCluster]:
    root = Path(tempfile.mkdtemp(prefix="runbook-pg-"))
    os.chmod(root, 0o755)
    shutil.chown(root, "postgres")
    sockets = root
    primary_port, replica_port = closed_port(), closed_port()
    datas: list[Path] = []
    try:
        datas.append(_init_primary(root, primary_port, sockets))
        datas.append(_init_replica(root, primary_port, replica_port, sockets))
        cluster = PgCluster(root, primary_port, replica_port)
        _wait_streaming(cluster)
        yield cluster
    finally:
        for data in reversed(datas):
            _stop(data)
        shutil.rmtree(root, ignore_errors=True)


def _wait_streaming(cluster: PgCluster) -> None:
    until = time.monotonic() + 20
    while time.monotonic() < until:
        if cluster.psql("SELECT count(*) FROM pg_stat_replication WHERE state='streaming'") == "1":
            return
        time.sleep(0.1)
    raise RuntimeError("replica did not start streaming within 20s")
