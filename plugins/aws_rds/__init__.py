"""The `aws_rds` executor: the seeds' `aws rds ...` commands as typed steps.

`describe_instance` and `events` only read, so a dry-run may run them;
`reboot` (optionally with failover), `failover_cluster` are actions behind a
confirmation, and `wait_available` polls until the instance is `available`
or its timeout passes. Credentials and region come from the standard boto3
chain, overridden by the target (`transport: aws`, `region`, `profile`) or
the step; `endpoint_url` (or AWS_ENDPOINT_URL) points it at `moto_server` or
a VPC endpoint. Result fields are flat (`status == 'available'`) so that
expectations read like the console. boto3 is imported inside `run()`.
"""

from __future__ import annotations

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

from ..operations import op_schema, operation

_INSTANCE = {"instance": prop("string", "DB instance identifier.", minLength=1)}
OPERATIONS: Mapping[str, Mapping[str, Any]] = {
    "describe_instance": {
        "description": "Status, engine, Multi-AZ, endpoint and pending modifications.",
        "properties": _INSTANCE,
        "required": ["instance"],
    },
    "events": {
        "description": "RDS events of the last N minutes (for one instance, or all).",
        "properties": {
            **_INSTANCE,
            "minutes": prop("integer", "How far back to look (default 60).", minimum=1),
        },
    },
    "reboot": {
        "description": "Reboot the instance; `force_failover` fails over a Multi-AZ instance.",
        "properties": {**_INSTANCE, "force_failover": prop("boolean", "Reboot with failover.")},
        "required": ["instance"],
    },
    "failover_cluster": {
        "description": "Fail an Aurora/Multi-AZ DB cluster over to another instance.",
        "properties": {
            "cluster": prop("string", "DB cluster identifier.", minLength=1),
            "target_instance": prop("string", "Instance to promote (default: RDS picks)."),
        },
        "required": ["cluster"],
    },
    "wait_available": {
        "description": "Poll until the instance is `available` (or `timeout` passes).",
        "properties": {
            **_INSTANCE,
            "timeout": prop("number", "Seconds to wait (default 600).", exclusiveMinimum=0),
            "interval": prop("number", "Seconds between polls (default 10).", exclusiveMinimum=0),
        },
        "required": ["instance"],
    },
}
COMMON: Mapping[str, Any] = {
    "target": prop("string", "Target (transport: aws) with region/profile/endpoint_url."),
    "region": prop("string", "AWS region, e.g. us-east-1 (default: the boto3 chain)."),
    "profile": prop("string", "Named profile from ~/.aws/config."),
    "endpoint_url": prop("string", "Endpoint override (moto_server, VPC endpoint)."),
}
SCHEMA = op_schema(
    "aws_rds",
    "Inspect and act on Amazon RDS instances and clusters with boto3.",
    OPERATIONS,
    COMMON,
)
RESULT_FIELDS: Mapping[str, str] = {
    "status": "DBInstanceStatus, e.g. 'available', 'rebooting' (cluster: Status)",
    "available": "status == 'available'",
    "engine / engine_version / instance_class": "as RDS reports them",
    "multi_az": "Multi-AZ deployment (bool)",
    "endpoint / address / port": "'address:port', and its parts",
    "pending_modifications": "PendingModifiedValues (dict, empty when none)",
    "events / count": "events: [{time, source, message, categories}] newest last",
    "waited": "wait_available: seconds spent waiting",
}
API_CALLS = {
    "describe_instance": "DescribeDBInstances",
    "events": "DescribeEvents",
    "reboot": "RebootDBInstance",
    "failover_cluster": "FailoverDBCluster",
    "wait_available": "DescribeDBInstances (poll until available)",
}


def session_settings(config: Mapping[str, Any], target: Any) -> dict[str, str]:
    """region/profile/endpoint_url: the step wins over the target; unset keys use the chain."""
    options = dict(getattr(target, "options", {}) or {})
    merged = {k: str(options[k]) for k in ("region", "profile", "endpoint_url") if k in options}
    merged.update({k: str(config[k]) for k in ("region", "profile", "endpoint_url") if k in config})
    return merged


def _api_args(name: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """The exact keyword arguments of the boto3 call, for the plan and the run."""
    if name in ("describe_instance", "wait_available"):
        return {"DBInstanceIdentifier": args["instance"]}
    if name == "events":
        out: dict[str, Any] = {"Duration": int(args.get("minutes", 60))}
        if args.get("instance"):
            out.update(SourceIdentifier=args["instance"], SourceType="db-instance")
        return out
    if name == "reboot":
        return {
            "DBInstanceIdentifier": args["instance"],
            "ForceFailover": bool(args.get("force_failover", False)),
        }
    out = {"DBClusterIdentifier": args["cluster"]}
    if args.get("target_instance"):
        out["TargetDBInstanceIdentifier"] = args["target_instance"]
    return out


def plan(config: Mapping[str, Any], ctx: PlanContext) -> PlannedCall:
    """`rds:RebootDBInstance DBInstanceIdentifier=db-1 ForceFailover=True (us-east-1)`."""
    name, args = operation(config, OPERATIONS)
    api = _api_args(name, args)
    settings = session_settings(config, ctx.target)
    shown = " ".join(f"{k}={v}" for k, v in api.items())
    where = settings.get("region", "default region")
    if "endpoint_url" in settings:
        where += f" via {settings['endpoint_url']}"
    detail = {"operation": name, "api": API_CALLS[name], "args": api, **settings}
    return PlannedCall(f"rds:{API_CALLS[name].split()[0]} {shown} ({where})", detail)


def run(config: Mapping[str, Any], ctx: ExecContext) -> StepResult:
    """Make the call(s); AWS errors become one clear line, never a traceback."""
    from .calls import call_operation, describe_error

    name, args = operation(config, OPERATIONS)
    detail = dict(plan(config, PlanContext(ctx.step_id, ctx.target)).detail)
    boto3 = import_optional("boto3", "aws")
    start = time.monotonic()
    try:
        client = _client(boto3, session_settings(config, ctx.target), ctx)
        fields, text = call_operation(client, name, args, _api_args(name, args), ctx)
    except Exception as exc:
        message = describe_error(exc, name, args, detail)
        if message is None:
            raise
        return StepResult.failure(message, elapsed=time.monotonic() - start, call=detail)
    return StepResult(
        ok=True, fields=fields, output=text, elapsed=time.monotonic() - start, call=detail
    )


def _client(boto3: Any, settings: Mapping[str, str], ctx: ExecContext) -> Any:
    """One RDS client per (profile, region, endpoint) per run, reused by later steps."""
    from botocore.config import Config

    key = "aws_rds:" + "|".join(f"{k}={v}" for k, v in sorted(settings.items()))
    client = ctx.resources.get(key)
    if client is None:
        session = boto3.session.Session(
            profile_name=settings.get("profile"), region_name=settings.get("region")
        )
        timeout = min(ctx.timeout or 60.0, 60.0)
        client = session.client(
            "rds",
            endpoint_url=settings.get("endpoint_url"),
            config=Config(
                connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 2}
            ),
        )
        ctx.resources[key] = client
    return client


def side_effect_free(config: Mapping[str, Any]) -> bool:
    """`describe_instance`, `events`: the fixed DescribeDBInstances/DescribeEvents API
    calls, whatever the arguments. Not `reboot` or `failover_cluster`, and not
    `wait_available`, which is not a check (it polls for up to `timeout`)."""
    named = [op for op in OPERATIONS if op in config]
    return bool(named) and set(named) <= {"describe_instance", "events"}


SPEC = ExecutorSpec(
    name="aws_rds",
    schema=SCHEMA,
    plan=plan,
    run=run,
    read_only=False,
    read_only_when=lambda config: "describe_instance" in config or "events" in config,
    side_effect_free_when=side_effect_free,
    default_expect=("healthy",),
    description="Amazon RDS: describe an instance and its events, reboot (with failover), "
    "fail a cluster over, wait until available; boto3, extra 'aws'.",
    result_fields={**RESULT_FIELDS, "healthy": "the operation's verdict (available, or done)"},
)


@hookimpl
def runbook_executors() -> list[ExecutorSpec]:
    """The aws_rds executor."""
    return [SPEC]
