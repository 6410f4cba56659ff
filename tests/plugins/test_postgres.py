"""The postgres executor against a real PostgreSQL 15 primary with a streaming replica."""

from __future__ import annotations

import time
from typing import Any

from runbook_plugins import postgres
from support.pg_cluster import PASSWORD, PgCluster

from runbook.contract import ExecContext, PlanContext, StepResult


def run(pg: PgCluster, op: dict[str, Any], port: int | None = None, **extra: Any) -> StepResult:
    return postgres.run({**pg.settings(port), **op, **extra}, ExecContext("s", timeout=10))


def test_ready_is_pg_isready_even_with_a_wrong_password(pg: PgCluster) -> None:
    assert run(pg, {"ready": {}}).fields["status"] == "accepting"
    wrong = run(pg, {"ready": {}}, password="wrong")
    assert wrong.fields["exit_code"] == 0  # the server answered: it is up
    from support.http_servers import closed_port

    down = postgres.run(
        {"host": "127.0.0.1", "port": closed_port(), "ready": {}}, ExecContext("s", timeout=5)
    )
    assert (down.fields["status"], down.fields["exit_code"]) == ("no_response", 2)


def test_connections_and_activity(pg: PgCluster) -> None:
    conns = run(pg, {"connections": {}})
    assert conns.fields["max_connections"] == 50 and conns.fields["used"] >= 1
    activity = run(pg, {"activity": {}})
    assert activity.ok and activity.fields["waiting_locks"] == 0


def test_replication_lag_is_real_while_replay_is_paused(pg: PgCluster) -> None:
    healthy = run(pg, {"replication": {}})
    assert healthy.fields["count"] == 1 and healthy.fields["streaming"] == 1
    pg.psql("SELECT pg_wal_replay_pause()", port=pg.replica_port)
    try:
        pg.psql(
            "CREATE TABLE IF NOT EXISTS lag(x int); INSERT INTO lag "
            "SELECT generate_series(1, 20000)"
        )
        lag = 0
        for _ in range(50):
            lag = run(pg, {"replication": {}}).fields["max_lag_bytes"]
            if lag > 0:
                break
            time.sleep(0.05)
        assert lag > 100_000
    finally:
        pg.psql("SELECT pg_wal_replay_resume()", port=pg.replica_port)
    standby = run(pg, {"replication": {}}, port=pg.replica_port)
    assert standby.fields["in_recovery"] is True


def test_query_is_read_only_and_execute_writes(pg: PgCluster) -> None:
    refused = run(pg, {"query": {"sql": "CREATE TABLE nope(x int)"}})
    assert "read-only transaction" in str(refused.error)
    assert run(pg, {"execute": {"sql": "CREATE TABLE IF NOT EXISTS t1(x int)"}}).ok
    run(pg, {"execute": {"sql": "INSERT INTO t1 VALUES (%(v)s)", "params": {"v": 7}}})
    rows = run(pg, {"query": {"sql": "SELECT max(x) AS m FROM t1"}}).fields["rows"]
    assert rows == [{"m": 7}]


def test_auth_failure_never_shows_the_password(pg: PgCluster) -> None:
    bad = "wr0ng-pass-xyz"
    result = run(pg, {"connections": {}}, password=bad)
    assert result.error is not None and "password authentication failed" in result.error
    assert bad not in result.error and PASSWORD not in result.error
    dsn = postgres.run(
        {"dsn": f"postgresql://runbook:{bad}@127.0.0.1:{pg.primary_port}/app", "connections": {}},
        ExecContext("s", timeout=10),
    )
    assert dsn.error is not None and bad not in dsn.error and bad not in str(dsn.call)


def test_plan_hides_the_password_and_execute_is_an_action() -> None:
    planned = postgres.plan(
        {
            "host": "db",
            "user": "u",
            "dbname": "app",
            "password": "pw",
            "query": {"sql": "SELECT 1"},
        },
        PlanContext("s"),
    )
    assert "pw" not in str(planned.detail.values()).replace("'***'", "")
    assert planned.summary == "postgres u@db:5432/app query: SELECT 1 (read-only transaction)"
    assert not postgres.SPEC.is_read_only({"execute": {"sql": "x"}})
