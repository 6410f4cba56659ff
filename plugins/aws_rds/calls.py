"""What the aws_rds operations do with a boto3 RDS client, and how AWS errors read.

Kept apart from `aws_rds.py` so that module stays import-cheap: this one talks
to botocore types, and is imported only once a step really runs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from runbook.contract import ExecContext

_CREDENTIAL_CODES = {
    "ExpiredToken": "AWS credentials have expired (ExpiredToken): refresh them "
    "(aws sso login / new session token) and re-run",
    "ExpiredTokenException": "AWS credentials have expired: refresh them and re-run",
    "RequestExpired": "AWS request expired: check the clock and the session token",
    "InvalidClientTokenId": "AWS rejected the access key (InvalidClientTokenId): "
    "check AWS_ACCESS_KEY_ID / the profile",
    "SignatureDoesNotMatch": "AWS rejected the secret key (SignatureDoesNotMatch)",
    "UnrecognizedClientException": "AWS did not recognise the credentials",
}


def call_operation(
    client: Any, name: str, args: Mapping[str, Any], api: Mapping[str, Any], ctx: ExecContext
) -> tuple[dict[str, Any], str]:
    """Run one operation; return (result fields, text for the console)."""
    if name == "describe_instance":
        fields = instance_fields(client.describe_db_instances(**api)["DBInstances"][0])
        return fields, _instance_text(fields)
    if name == "events":
        return _events(client.describe_events(**api))
    if name == "reboot":
        fields = instance_fields(client.reboot_db_instance(**api)["DBInstance"])
        return {**fields, "healthy": True}, "reboot requested: " + _instance_text(fields)
    if name == "failover_cluster":
        cluster = client.failover_db_cluster(**api)["DBCluster"]
        fields = {
            "status": cluster.get("Status"),
            "cluster": cluster.get("DBClusterIdentifier"),
            "writer": next(
                (
                    m["DBInstanceIdentifier"]
                    for m in cluster.get("DBClusterMembers", [])
                    if m.get("IsClusterWriter")
                ),
                None,
            ),
            "healthy": True,
        }
        return fields, f"failover requested for {fields['cluster']} (writer {fields['writer']})"
    return _wait_available(client, api, args, ctx)


def instance_fields(db: Mapping[str, Any]) -> dict[str, Any]:
    endpoint = db.get("Endpoint") or {}
    address, port = endpoint.get("Address"), endpoint.get("Port")
    status = db.get("DBInstanceStatus")
    return {
        "instance": db.get("DBInstanceIdentifier"),
        "status": status,
        "available": status == "available",
        "healthy": status == "available",
        "engine": db.get("Engine"),
        "engine_version": db.get("EngineVersion"),
        "instance_class": db.get("DBInstanceClass"),
        "multi_az": bool(db.get("MultiAZ", False)),
        "endpoint": f"{address}:{port}" if address else None,
        "address": address,
        "port": port,
        "availability_zone": db.get("AvailabilityZone"),
        "pending_modifications": _plain(db.get("PendingModifiedValues") or {}),
        "cluster": db.get("DBClusterIdentifier"),
    }


def _instance_text(f: Mapping[str, Any]) -> str:
    pending = f["pending_modifications"]
    return (
        f"{f['instance']}: {f['status']} ({f['engine']} {f['engine_version']}, "
        f"{f['instance_class']}, multi-AZ {'yes' if f['multi_az'] else 'no'}) "
        f"endpoint {f['endpoint']}" + (f"; pending: {pending}" if pending else "")
    )


def _events(response: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    events = [
        {
            "time": _plain(e.get("Date")),
            "source": e.get("SourceIdentifier"),
            "type": e.get("SourceType"),
            "message": e.get("Message"),
            "categories": list(e.get("EventCategories", [])),
        }
        for e in response.get("Events", [])
    ]
    text = "\n".join(f"{e['time']} {e['source']}: {e['message']}" for e in events)
    return {"events": events, "count": len(events), "healthy": True}, text or "no events"


def _wait_available(
    client: Any, api: Mapping[str, Any], args: Mapping[str, Any], ctx: ExecContext
) -> tuple[dict[str, Any], str]:
    """Poll DescribeDBInstances; the step's own timeout bounds the wait as well."""
    timeout = float(args.get("timeout", 600))
    if ctx.timeout is not None:
        timeout = min(timeout, ctx.timeout)
    interval = float(args.get("interval", 10))
    start = time.monotonic()
    while True:
        fields = instance_fields(client.describe_db_instances(**api)["DBInstances"][0])
        waited = time.monotonic() - start
        if fields["available"] or waited + interval > timeout or ctx.cancel.is_set():
            break
        ctx.progress(f"{fields['instance']} is {fields['status']}")
        ctx.cancel.wait(interval)
    fields["waited"] = round(waited, 3)
    verdict = "available" if fields["available"] else f"still {fields['status']}"
    return fields, f"{fields['instance']} {verdict} after {waited:.1f}s"


def _plain(value: Any) -> Any:
    """JSON-safe: datetimes as UTC ISO text, containers recursively."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def describe_error(
    exc: Exception, name: str, args: Mapping[str, Any], detail: Mapping[str, Any]
) -> str | None:
    """One line for an AWS failure, or None when `exc` is not an AWS/botocore error."""
    from botocore import exceptions as bx

    region = detail.get("region") or "the default region"
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
        return (
            f"AWS credentials not found for rds {name}: set AWS_PROFILE or "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or give the target a profile"
        )
    if isinstance(exc, bx.NoRegionError):
        return f"no AWS region for rds {name}: set `region` on the step or target, or AWS_REGION"
    if isinstance(exc, bx.ProfileNotFound):
        return f"AWS profile not found: {exc.kwargs.get('profile')}"
    if isinstance(exc, bx.EndpointConnectionError | bx.ConnectTimeoutError):
        return f"cannot reach the RDS API at {exc.kwargs.get('endpoint_url')}: {exc}"
    if isinstance(exc, bx.ClientError):
        return _client_error(exc, name, args, region)
    if isinstance(exc, bx.BotoCoreError):
        return f"rds {name} failed: {exc}"
    return None


def _client_error(exc: Any, name: str, args: Mapping[str, Any], region: str) -> str:
    error = exc.response.get("Error", {})
    code, message = str(error.get("Code", "")), str(error.get("Message", ""))
    if code in _CREDENTIAL_CODES:
        return _CREDENTIAL_CODES[code]
    if code == "DBInstanceNotFound" or code == "DBInstanceNotFoundFault":
        return f"DB instance '{args.get('instance')}' not found in {region}"
    if code in ("DBClusterNotFoundFault", "DBClusterNotFound"):
        return f"DB cluster '{args.get('cluster')}' not found in {region}"
    if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
        return f"access denied for rds {name}: {message}"
    return f"rds {name} failed: {code}: {message}"
