"""The runbooks that use issue 14's executor gaps, validated, dry-run and run for real.

`replication-lag` resumes WAL replay on a hot standby (`execute` on a standby) and
VACUUMs outside a transaction (`transaction: false`); `nginx-502` reads the upstream's
JSON with `shell: {parse: json}` and the HTTP status as `status_code` beside the step's
own `status`, and judges two units with `is_active` + `require: all`. Each passes
`validate --strict` and a dry-run, and runs end to end: `replication-lag` against the
real PostgreSQL primary and streaming replica (tests/support/pg_cluster.py), `nginx-502`
over a real sshd to a "web host" whose units docker-systemctl-replacement runs, with
real curl and local HTTP servers as nginx and its upstream.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import sshd
from support.cli import ROOT, RunCli
from support.helpers import logs_in
from support.http_servers import Reply, http_server
from support.pg_cluster import PASSWORD, PgCluster

RUNBOOKS = {name: ROOT / "runbooks" / f"{name}.yaml" for name in ("replication-lag", "nginx-502")}


def finished(log_dir: Path) -> dict[str, str]:
    [log] = logs_in(log_dir)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    return {r["data"]["step"]: r["data"]["status"] for r in records if r["type"] == "step.finished"}


def pg_params(pg: PgCluster, **extra: object) -> list[str]:
    values = {
        "primary_host": "127.0.0.1",
        "primary_port": pg.primary_port,
        "standby_host": "127.0.0.1",
        "standby_port": pg.replica_port,
        **extra,
    }
    return [arg for key, value in values.items() for arg in ("-p", f"{key}={value}")]


@pytest.mark.parametrize("name", sorted(RUNBOOKS))
def test_validates_strictly(name: str, run_cli: RunCli) -> None:
    result = run_cli("validate", "--strict", str(RUNBOOKS[name]))
    assert result.code == 0, result.text


def test_nginx_502_dry_run_plans_every_step(run_cli: RunCli, tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("[web]\nweb-1.internal\nweb-2.internal\n")
    result = run_cli(
        "run",
        str(RUNBOOKS["nginx-502"]),
        "--dry-run",
        "--no-checks",
        "--inventory",
        str(inventory),
        "-p",
        "site_url=https://shop.example.com/",
        "--log-dir",
        "logs",
    )
    assert result.code == 0, result.text
    assert "curl -sS --max-time 5 http://127.0.0.1:8000/health" in result.out
    assert "sudo -n -- systemctl restart fastapi" in result.out
    assert set(finished(tmp_path / "logs").values()) <= {"planned", "unknown", "skipped"}


@pytest.mark.slow
def test_replication_lag_dry_run_reads_the_real_servers_and_changes_nothing(
    pg: PgCluster, run_cli: RunCli, tmp_path: Path
) -> None:
    pg.psql("SELECT pg_wal_replay_pause()", port=pg.replica_port)
    try:
        result = run_cli(
            "run",
            str(RUNBOOKS["replication-lag"]),
            "--dry-run",
            *pg_params(pg),
            "--log-dir",
            "logs",
            env={"RUNBOOK_PARAM_DB_PASSWORD": PASSWORD},
        )
        assert result.code == 0, result.text
        steps = finished(tmp_path / "logs")
        assert steps["lag"] == "passed" and steps["standby-queries"] == "passed"  # ran
        assert steps["standby-replay"] == "planned"  # free SQL: planned, not run
        assert pg.psql("SELECT pg_is_wal_replay_paused()", port=pg.replica_port) == "t"
    finally:
        pg.psql("SELECT pg_wal_replay_resume()", port=pg.replica_port)


@pytest.mark.slow
def test_replication_lag_resumes_replay_and_vacuums_for_real(
    pg: PgCluster, run_cli: RunCli, tmp_path: Path
) -> None:
    pg.psql(
        "DROP TABLE IF EXISTS bloated; "
        "CREATE TABLE bloated(id int, pad text) WITH (autovacuum_enabled = false); "
        "INSERT INTO bloated SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g; "
        "DELETE FROM bloated WHERE id <= 15000"
    )
    pg.psql("SELECT pg_wal_replay_pause()", port=pg.replica_port)
    pg.psql("INSERT INTO bloated SELECT g, repeat('y', 200) FROM generate_series(1, 20000) g")
    try:
        result = run_cli(
            "run",
            str(RUNBOOKS["replication-lag"]),
            "--yes",
            *pg_params(pg, max_lag_bytes=100_000, max_dead_tuples=1_000),
            "--log-dir",
            "logs",
            env={"RUNBOOK_PARAM_DB_PASSWORD": PASSWORD},
        )
        assert result.code == 0, result.text
        steps = finished(tmp_path / "logs")
        assert steps["lag"] == "failed" and steps["standby-replay"] == "failed"
        assert steps["dead-tuples"] == "failed"
        assert steps["resume-replay"] == "passed" and steps["vacuum"] == "passed"
        assert steps["lag-recovered"] == "passed"
        assert pg.psql("SELECT pg_is_wal_replay_paused()", port=pg.replica_port) == "f"
        vacuumed = "SELECT n_dead_tup, last_vacuum IS NOT NULL FROM pg_stat_user_tables"
        assert pg.psql(f"{vacuumed} WHERE relname = 'bloated'") == "0|t"
        assert PASSWORD not in result.text
    finally:
        pg.psql("SELECT pg_wal_replay_resume()", port=pg.replica_port)
        pg.psql("DROP TABLE IF EXISTS bloated")


# --- nginx-502 end to end: a real sshd, curl, docker-systemctl-replacement, HTTP servers ---
WEB_HOST = "127.0.0.60"  # its own sshd, away from the shared fleet (127.0.0.2-21)
SERVICE = "[Unit]\nDescription={name}\n[Service]\nType=simple\nExecStart=/bin/sleep {secs}\n"
# The fleet logs in as the current user (root here): a stand-in for `sudo -n --` runs the
# command as it is (sudo is not installed on the test image).
SUDO = (
    "#!/bin/sh\n"
    'while [ "$#" -gt 0 ]; do case "$1" in -n) shift;; --) shift; break;; *) break;; esac; done\n'
    'exec "$@"\n'
)


@pytest.fixture
def web_host(tmp_path: Path) -> Iterator[tuple[sshd.Fleet, Path]]:
    """One SSH "web host" whose `systemctl` manages nginx.service and fastapi.service."""
    reason = sshd.ensure_sshd()
    if reason:
        pytest.skip(reason)
    replacement = Path(sys.executable).parent / "systemctl3.py"
    if not replacement.exists():
        pytest.skip("docker-systemctl-replacement is not installed (pip install -e '.[dev]')")
    fleet = sshd.start_fleet(tmp_path / "sshd", count=1, first=int(WEB_HOST.rsplit(".", 1)[1]))
    root = tmp_path / "host-root"
    units = root / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    (units / "nginx.service").write_text(SERVICE.format(name="nginx", secs=605))
    (units / "fastapi.service").write_text(SERVICE.format(name="fastapi", secs=606))
    shim = sshd.install_shim(
        fleet,
        "systemctl",
        f"#!/bin/sh\nexec {sys.executable} {replacement} --root={root} "
        '-c MinimumYield=0.1 "$@" 2>/dev/null\n',
    )
    sshd.install_shim(fleet, "sudo", SUDO)
    subprocess.run([str(shim), "start", "nginx", "fastapi"], check=True, timeout=60)
    try:
        yield fleet, shim
    finally:
        subprocess.run([str(shim), "stop", "nginx", "fastapi"], timeout=60)
        fleet.stop()


def ssh_home(tmp_path: Path, fleet: sshd.Fleet) -> Path:
    """A HOME whose ~/.ssh/config reaches the web host, as an operator's would."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(
        f"Host {WEB_HOST}\n  Port {fleet.port}\n  User {fleet.user}\n"
        f"  IdentityFile {fleet.key_file}\n  UserKnownHostsFile {fleet.known_hosts}\n"
    )
    return home


@pytest.mark.slow
def test_nginx_502_reads_upstream_json_and_restarts_it_for_real(
    web_host: tuple[sshd.Fleet, Path], run_cli: RunCli, tmp_path: Path
) -> None:
    fleet, shim = web_host
    pid_before = subprocess.run(
        [str(shim), "show", "-p", "MainPID", "fastapi"], capture_output=True, text=True
    ).stdout.strip()
    error_log = tmp_path / "nginx-error.log"
    error_log.write_text(
        "2024/05/01 10:00:00 [error] 12#12: *3 upstream timed out (110: Connection timed out) "
        'while reading response header from upstream, upstream: "http://127.0.0.1:8000/"\n'
    )
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"[web]\n{WEB_HOST}\n")
    with http_server() as site:
        site.route("/", Reply(status=502, body="Bad Gateway"), Reply(status=200, body="shop"))
        site.route("/upstream/health", json={"status": "error", "checks": {"database": "timeout"}})
        result = run_cli(
            "run",
            str(RUNBOOKS["nginx-502"]),
            "--yes",
            "--inventory",
            str(inventory),
            "-p",
            f"site_url={site.url_for('/')}",
            "-p",
            f"upstream_health_url={site.url_for('/upstream/health')}",
            "-p",
            f"nginx_error_log={error_log}",
            "--log-dir",
            "logs",
            env={"HOME": str(ssh_home(tmp_path, fleet))},
            timeout=120,
        )
    assert result.code == 0, result.text
    steps = finished(tmp_path / "logs")
    assert steps["site"] == "failed" and steps["initial-alert"] == "passed"
    assert steps["units"] == "passed"  # nginx and fastapi both active (require: all)
    assert steps["upstream-health"] == "failed" and steps["upstream-errors"] == "failed"
    assert steps["restart-upstream"] == "passed" and steps["site-recovered"] == "passed"
    assert "502 Bad Gateway" in result.out  # the alert read steps.site.status_code/reason
    [log] = logs_in(tmp_path / "logs")
    records = [json.loads(line) for line in log.read_text().splitlines()]
    health = next(
        r["data"]
        for r in records
        if r["type"] == "step.result" and r["data"]["step"] == "upstream-health"
    )
    assert health["hosts"][WEB_HOST]["fields"]["json"]["checks"] == {"database": "timeout"}
    pid_after = subprocess.run(
        [str(shim), "show", "-p", "MainPID", "fastapi"], capture_output=True, text=True
    ).stdout.strip()
    assert pid_after != pid_before
