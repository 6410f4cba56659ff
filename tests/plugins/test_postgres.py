"""The postgres executor against a real PostgreSQL 15 primary with a streaming replica."""

from __future__ import annotations

import time
from typing import Any

import pytest
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


# --- read-only means read-only ------------------------------------------------------------
def table_exists(pg: PgCluster, name: str) -> bool:
    return pg.psql(f"SELECT to_regclass('public.{name}') IS NOT NULL") == "t"


ESCAPES = {
    "commit_then_write": "COMMIT; CREATE TABLE {t}(x int); SELECT 1",
    "read_write_then_write": "SET TRANSACTION READ WRITE; CREATE TABLE {t}(x int)",
    "session_read_write": "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE; COMMIT; "
    "CREATE TABLE {t}(x int)",
    "default_off": "SET default_transaction_read_only = off; COMMIT; CREATE TABLE {t}(x int)",
    "rollback_then_write": "ROLLBACK; BEGIN READ WRITE; CREATE TABLE {t}(x int); COMMIT",
    "select_then_write": "SELECT 1; CREATE TABLE {t}(x int)",
    "do_read_write": "DO $$ BEGIN SET TRANSACTION READ WRITE; CREATE TABLE {t}(x int); END $$",
    "do_commit": "DO $$ BEGIN COMMIT; CREATE TABLE {t}(x int); END $$",
    "do_set_config": "DO $$ BEGIN PERFORM set_config('transaction_read_only', 'off', true); "
    "CREATE TABLE {t}(x int); END $$",
    "plain_write": "CREATE TABLE {t}(x int)",
}


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_a_query_check_cannot_write_however_the_sql_is_written(pg: PgCluster, name: str) -> None:
    table = f"escaped_{name}"
    result = run(pg, {"query": {"sql": ESCAPES[name].format(t=table)}})
    assert not result.ok, result.fields
    assert not table_exists(pg, table)


def test_a_second_statement_is_refused_by_the_server(pg: PgCluster) -> None:
    result = run(pg, {"query": {"sql": "SELECT 1; SELECT 2"}})
    assert "cannot insert multiple commands into a prepared statement" in str(result.error)


def test_the_session_itself_is_read_only_whatever_the_dsn_says(
    pg: PgCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    show = {"query": {"sql": "SELECT current_setting('default_transaction_read_only') AS ro"}}
    assert run(pg, show).fields["rows"] == [{"ro": "on"}]
    monkeypatch.setenv("PGOPTIONS", "-c default_transaction_read_only=off")
    assert run(pg, show).fields["rows"] == [{"ro": "on"}]
    dsn = (
        f"host=127.0.0.1 port={pg.primary_port} dbname=app user=runbook "
        "options='-c default_transaction_read_only=off -c search_path=public\\\\'"
    )
    settings = {"dsn": dsn, "password": PASSWORD}
    result = postgres.run({**settings, **show}, ExecContext("s", timeout=10))
    assert result.fields["rows"] == [{"ro": "on"}], result.error


def test_values_go_through_params_as_data(pg: PgCluster) -> None:
    hostile = "x' AS v; COMMIT; CREATE TABLE pwned_param(); SELECT 'y"
    named = run(pg, {"query": {"sql": "SELECT %(n)s AS v", "params": {"n": hostile}}})
    assert named.fields["rows"] == [{"v": hostile}]
    listed = run(pg, {"query": {"sql": "SELECT %s AS v, %s::int AS n", "params": [hostile, 3]}})
    assert listed.fields["rows"] == [{"v": hostile, "n": 3}]
    assert not table_exists(pg, "pwned_param")


def test_execute_still_writes_one_statement_with_bound_values(pg: PgCluster) -> None:
    assert run(pg, {"execute": {"sql": "CREATE TABLE IF NOT EXISTS t2(x int, s text)"}}).ok
    wrote = run(pg, {"execute": {"sql": "INSERT INTO t2 VALUES (%s, %s)", "params": [1, "a'b"]}})
    assert wrote.fields["status_message"] == "INSERT 0 1"
    assert pg.psql("SELECT s FROM t2 WHERE x = 1") == "a'b"
    two = run(pg, {"execute": {"sql": "INSERT INTO t2 VALUES (2, 'b'); DROP TABLE t2"}})
    assert not two.ok and table_exists(pg, "t2")


def test_only_the_built_in_checks_are_guaranteed_side_effect_free() -> None:
    spec = postgres.SPEC
    for op in ("ready", "connections", "activity", "replication"):
        assert spec.is_side_effect_free({"host": "db", op: {}}), op
    assert not spec.is_side_effect_free({"query": {"sql": "SELECT 1"}})
    assert not spec.is_side_effect_free({"execute": {"sql": "SELECT 1"}})
    assert not spec.is_side_effect_free({"host": "db"})
    assert spec.is_read_only({"query": {"sql": "SELECT 1"}})  # meant to read, not guaranteed


# --- execute outside a transaction, and on a standby ---------------------------------------
def test_vacuum_needs_transaction_false_and_says_so(pg: PgCluster) -> None:
    assert run(pg, {"execute": {"sql": "CREATE TABLE IF NOT EXISTS vac(x int)"}}).ok
    inside = run(pg, {"execute": {"sql": "VACUUM (ANALYZE) vac"}})
    assert "VACUUM cannot run inside a transaction block" in str(inside.error)
    assert "transaction: false" in str(inside.error)
    done = run(pg, {"execute": {"sql": "VACUUM (ANALYZE) vac", "transaction": False}})
    assert done.ok, done.error
    assert done.fields["status_message"] == "VACUUM"
    assert (
        pg.psql("SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'vac'")
        == "t"
    )


def test_create_index_concurrently_runs_without_a_transaction(pg: PgCluster) -> None:
    assert run(pg, {"execute": {"sql": "CREATE TABLE IF NOT EXISTS cic(x int)"}}).ok
    sql = "CREATE INDEX CONCURRENTLY IF NOT EXISTS cic_x ON cic (x)"
    assert "cannot run inside a transaction block" in str(run(pg, {"execute": {"sql": sql}}).error)
    assert run(pg, {"execute": {"sql": sql, "transaction": False}}).ok
    assert pg.psql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'cic_x'::regclass") == "t"


def test_autocommit_is_still_one_statement(pg: PgCluster) -> None:
    assert run(pg, {"execute": {"sql": "CREATE TABLE IF NOT EXISTS one(x int)"}}).ok
    two = run(pg, {"execute": {"sql": "VACUUM one; DROP TABLE one", "transaction": False}})
    assert "cannot insert multiple commands into a prepared statement" in str(two.error)
    assert table_exists(pg, "one")


def test_execute_pauses_and_resumes_replay_on_the_standby(pg: PgCluster) -> None:
    paused = {"query": {"sql": "SELECT pg_is_wal_replay_paused() AS paused"}}
    try:
        pause = run(pg, {"execute": {"sql": "SELECT pg_wal_replay_pause()"}}, pg.replica_port)
        assert pause.ok, pause.error
        assert run(pg, paused, pg.replica_port).fields["rows"] == [{"paused": True}]
        resume = run(pg, {"execute": {"sql": "SELECT pg_wal_replay_resume()"}}, pg.replica_port)
        assert resume.ok, resume.error
        assert run(pg, paused, pg.replica_port).fields["rows"] == [{"paused": False}]
    finally:
        pg.psql("SELECT pg_wal_replay_resume()", port=pg.replica_port)


def test_the_standby_still_refuses_writes_from_execute_and_query(pg: PgCluster) -> None:
    for op in (
        {"execute": {"sql": "CREATE TABLE on_standby(x int)"}},
        {"execute": {"sql": "CREATE TABLE on_standby(x int)", "transaction": False}},
        {"query": {"sql": "CREATE TABLE on_standby(x int)"}},
    ):
        refused = run(pg, op, pg.replica_port)
        assert "cannot execute CREATE TABLE in a read-only transaction" in str(refused.error), op


def test_execute_writes_even_when_pgoptions_makes_sessions_read_only(
    pg: PgCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGOPTIONS", "-c default_transaction_read_only=on")
    assert run(pg, {"execute": {"sql": "CREATE TABLE IF NOT EXISTS ro_env(x int)"}}).ok
    assert table_exists(pg, "ro_env")
    refused = run(pg, {"query": {"sql": "CREATE TABLE ro_env2(x int)"}})
    assert "read-only transaction" in str(refused.error)


def test_plan_says_when_execute_runs_without_a_transaction() -> None:
    config = {"host": "db", "user": "u", "dbname": "app"}
    vacuum = postgres.plan(
        {**config, "execute": {"sql": "VACUUM", "transaction": False}}, PlanContext("s")
    )
    assert vacuum.summary == "postgres u@db:5432/app execute: VACUUM (no transaction: autocommit)"
    plain = postgres.plan({**config, "execute": {"sql": "UPDATE t SET x = 1"}}, PlanContext("s"))
    assert plain.summary == "postgres u@db:5432/app execute: UPDATE t SET x = 1"
