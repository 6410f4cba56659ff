"""The built-in PostgreSQL checks: the catalog queries behind `connections`, `activity`
and `replication`, and the one-paragraph text a responder reads.

The SQL is kept here, in one place, because it is what reviewers check against
the PostgreSQL docs (column names moved between versions); it targets 10+.
Lag is computed on the server (`pg_wal_lsn_diff`, `replay_lag`) so the numbers
are the server's own, not a client-side guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CONNECTIONS_SQL = """
SELECT count(*) AS used,
       current_setting('max_connections')::int AS max_connections,
       current_setting('superuser_reserved_connections')::int AS reserved
FROM pg_stat_activity WHERE backend_type = 'client backend'
"""

ACTIVITY_SQL = """
SELECT pid, usename, datname, state, wait_event_type, wait_event,
       EXTRACT(EPOCH FROM (now() - query_start))::float8 AS seconds,
       cardinality(pg_blocking_pids(pid)) AS blocked_by,
       left(query, 200) AS query
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
"""

REPLICATION_SQL = """
SELECT application_name AS name, host(client_addr) AS client, state, sync_state,
       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS lag_bytes,
       EXTRACT(EPOCH FROM replay_lag)::float8 AS lag_seconds,
       sent_lsn::text, replay_lsn::text
FROM pg_stat_replication ORDER BY application_name
"""

STANDBY_SQL = """
SELECT pg_is_in_recovery() AS in_recovery,
       EXTRACT(EPOCH FROM (now() - pg_last_xact_replay_timestamp()))::float8 AS replay_age
"""

CHECKS = ("connections", "activity", "replication")


def run_check(conn: Any, name: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """Run one built-in check on an open (read-only) connection."""
    if name == "connections":
        return connections(conn)
    if name == "activity":
        return activity(conn, float(args.get("min_duration", 0)))
    return replication(conn)


def connections(conn: Any) -> dict[str, Any]:
    row = conn.execute(CONNECTIONS_SQL).fetchone()
    used, limit = int(row["used"]), int(row["max_connections"])
    percent = round(100.0 * used / limit, 1) if limit else 0.0
    return {
        "used": used,
        "max_connections": limit,
        "reserved": int(row["reserved"]),
        "available": max(limit - int(row["reserved"]) - used, 0),
        "percent": percent,
        "healthy": percent < 90.0,
    }


def activity(conn: Any, min_duration: float) -> dict[str, Any]:
    rows = [dict(r) for r in conn.execute(ACTIVITY_SQL).fetchall()]
    by_state: dict[str, int] = {}
    for row in rows:
        state = row["state"] or "unknown"
        by_state[state] = by_state.get(state, 0) + 1
    running = [r for r in rows if r["state"] == "active" and (r["seconds"] or 0) >= min_duration]
    longest = max(running, key=lambda r: r["seconds"] or 0.0, default=None)
    waiting = [r for r in rows if r["wait_event_type"] == "Lock"]
    return {
        "total": len(rows),
        "by_state": by_state,
        "active": by_state.get("active", 0),
        "idle_in_transaction": by_state.get("idle in transaction", 0),
        "longest": None if longest is None else _session(longest),
        "longest_seconds": 0.0 if longest is None else round(longest["seconds"] or 0.0, 3),
        "waiting_locks": len(waiting),
        "blocked": [_session(r) for r in rows if r["blocked_by"]],
        "healthy": not waiting,
    }


def _session(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "pid": row["pid"],
        "user": row["usename"],
        "database": row["datname"],
        "state": row["state"],
        "seconds": round(row["seconds"] or 0.0, 3),
        "wait": row["wait_event_type"],
        "query": row["query"],
    }


def replication(conn: Any) -> dict[str, Any]:
    standby = conn.execute(STANDBY_SQL).fetchone()
    if standby["in_recovery"]:
        age = standby["replay_age"]
        return {
            "in_recovery": True,
            "replicas": [],
            "count": 0,
            "streaming": 0,
            "max_lag_bytes": 0,
            "max_lag_seconds": round(age, 3) if age is not None else None,
            "healthy": True,
        }
    replicas = []
    for row in conn.execute(REPLICATION_SQL).fetchall():
        entry = dict(row)
        entry["lag_bytes"] = int(entry["lag_bytes"] or 0)
        entry["lag_seconds"] = round(entry["lag_seconds"] or 0.0, 3)
        replicas.append(entry)
    streaming = sum(1 for r in replicas if r["state"] == "streaming")
    return {
        "in_recovery": False,
        "replicas": replicas,
        "count": len(replicas),
        "streaming": streaming,
        "max_lag_bytes": max((r["lag_bytes"] for r in replicas), default=0),
        "max_lag_seconds": max((r["lag_seconds"] for r in replicas), default=0.0),
        "healthy": streaming == len(replicas),
    }


def describe(name: str, fields: Mapping[str, Any]) -> str:
    """One short paragraph for the console and the post-mortem."""
    if name == "ready":
        return f"{fields['server']} - {fields['status'].replace('_', ' ')}"
    if name == "connections":
        return (
            f"{fields['used']}/{fields['max_connections']} connections used "
            f"({fields['percent']}%), {fields['available']} available"
        )
    if name == "activity":
        states = ", ".join(f"{k}={v}" for k, v in sorted(fields["by_state"].items()))
        longest = fields["longest"]
        lines = [
            f"{fields['total']} sessions ({states or 'none'}); "
            f"{fields['waiting_locks']} waiting on locks"
        ]
        if longest:
            lines.append(f"longest: pid {longest['pid']} {longest['seconds']}s {longest['query']}")
        return "\n".join(lines)
    if name == "replication":
        if fields["in_recovery"]:
            age = fields["max_lag_seconds"]
            when = "never" if age is None else f"{age}s ago"
            return f"this server is a standby; last transaction replayed {when}"
        lines = [f"{fields['streaming']}/{fields['count']} replicas streaming"]
        lines += [
            f"{r['name']} {r['client']} {r['state']} lag {r['lag_bytes']} bytes {r['lag_seconds']}s"
            for r in fields["replicas"]
        ]
        return "\n".join(lines)
    if name == "query":
        return "\n".join(str(row) for row in fields["rows"][:50])
    return str(fields.get("status_message", ""))
