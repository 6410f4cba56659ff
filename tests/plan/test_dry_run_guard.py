"""What `run --dry-run` runs for real: only checks their executor guarantees change nothing.

Each test puts a real thing behind a check that would change it -- a file a shell
command would create, an HTTP server that counts requests, a live PostgreSQL
session that `pg_terminate_backend` would kill, a table a `COMMIT` would let
through -- and shows that a dry-run leaves it alone, while the checks that are
guaranteed (the built-in postgres checks: fixed SQL in a read-only session) still
run. The console's "[dry-run: nothing will be changed]" has to be true.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from support.helpers import logs_in, make_plugin_dist, spy_source
from support.http_servers import http_server
from support.pg_cluster import PASSWORD, PgCluster

from runbook.log.journal import read_log
from runbook.registry import PluginRegistry

HEAD = """\
apiVersion: runbook/v1
kind: Runbook
metadata: {name: guard, title: Dry-run guard, severity: P3}
"""


def records(log_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """The last log's records by type (`step.planned`, `step.result`, ...)."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for record in read_log(logs_in(log_dir)[-1]):
        by_type.setdefault(record["type"], []).append(record["data"])
    return by_type


def planned_steps(log_dir: Path) -> list[str]:
    return [d["step"] for d in records(log_dir).get("step.planned", [])]


def pg_check(pg: PgCluster, operation: str) -> str:
    """A postgres check step's config, connection settings inline (password from PGPASSWORD)."""
    return (
        f"{{postgres: {{host: 127.0.0.1, port: {pg.primary_port}, user: runbook, "
        f"dbname: app, {operation}}}}}"
    )


@pytest.fixture
def pg_env() -> dict[str, str]:
    return {"PGPASSWORD": PASSWORD}


def table_exists(pg: PgCluster, name: str) -> bool:
    return pg.psql(f"SELECT to_regclass('public.{name}') IS NOT NULL") == "t"


# --- executors that guarantee nothing: planned, never run -----------------------------------
def test_a_shell_check_is_planned_not_run(run_cli, write_runbook, tmp_path: Path) -> None:
    marker = tmp_path / "touched"
    rb = write_runbook(
        HEAD + f"steps:\n  - {{id: look, phase: detect, check: {{shell: {{argv: [touch, "
        f'"{marker}"]}}}}}}\n'
    )
    result = run_cli("run", str(rb), "--dry-run")
    assert result.code == 0, result.text
    assert not marker.exists()
    assert planned_steps(tmp_path / "logs") == ["look"]
    assert run_cli("run", str(rb)).code == 0 and marker.exists()  # the check does act


def test_an_http_get_check_is_planned_not_sent(run_cli, write_runbook, tmp_path: Path) -> None:
    with http_server() as server:
        server.route("/health", json={"status": "ok"})
        rb = write_runbook(
            HEAD + "steps:\n  - {id: health, phase: detect, check: {http: "
            f'{{url: "{server.url_for("/health")}"}}}}}}\n'
        )
        result = run_cli("run", str(rb), "--dry-run")
        assert result.code == 0, result.text
        assert server.requests == []
        assert planned_steps(tmp_path / "logs") == ["health"]
        assert run_cli("run", str(rb)).code == 0
        assert [r.method for r in server.requests] == ["GET"]


def test_meaning_to_read_is_not_enough_a_plugin_must_guarantee(
    run_cli, write_runbook, tmp_path: Path
) -> None:
    def spy_runs(side_effect_free: bool) -> int:
        site = tmp_path / f"site-{side_effect_free}"
        source = spy_source(read_only=True, side_effect_free=side_effect_free)
        make_plugin_dist(site, "runbook-spy", "runbook_spy", source)
        spy_log = tmp_path / f"spy-{side_effect_free}.log"
        env = {"PYTHONPATH": str(site), "SPY_LOG": str(spy_log)}
        rb = write_runbook(HEAD + "steps:\n  - {id: s, phase: detect, check: {spy: {name: x}}}\n")
        assert run_cli("run", str(rb), "--dry-run", env=env).code == 0
        return spy_log.read_text().count('"what": "run"')

    assert spy_runs(side_effect_free=False) == 0
    assert spy_runs(side_effect_free=True) == 1


# --- postgres: free-form SQL is planned, the built-in checks run -------------------------------
def test_pg_terminate_backend_under_dry_run_is_planned_and_the_session_survives(
    pg: PgCluster, pg_env, run_cli, write_runbook, tmp_path: Path
) -> None:
    import psycopg

    sql = (
        "SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity "
        "WHERE application_name = 'victim'"
    )
    rb = write_runbook(
        HEAD + f"steps:\n  - id: kill\n    phase: triage\n"
        f"    check: {pg_check(pg, f'query: {{sql: {sql!r}}}')}\n"
    )
    with psycopg.connect(**pg.settings(), application_name="victim") as victim:
        result = run_cli("run", str(rb), "--dry-run", env=pg_env)
        assert result.code == 0, result.text
        assert "nothing will be changed" in result.text
        assert planned_steps(tmp_path / "logs") == ["kill"]
        assert "step.result" not in records(tmp_path / "logs")
        assert victim.execute("SELECT 1").fetchone() == (1,)  # still connected
        assert run_cli("run", str(rb), env=pg_env).code == 0  # a real run does what it says
        with pytest.raises(psycopg.OperationalError):
            victim.execute("SELECT 1")


def test_built_in_postgres_checks_still_run_under_dry_run(
    pg: PgCluster, pg_env, run_cli, write_runbook, tmp_path: Path
) -> None:
    rb = write_runbook(
        HEAD + f"steps:\n  - id: conns\n    phase: detect\n"
        f"    check: {pg_check(pg, 'connections: {}')}\n"
    )
    result = run_cli("run", str(rb), "--dry-run", env=pg_env)
    assert result.code == 0, result.text
    (ran,) = records(tmp_path / "logs")["step.result"]
    assert ran["step"] == "conns" and ran["fields"]["max_connections"] == 50
    assert planned_steps(tmp_path / "logs") == []


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_commit_cannot_smuggle_a_write_into_a_check(
    dry_run: bool, pg: PgCluster, pg_env, run_cli, write_runbook, tmp_path: Path
) -> None:
    table = f"smuggled_{'dry' if dry_run else 'real'}"
    sql = f"COMMIT; CREATE TABLE {table}(x int); SELECT 1"
    rb = write_runbook(
        HEAD + f"steps:\n  - id: sneaky\n    phase: detect\n"
        f"    check: {pg_check(pg, f'query: {{sql: {sql!r}}}')}\n"
    )
    result = run_cli("run", str(rb), *(["--dry-run"] if dry_run else []), env=pg_env)
    assert result.code == (0 if dry_run else 1), result.text
    assert not table_exists(pg, table)
    if not dry_run:
        assert "cannot insert multiple commands" in result.text


def test_a_hostile_param_through_params_is_data(
    pg: PgCluster, pg_env, run_cli, write_runbook, tmp_path: Path
) -> None:
    hostile = "x' AS v; COMMIT; CREATE TABLE pwned(); SELECT 'y"
    query = 'query: {sql: "SELECT %s AS v", params: ["{{ params.n }}"]}'
    rb = write_runbook(
        HEAD + "params:\n  n: {type: string}\n"
        f"steps:\n  - id: echo\n    phase: detect\n    check: {pg_check(pg, query)}\n"
        '    expect: ["rows[0].v == params.n"]\n'
    )
    result = run_cli("run", str(rb), "-p", f"n={hostile}", env=pg_env)
    assert result.code == 0, result.text
    (ran,) = records(tmp_path / "logs")["step.result"]
    assert ran["fields"]["rows"] == [{"v": hostile}]
    assert not table_exists(pg, "pwned")


# --- a template in `sql` is refused before anything runs -------------------------------------
@pytest.mark.parametrize(
    ("operation", "sql"),
    [
        ("query", "SELECT * FROM t WHERE name = '{{ params.n }}'"),
        ("query", "SELECT 1 {% if params.n %}; DROP TABLE t{% endif %}"),
        ("execute", "DELETE FROM t WHERE name = '{{ params.n }}'"),
    ],
)
def test_a_template_in_sql_is_refused_with_its_line_and_a_pointer_to_params(
    operation: str, sql: str, run_cli, write_runbook
) -> None:
    kind = "action" if operation == "execute" else "check"
    rb = write_runbook(
        HEAD
        + "params:\n  n: {type: string, default: x}\n"
        + "steps:\n"
        + "  - id: q\n"
        + "    phase: mitigate\n"
        + f"    {kind}:\n"
        + "      postgres:\n"
        + "        host: 127.0.0.1\n"
        + f"        {operation}:\n"
        + f"          sql: {sql!r}\n"
    )
    result = run_cli("validate", str(rb))
    assert result.code == 2, result.text
    sql_line = rb.read_text().splitlines().index(f"          sql: {sql!r}") + 1
    location = (
        rf"{re.escape(str(rb))}:{sql_line}:\d+: steps\[0\]\.{kind}\.postgres\.{operation}\.sql:"
    )
    assert re.search(location, result.text), result.text
    assert "params:" in result.text and "%(name)s" in result.text
    assert run_cli("run", str(rb), "--yes").code == 2


# --- every built-in executor's guarantee, as audited -----------------------------------------
GUARANTEES = [
    ("shell", {"argv": ["ls"]}, False),
    ("http", {"url": "http://127.0.0.1/health"}, False),
    ("http", {"url": "http://127.0.0.1/health", "method": "HEAD"}, False),
    ("manual", {"prompt": "ok?"}, False),
    ("notify", {"message": "hi"}, False),
    ("postgres", {"connections": {}}, True),
    ("postgres", {"ready": {}}, True),
    ("postgres", {"query": {"sql": "SELECT 1"}}, False),
    ("postgres", {"execute": {"sql": "SELECT 1"}}, False),
    ("kubernetes", {"get": {"kind": "pods"}}, True),
    ("kubernetes", {"logs": {"pod": "a"}}, True),
    ("kubernetes", {"rollout_status": {"deployment": "a"}}, True),
    ("kubernetes", {"exec": {"pod": "a", "argv": ["touch", "x"]}}, False),
    ("kubernetes", {"scale": {"deployment": "a", "replicas": 1}}, False),
    ("aws_rds", {"describe_instance": {"instance": "db"}}, True),
    ("aws_rds", {"events": {"instance": "db"}}, True),
    ("aws_rds", {"reboot": {"instance": "db"}}, False),
    ("aws_rds", {"wait_available": {"instance": "db"}}, False),
    ("systemd", {"status": "nginx"}, True),
    ("systemd", {"is_active": ["nginx", "api"]}, True),
    ("systemd", {"restart": "nginx"}, False),
    ("systemd", {"status": "nginx", "systemctl": "/tmp/anything"}, False),
    ("journald", {"unit": "nginx", "since": "-1h"}, True),
    ("journald", {"unit": "nginx", "journalctl": "/tmp/anything"}, False),
]


@pytest.mark.parametrize(("executor", "config", "guaranteed"), GUARANTEES)
def test_each_built_in_executor_guarantees_exactly_what_it_documents(
    executor: str, config: dict[str, Any], guaranteed: bool
) -> None:
    spec = PluginRegistry.from_entry_points().executor(executor)
    assert spec.is_side_effect_free(config) is guaranteed


def test_a_dry_run_says_which_steps_are_planned_unknown_or_unplannable(
    run_cli, write_runbook, tmp_path
):
    """`planned` = this exact call would run; `unknown` = it depends on what a real run
    would find (a condition or a value from an earlier step); `error` = it cannot even be
    planned, and the dry-run goes on to show the rest."""
    rb = write_runbook(
        HEAD
        + """\
params:
  word: {type: string, default: "abc"}
steps:
  - {id: probe, phase: detect, action: {shell: {command: "echo hi"}}, register: {out: stdout}}
  - id: after
    phase: triage
    when: "steps.probe.status == 'passed'"
    action: {shell: {command: "echo after"}}
  - {id: uses, phase: triage, action: {shell: {command: "echo {{ steps.probe.stdout }}"}}}
  - {id: huge, phase: mitigate, action: {shell: {command: "echo {{ params.word * 100000000 }}"}}}
  - {id: plain, phase: mitigate, action: {shell: {command: "echo plain"}}}
"""
    )
    result = run_cli("run", str(rb), "--dry-run")
    assert "Traceback" not in result.text
    by_type = records(tmp_path / "logs")
    status = {d["step"]: d["status"] for d in by_type["step.finished"]}
    assert status == {
        "probe": "planned",
        "after": "unknown",
        "uses": "unknown",
        "huge": "error",
        "plain": "planned",
    }
    planned = {d["step"]: d for d in by_type["step.planned"]}
    assert planned["after"]["when"] == "steps.probe.status == 'passed'"
    assert planned["probe"]["when"] is None and planned["plain"]["when"] is None
    assert planned["uses"]["unknown"] == "depends on steps.probe.stdout"
    assert "huge" not in planned  # nothing to show: it could not be rendered
    message = next(d["message"] for d in by_type["step.finished"] if d["step"] == "huge")
    assert message.startswith("cannot plan step:") and "100000" in message
    assert run_cli("log", "verify", str(logs_in(tmp_path / "logs")[-1])).code == 0
