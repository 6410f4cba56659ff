"""The `postgres` executor: the seeds' `psql`/`pg_isready` procedures as typed steps.

Read-only checks (`ready`, `connections`, `activity`, `replication`, `query`)
connect with `default_transaction_read_only=on` as a startup option and run in
a READ ONLY transaction, so the server itself refuses writes and a `COMMIT`
cannot escape into a writable transaction. Every step sends exactly one
statement, as a prepared statement (the extended protocol refuses a second
one), with values bound from `params:`; validation refuses `{{ }}` in `sql:`,
so a value can never become SQL. Writes are possible only through the
`execute` action, which the runner puts behind a confirmation: one committed
transaction, or with `transaction: false` autocommit for the statements that
refuse a transaction block (VACUUM, CREATE INDEX CONCURRENTLY). It never asks
for a read-write transaction, so it also runs on a hot standby
(`pg_wal_replay_resume()`), where the server still refuses writes. A dry-run runs
only the built-in checks (fixed SQL); free-form `query` SQL can still call
functions that act outside the transaction (pg_terminate_backend, dblink...),
so a dry-run plans it instead. Connection settings come from the step, then from
the target (`transport: postgres`), then libpq's own environment (PGHOST...).
The password is a secret param: it is never part of a plan, a result or an
error message (SDK messages are scrubbed of it). psycopg is imported inside
`run()` so loading the plugin costs nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from runbook.contract import (
    ExecContext,
    ExecutorSpec,
    PlanContext,
    PlannedCall,
    StepResult,
    hookimpl,
    import_optional,
    prop,
)

from ..operations import one_line, op_schema, operation, scrub
from .checks import CHECKS, run_check

DEFAULT_CONNECT_TIMEOUT = 5
CONNECTION_KEYS = ("dsn", "host", "port", "user", "dbname", "sslmode")

# Matches the start of a `{{ }}` or `{% %}` template: refused in `sql`, see NO_TEMPLATE.
TEMPLATE_START = r"\{\{|\{%"
NO_TEMPLATE = {
    "not": {"pattern": TEMPLATE_START},
    "errorMessage": "a template in `sql` would be pasted into the SQL unquoted; write a "
    "placeholder (%s or %(name)s) and give the value under `params:`, e.g. "
    "`sql: SELECT * FROM t WHERE name = %(name)s` with "
    "`params: {name: '{{ params.name }}'}`",
}
_SQL = {
    "sql": prop(
        "string",
        "Exactly one SQL statement, sent as a prepared statement. No `{{ }}` templates: "
        "use %s or %(name)s placeholders and `params` (a literal % is written %% then).",
        allOf=[NO_TEMPLATE],
    ),
    "params": {
        "description": "Values bound to the placeholders, never pasted into the SQL: a list "
        "for %s, a mapping for %(name)s; values may be templates.",
        "type": ["array", "object"],
    },
}
OPERATIONS: Mapping[str, Mapping[str, Any]] = {
    "ready": {"description": "pg_isready equivalent: is the server accepting connections?"},
    "connections": {"description": "Connections in use vs max_connections, and the percent."},
    "activity": {
        "description": "pg_stat_activity: counts by state, longest running query, lock waits.",
        "properties": {"min_duration": prop("number", "Ignore queries younger than this (s).")},
    },
    "replication": {"description": "pg_stat_replication: state and lag per replica."},
    "query": {
        "description": "Run a query in a READ ONLY transaction; rows come back as dicts.",
        "properties": {**_SQL, "max_rows": prop("integer", "Rows kept (default 1000).")},
        "required": ["sql"],
    },
    "execute": {
        "description": "Run a statement that acts (an action, confirmation-gated): by default "
        "in one transaction, committed; with `transaction: false` on its own, for statements "
        "that refuse a transaction block (VACUUM, CREATE INDEX CONCURRENTLY). It runs on a "
        "primary or a hot standby (e.g. `SELECT pg_wal_replay_resume()`); a standby refuses "
        "writes itself.",
        "properties": {
            **_SQL,
            "transaction": prop(
                "boolean",
                "Run `sql` inside a transaction that is committed (default true). false: "
                "autocommit, no transaction block, as VACUUM, CREATE INDEX CONCURRENTLY, "
                "CREATE DATABASE and ALTER SYSTEM require; what it did stays done even if "
                "it fails part-way.",
            ),
        },
        "required": ["sql"],
    },
}
COMMON: Mapping[str, Any] = {
    "target": prop("string", "Target (transport: postgres) holding connection settings."),
    "dsn": prop("string", "libpq connection string or URI; other keys override its parts."),
    "host": prop("string", "Server host name, IP address or socket directory."),
    "port": prop("integer", "Server port (default 5432)."),
    "user": prop("string", "Role to connect as."),
    "dbname": prop("string", "Database name."),
    "password": prop("string", "Password; pass a `secret: true` param, it is never printed."),
    "sslmode": prop("string", "libpq sslmode (disable, require, verify-full, ...)."),
    "connect_timeout": prop("number", "Seconds allowed to connect (default 5).", minimum=1),
}
SCHEMA = op_schema(
    "postgres",
    "Check or change a PostgreSQL server: readiness, connections, activity, replication, "
    "read-only queries, and (as an action) statements that write.",
    OPERATIONS,
    COMMON,
)
RESULT_FIELDS: Mapping[str, str] = {
    "ready / status / exit_code": "ready: accepting connections; status accepting|rejecting|"
    "no_response; exit_code as pg_isready's (0, 1, 2)",
    "used / max_connections / percent": "connections: in use, allowed, used percent",
    "by_state / total / longest / waiting_locks": "activity: counts per state, the longest "
    "running query {pid, seconds, state, query}, sessions waiting on a lock",
    "replicas / count / max_lag_bytes / max_lag_seconds / in_recovery": "replication: one "
    "entry per standby {name, client, state, sync_state, lag_bytes, lag_seconds}",
    "rows / row_count / columns": "query: rows as dicts (bounded by max_rows)",
    "status_message / row_count": "execute: the command tag (e.g. 'UPDATE 3') and rowcount",
}


def connection_settings(config: Mapping[str, Any], ctx_target: Any) -> dict[str, Any]:
    """Step keys override the target's options; missing keys fall back to libpq's env."""
    options = dict(getattr(ctx_target, "options", {}) or {})
    settings = {k: options[k] for k in (*CONNECTION_KEYS, "password") if k in options}
    settings.update({k: config[k] for k in (*CONNECTION_KEYS, "password") if k in config})
    return settings


def _where(settings: Mapping[str, Any]) -> str:
    """`user@host:port/db` for plans and messages; never the password."""
    if "dsn" in settings and not any(k in settings for k in ("host", "port")):
        from urllib.parse import urlsplit

        dsn = str(settings["dsn"])
        if "://" in dsn:
            parts = urlsplit(dsn)
            return f"{parts.username or ''}@{parts.hostname or ''}:{parts.port or 5432}{parts.path}"
        return "dsn(" + " ".join(p for p in dsn.split() if not p.startswith("password")) + ")"
    user = settings.get("user", "")
    host = settings.get("host", "$PGHOST")
    return f"{user}@{host}:{settings.get('port', 5432)}/{settings.get('dbname', '')}"


def plan(config: Mapping[str, Any], ctx: PlanContext) -> PlannedCall:
    """`postgres user@host:5432/db: replication` (plus the SQL for query/execute); no I/O."""
    name, args = operation(config, OPERATIONS)
    settings = connection_settings(config, ctx.target)
    detail: dict[str, Any] = {"operation": name, "server": _where(settings), **args}
    detail["read_only"] = name != "execute"
    if settings.get("password"):
        detail["password"] = "***"
    shown = f": {one_line(args['sql'])}" if "sql" in args else ""
    txn = " (read-only transaction)" if name == "query" else ""
    if name == "execute" and args.get("transaction") is False:
        txn = " (no transaction: autocommit)"
    return PlannedCall(f"postgres {detail['server']} {name}{shown}{txn}", detail)


def run(config: Mapping[str, Any], ctx: ExecContext) -> StepResult:
    """Connect, do the one operation, close; every failure is one line without the password."""
    name, args = operation(config, OPERATIONS)
    settings = connection_settings(config, ctx.target)
    call = dict(plan(config, _plan_ctx(ctx)).detail)
    psycopg = import_optional("psycopg", "pg")
    start = time.monotonic()
    timeout = float(config.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT))
    if ctx.timeout is not None:
        timeout = max(1.0, min(timeout, ctx.timeout))
    try:
        if name == "ready":
            fields = _ready(psycopg, settings, timeout)
        else:
            fields = _with_connection(psycopg, settings, timeout, name, args, ctx)
    except psycopg.Error as exc:
        reason = scrub(one_line(str(exc)), settings.get("password"))
        if name == "execute" and "cannot run inside a transaction block" in reason:
            reason += " (give the execute `transaction: false`)"
        where = _where(settings)
        return StepResult.failure(
            f"postgres {name} on {where} failed: {reason}",
            elapsed=time.monotonic() - start,
            call=call,
        )
    elapsed = time.monotonic() - start
    return StepResult(
        ok=True, fields=fields, output=_text(name, fields), elapsed=elapsed, call=call
    )


def _plan_ctx(ctx: ExecContext) -> PlanContext:
    return PlanContext(ctx.step_id, ctx.target)


def _connect(
    psycopg: Any,
    settings: Mapping[str, Any],
    timeout: float,
    read_only: bool = True,
    statement_ms: int | None = None,
) -> Any:
    kwargs = {k: v for k, v in settings.items() if k != "dsn"}
    dsn = str(settings.get("dsn", ""))
    return psycopg.connect(
        dsn,
        connect_timeout=max(1, int(timeout)),
        application_name="runbook",
        options=session_options(dsn, read_only, statement_ms),
        **kwargs,
    )


def session_options(dsn: str, read_only: bool, statement_ms: int | None = None) -> str:
    """libpq `options` (server settings at connection start): the dsn's own, then ours.

    Ours come last so they win over anything the dsn (or PGOPTIONS) says. Set at
    start-up, `default_transaction_read_only` holds before any statement runs:
    every transaction of the session, also one begun after a `COMMIT`, is
    read-only. Turning it off takes a statement of its own; a step sends one.
    """
    from psycopg.conninfo import conninfo_to_dict

    own = conninfo_to_dict(dsn).get("options") if dsn else None
    base = str(own if own is not None else os.environ.get("PGOPTIONS", ""))
    ours = []
    # on for checks; off for `execute`, so a read-only default from the dsn or PGOPTIONS
    # does not refuse the action the operator confirmed (a standby stays read-only anyway)
    ours.append(f"-c default_transaction_read_only={'on' if read_only else 'off'}")
    if statement_ms is not None:
        ours.append(f"-c statement_timeout={int(statement_ms)}")
    # a trailing backslash would escape the space before our first option
    return " ".join(part for part in (base.rstrip("\\").strip(), *ours) if part)


def _with_connection(
    psycopg: Any,
    settings: Mapping[str, Any],
    timeout: float,
    name: str,
    args: Mapping[str, Any],
    ctx: ExecContext,
) -> dict[str, Any]:
    from psycopg.rows import dict_row

    read_only = name != "execute"
    ms = int((ctx.timeout or 300) * 1000)
    with _connect(psycopg, settings, timeout, read_only, ms) as conn:
        conn.row_factory = dict_row
        if read_only:
            conn.read_only = True  # BEGIN READ ONLY, inside the read-only session
        elif args.get("transaction") is False:
            conn.autocommit = True  # no BEGIN: VACUUM and friends refuse a transaction block
        # An execute leaves the transaction mode to the server (no BEGIN READ WRITE): a hot
        # standby refuses that outright, while `SELECT pg_wal_replay_resume()` is fine
        # there; writes on a standby are still refused, by the server.
        if name in CHECKS:
            return run_check(conn, name, args)
        if name == "query":
            return {**_query(conn, args), "healthy": True}
        return {**_execute(conn, args), "healthy": True}


def _one_statement(conn: Any, args: Mapping[str, Any]) -> Any:
    """Send `sql` as one prepared statement, `params` bound: the server refuses a second
    statement ("cannot insert multiple commands into a prepared statement")."""
    return conn.execute(args["sql"], args.get("params") or None, prepare=True)


def _query(conn: Any, args: Mapping[str, Any]) -> dict[str, Any]:
    max_rows = int(args.get("max_rows", 1000))
    cur = _one_statement(conn, args)
    rows = [dict(r) for r in cur.fetchmany(max_rows)] if cur.description else []
    columns = [c.name for c in cur.description or []]
    return {
        "rows": [_plain_row(r) for r in rows],
        "row_count": len(rows),
        "columns": columns,
        "truncated": cur.description is not None and cur.fetchone() is not None,
    }


def _execute(conn: Any, args: Mapping[str, Any]) -> dict[str, Any]:
    cur = _one_statement(conn, args)
    return {"status_message": cur.statusmessage, "row_count": cur.rowcount}


def _plain_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-safe values so the row goes into the log and into `expect` as is."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        ok = isinstance(value, str | int | float | bool | type(None) | list | dict)
        out[key] = value if ok else str(value)
    return out


def _ready(psycopg: Any, settings: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    """pg_isready's verdict: a server that rejects our password is still *accepting*.

    libpq's PQping counts any answer that is not "starting up/shutting down" as
    OK; we do the same so `ready` tells "is Postgres up" apart from "may I log in".
    """
    start = time.monotonic()
    try:
        with _connect(psycopg, settings, timeout):
            status, note = "accepting", ""
    except psycopg.OperationalError as exc:
        note = scrub(one_line(str(exc)), settings.get("password"))
        status = _ping_status(note)
    codes = {"accepting": 0, "rejecting": 1, "no_response": 2}
    return {
        "healthy": status == "accepting",
        "ready": status == "accepting",
        "status": status,
        "exit_code": codes[status],
        "latency": time.monotonic() - start,
        "message": note,
        "server": _where(settings),
    }


def _ping_status(message: str) -> str:
    lowered = message.lower()
    if any(s in lowered for s in ("starting up", "shutting down", "recovery mode")):
        return "rejecting"
    answered = ("authentication failed", "does not exist", "no pg_hba.conf", "too many clients")
    if any(s in lowered for s in answered):
        return "accepting"
    return "no_response"


def _text(name: str, fields: Mapping[str, Any]) -> str:
    from .checks import describe

    return describe(name, fields)


def side_effect_free(config: Mapping[str, Any]) -> bool:
    """`ready`, `connections`, `activity` and `replication`: a connection and fixed
    catalog SQL in a read-only session, whatever the arguments. Not `query`: its SQL
    is the author's, and even a read-only transaction lets it call functions that act
    (pg_terminate_backend, pg_cancel_backend, dblink, set_config...). Not `execute`."""
    named = [op for op in OPERATIONS if op in config]
    return bool(named) and set(named) <= {"ready", *CHECKS}


SPEC = ExecutorSpec(
    name="postgres",
    schema=SCHEMA,
    plan=plan,
    run=run,
    read_only=False,
    read_only_when=lambda config: "execute" not in config,
    side_effect_free_when=side_effect_free,
    default_expect=("healthy",),
    description="PostgreSQL checks (ready, connections, activity, replication, read-only "
    "query) and an `execute` action for statements that write; psycopg, extra 'pg'.",
    result_fields={**RESULT_FIELDS, "healthy": "the operation's own verdict (see docs)"},
)


@hookimpl
def runbook_executors() -> list[ExecutorSpec]:
    """The postgres executor."""
    return [SPEC]
