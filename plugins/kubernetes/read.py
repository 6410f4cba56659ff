"""The kubernetes executor's read operations: get (with a pod readiness summary), logs, top.

Objects are summarised into small JSON-safe dicts (name, ready, restarts, ...),
the shape `expect` expressions and the incident log want, instead of the
client's model objects. A readiness summary counts a pod as crash-looping when
any container waits in CrashLoopBackOff, which is what a responder looks for.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from runbook.contract import ExecContext, compile_pattern

from .client import Cluster

MAX_LOG_PODS = 10
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(text: str) -> int:
    """'5m' -> 300; kubectl's --since syntax (one unit)."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", str(text))
    if not match:
        raise ValueError(f"invalid duration '{text}': use e.g. 30s, 5m, 1h")
    return int(match.group(1)) * _UNITS[match.group(2) or "s"]


def deployment_selector(cluster: Cluster, name: str) -> str:
    dep = cluster.apps().read_namespaced_deployment(
        name, cluster.namespace, _request_timeout=cluster.timeout
    )
    labels = dep.spec.selector.match_labels or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def list_pods(cluster: Cluster, args: Mapping[str, Any]) -> list[Any]:
    selector = args.get("selector") or ""
    if args.get("deployment"):
        own = deployment_selector(cluster, args["deployment"])
        selector = ",".join(filter(None, [own, selector]))
    kwargs = {"label_selector": selector or None, "field_selector": args.get("field_selector")}
    pods = (
        cluster.core()
        .list_namespaced_pod(
            cluster.namespace,
            _request_timeout=cluster.timeout,
            **{k: v for k, v in kwargs.items() if v},
        )
        .items
    )
    return [p for p in pods if not args.get("name") or p.metadata.name == args["name"]]


def pod_summary(pod: Any) -> dict[str, Any]:
    statuses = pod.status.container_statuses or []
    waiting = [s.state.waiting.reason for s in statuses if s.state and s.state.waiting]
    return {
        "name": pod.metadata.name,
        "phase": pod.status.phase,
        "ready": bool(statuses) and all(s.ready for s in statuses),
        "restarts": sum(s.restart_count or 0 for s in statuses),
        "crash_looping": "CrashLoopBackOff" in waiting,
        "waiting": waiting,
        "node": pod.spec.node_name,
    }


def get(cluster: Cluster, args: Mapping[str, Any], ctx: ExecContext) -> tuple[dict[str, Any], str]:
    kind = args["kind"]
    if kind == "pods":
        items = [pod_summary(p) for p in list_pods(cluster, args)]
        return _readiness(items)
    items = _list_other(cluster, kind, args)
    text = "\n".join(" ".join(str(v) for v in item.values()) for item in items)
    fields = {
        "items": items,
        "count": len(items),
        "names": [i["name"] for i in items],
        "healthy": bool(items) or kind == "events",
    }
    return fields, text or f"no {kind}"


def _readiness(items: list[dict[str, Any]]) -> tuple[dict[str, Any], str]:
    phases: dict[str, int] = {}
    for item in items:
        phases[item["phase"]] = phases.get(item["phase"], 0) + 1
    ready = sum(1 for i in items if i["ready"])
    crashing = [i["name"] for i in items if i["crash_looping"]]
    fields = {
        "items": items,
        "count": len(items),
        "names": [i["name"] for i in items],
        "ready": ready,
        "total": len(items),
        "restarts": sum(i["restarts"] for i in items),
        "crash_looping": crashing,
        "phases": phases,
        "healthy": bool(items) and ready == len(items),
    }
    lines = [
        f"{ready}/{len(items)} pods ready, {fields['restarts']} restarts"
        + (f", crash-looping: {', '.join(crashing)}" if crashing else "")
    ]
    lines += [
        f"{i['name']} {'1' if i['ready'] else '0'}/1 {i['phase']} restarts={i['restarts']}"
        + (f" {','.join(i['waiting'])}" if i["waiting"] else "")
        for i in items
    ]
    return fields, "\n".join(lines)


def _list_other(cluster: Cluster, kind: str, args: Mapping[str, Any]) -> list[dict[str, Any]]:
    kwargs = {
        k: v
        for k, v in {
            "label_selector": args.get("selector"),
            "field_selector": args.get("field_selector"),
        }.items()
        if v
    }
    if kind == "deployments":
        found = (
            cluster.apps()
            .list_namespaced_deployment(
                cluster.namespace, _request_timeout=cluster.timeout, **kwargs
            )
            .items
        )
        items = [deployment_summary(d) for d in found]
    elif kind == "replicasets":
        found = (
            cluster.apps()
            .list_namespaced_replica_set(
                cluster.namespace, _request_timeout=cluster.timeout, **kwargs
            )
            .items
        )
        items = [_rs_summary(r) for r in found]
        if args.get("deployment"):
            items = [r for r in items if r["owner"] == args["deployment"]]
    else:
        found = (
            cluster.core()
            .list_namespaced_event(cluster.namespace, _request_timeout=cluster.timeout, **kwargs)
            .items
        )
        items = [_event_summary(e) for e in found]
        wanted = args.get("name") or args.get("deployment")
        return [e for e in items if not wanted or e["object"].endswith("/" + wanted)]
    return [i for i in items if not args.get("name") or i["name"] == args["name"]]


def deployment_summary(dep: Any) -> dict[str, Any]:
    status = dep.status
    return {
        "name": dep.metadata.name,
        "replicas": dep.spec.replicas,
        "ready": status.ready_replicas or 0,
        "updated": status.updated_replicas or 0,
        "available": status.available_replicas or 0,
        "paused": bool(dep.spec.paused),
        "revision": (dep.metadata.annotations or {}).get("deployment.kubernetes.io/revision"),
        "images": [c.image for c in dep.spec.template.spec.containers],
    }


def _rs_summary(rs: Any) -> dict[str, Any]:
    owners = rs.metadata.owner_references or []
    return {
        "name": rs.metadata.name,
        "revision": int(
            (rs.metadata.annotations or {}).get("deployment.kubernetes.io/revision", 0)
        ),
        "owner": owners[0].name if owners else None,
        "replicas": rs.spec.replicas,
        "images": [c.image for c in rs.spec.template.spec.containers],
    }


def _event_summary(event: Any) -> dict[str, Any]:
    obj = event.involved_object
    when = event.last_timestamp or event.event_time
    return {
        "name": event.metadata.name,
        "type": event.type,
        "reason": event.reason,
        "object": f"{(obj.kind or '').lower()}/{obj.name}",
        "message": event.message,
        "count": event.count,
        "time": when.isoformat() if when else None,
    }


def logs(cluster: Cluster, args: Mapping[str, Any], ctx: ExecContext) -> tuple[dict[str, Any], str]:
    """Logs of one pod, or of each pod of a deployment prefixed `[pod/NAME]` (kubectl --prefix)."""
    # RE2 (linear time): a grep cannot hang on the lines a pod writes; a bad one fails first
    pattern = compile_pattern(str(args["grep"])) if args.get("grep") else None
    names = (
        [args["pod"]]
        if args.get("pod")
        else [p.metadata.name for p in list_pods(cluster, {"deployment": args["deployment"]})][
            :MAX_LOG_PODS
        ]
    )
    kwargs: dict[str, Any] = {"_request_timeout": cluster.timeout}
    if args.get("container"):
        kwargs["container"] = args["container"]
    if "tail" in args:
        kwargs["tail_lines"] = int(args["tail"])
    if args.get("since"):
        kwargs["since_seconds"] = seconds(args["since"])
    lines: list[str] = []
    for name in names:
        text = cluster.core().read_namespaced_pod_log(name, cluster.namespace, **kwargs)
        prefix = f"[pod/{name}] " if len(names) > 1 or args.get("deployment") else ""
        lines += [prefix + line for line in str(text or "").splitlines()]
    matches = [line for line in lines if pattern is None or pattern.search(line)]
    text = "\n".join(matches)
    fields: dict[str, Any] = {
        "pods": names,
        "lines": len(lines),
        "matches": len(matches),
        "text": text,
        "healthy": bool(names),
    }
    return fields, text


def top(cluster: Cluster, args: Mapping[str, Any], ctx: ExecContext) -> tuple[dict[str, Any], str]:
    from kubernetes.client.exceptions import ApiException

    kwargs = {
        k: v
        for k, v in {
            "label_selector": args.get("selector"),
            "field_selector": args.get("field_selector"),
        }.items()
        if v
    }
    try:
        found = cluster.custom().list_namespaced_custom_object(
            "metrics.k8s.io",
            "v1beta1",
            cluster.namespace,
            "pods",
            _request_timeout=cluster.timeout,
            **kwargs,
        )
    except ApiException as exc:
        if exc.status not in (404, 503):
            raise
        note = (
            "metrics-server not available: the metrics.k8s.io API is not served by this "
            "cluster (install metrics-server to use top)"
        )
        return {"available": False, "pods": [], "count": 0, "healthy": False, "reason": note}, note
    pods = [_usage(item) for item in found.get("items", [])]
    text = "\n".join(
        f"{p['name']} {p['cpu_millicores']}m {p['memory_bytes'] // 2**20}Mi" for p in pods
    )
    fields = {
        "available": True,
        "pods": pods,
        "count": len(pods),
        "healthy": True,
        "cpu_millicores": sum(p["cpu_millicores"] for p in pods),
        "memory_bytes": sum(p["memory_bytes"] for p in pods),
    }
    return fields, text or "no pod metrics"


def _usage(item: Mapping[str, Any]) -> dict[str, Any]:
    from kubernetes.utils.quantity import parse_quantity

    cpu = sum(parse_quantity(c["usage"]["cpu"]) for c in item.get("containers", []))
    mem = sum(parse_quantity(c["usage"]["memory"]) for c in item.get("containers", []))
    return {
        "name": item["metadata"]["name"],
        "cpu_millicores": int(cpu * 1000),
        "memory_bytes": int(mem),
    }
