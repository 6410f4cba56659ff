"""The kubernetes executor's read operations: get (with a pod readiness summary), logs,
describe, top.

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


def selector_string(selector: Any) -> str:
    """A LabelSelector (matchLabels and matchExpressions) as a label-selector query."""
    if selector is None:
        return ""
    terms = [f"{k}={v}" for k, v in sorted((selector.match_labels or {}).items())]
    for expr in selector.match_expressions or []:
        values = ",".join(expr.values or [])
        terms.append(
            {
                "In": f"{expr.key} in ({values})",
                "NotIn": f"{expr.key} notin ({values})",
                "Exists": expr.key,
                "DoesNotExist": f"!{expr.key}",
            }[expr.operator]
        )
    return ",".join(terms)


DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"


def default_container(pod: Any) -> str:
    """kubectl's container when none is named: the pod's default-container annotation when
    it names one of its containers, else the first container."""
    names = [c.name for c in pod.spec.containers]
    named = (pod.metadata.annotations or {}).get(DEFAULT_CONTAINER)
    return str(named if named in names else names[0])


def read_pod(cluster: Cluster, name: str) -> Any:
    return cluster.core().read_namespaced_pod(
        name, cluster.namespace, _request_timeout=cluster.timeout
    )


def read_deployment(cluster: Cluster, name: str) -> Any:
    return cluster.apps().read_namespaced_deployment(
        name, cluster.namespace, _request_timeout=cluster.timeout
    )


def deployment_selector(cluster: Cluster, name: str) -> str:
    return selector_string(read_deployment(cluster, name).spec.selector)


def controlled_by(obj: Any, owner: Any) -> bool:
    """apimachinery's IsControlledBy: the controller owner reference carries the owner's uid
    (a name is not enough: a deleted deployment's leftovers keep the name)."""
    refs = obj.metadata.owner_references or []
    return any(r.controller and r.uid == owner.metadata.uid for r in refs)


def owned_replica_sets(cluster: Cluster, dep: Any) -> list[Any]:
    """The deployment's ReplicaSets as kubectl finds them: listed by the deployment's
    selector, kept when the deployment (by uid) is their controller."""
    found = (
        cluster.apps()
        .list_namespaced_replica_set(
            cluster.namespace,
            label_selector=selector_string(dep.spec.selector) or None,
            _request_timeout=cluster.timeout,
        )
        .items
    )
    return [rs for rs in found if controlled_by(rs, dep)]


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
        if args.get("deployment"):
            dep = read_deployment(cluster, args["deployment"])
            found = [rs for rs in found if controlled_by(rs, dep)]
        items = [_rs_summary(r) for r in found]
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
    owners = [o for o in rs.metadata.owner_references or [] if o.controller]
    return {
        "name": rs.metadata.name,
        "revision": int(
            (rs.metadata.annotations or {}).get("deployment.kubernetes.io/revision", 0)
        ),
        "owner": owners[0].name if owners else None,
        "owner_uid": owners[0].uid if owners else None,
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
    """Logs of one pod, or of each pod of a deployment prefixed `[pod/NAME]` (kubectl --prefix).

    `previous: true` reads the previous (crashed) container instance, as `kubectl logs
    --previous`: for one pod a missing previous container is the API's error; across a
    deployment the pods that never restarted are listed in `no_previous` and skipped.
    """
    from kubernetes.client.exceptions import ApiException

    # RE2 (linear time): a grep cannot hang on the lines a pod writes; a bad one fails first
    pattern = compile_pattern(str(args["grep"])) if args.get("grep") else None
    pods = (
        [read_pod(cluster, args["pod"])]
        if args.get("pod")
        else list_pods(cluster, {"deployment": args["deployment"]})[:MAX_LOG_PODS]
    )
    names = [p.metadata.name for p in pods]
    previous = bool(args.get("previous"))
    kwargs: dict[str, Any] = {"_request_timeout": cluster.timeout}
    if "tail" in args:
        kwargs["tail_lines"] = int(args["tail"])
    if args.get("since"):
        kwargs["since_seconds"] = seconds(args["since"])
    if previous:
        kwargs["previous"] = True
    lines: list[str] = []
    read: list[str] = []
    no_previous: list[str] = []
    for pod in pods:
        name = pod.metadata.name
        container = args.get("container") or default_container(pod)
        try:
            text = cluster.core().read_namespaced_pod_log(
                name, cluster.namespace, container=container, **kwargs
            )
        except ApiException as exc:
            if previous and args.get("deployment") and exc.status == 400:
                no_previous.append(name)
                continue
            raise
        read.append(name)
        prefix = f"[pod/{name}] " if len(names) > 1 or args.get("deployment") else ""
        lines += [prefix + line for line in str(text or "").splitlines()]
    matches = [line for line in lines if pattern is None or pattern.search(line)]
    text = "\n".join(matches)
    fields: dict[str, Any] = {
        "pods": read,
        "lines": len(lines),
        "matches": len(matches),
        "text": text,
        "previous": previous,
        "healthy": bool(read),
    }
    if previous:
        fields["no_previous"] = no_previous
    if not text and no_previous:
        text = f"no previous container in: {', '.join(no_previous)}"
    return fields, text


def describe(
    cluster: Cluster, args: Mapping[str, Any], ctx: ExecContext
) -> tuple[dict[str, Any], str]:
    """`kubectl describe pod`, as data: per container the image, requests/limits, probes,
    state and last state (reason, exit code: OOMKilled shows here), ready, restart count;
    per pod the phase, node, conditions and the events involving it."""
    pods = [read_pod(cluster, args["pod"])] if args.get("pod") else list_pods(cluster, args)
    events = (
        cluster.core()
        .list_namespaced_event(cluster.namespace, _request_timeout=cluster.timeout)
        .items
    )
    described = [_describe_pod(pod, events) for pod in pods]
    containers = [c for p in described for c in p["containers"]]
    last = sorted({c["last_reason"] for c in containers if c["last_reason"]})
    fields: dict[str, Any] = {
        "pods": described,
        "count": len(described),
        "names": [p["name"] for p in described],
        "restarts": sum(c["restarts"] for c in containers),
        "oom_killed": any("OOMKilled" in (c["last_reason"], c["reason"]) for c in containers),
        "last_reasons": last,
        "crash_looping": [p["name"] for p in described if p["crash_looping"]],
        "images": sorted({c["image"] for c in containers}),
        "warnings": [e for p in described for e in p["events"] if e["type"] == "Warning"],
        "healthy": bool(described) and all(c["ready"] for c in containers),
    }
    return fields, "\n\n".join(_describe_text(p) for p in described) or "no pods"


def _describe_pod(pod: Any, events: list[Any]) -> dict[str, Any]:
    statuses = {s.name: s for s in pod.status.container_statuses or []}
    containers = [_describe_container(c, statuses.get(c.name)) for c in pod.spec.containers]
    mine = [
        _event_summary(e)
        for e in events
        if e.involved_object.name == pod.metadata.name
        and (e.involved_object.kind or "Pod") == "Pod"
        and e.involved_object.uid in (None, pod.metadata.uid)
    ]
    owners = [o for o in pod.metadata.owner_references or [] if o.controller]
    return {
        "name": pod.metadata.name,
        "phase": pod.status.phase,
        "node": pod.spec.node_name,
        "ip": pod.status.pod_ip,
        "started": pod.status.start_time.isoformat() if pod.status.start_time else None,
        "controlled_by": f"{owners[0].kind}/{owners[0].name}" if owners else None,
        "qos_class": pod.status.qos_class,
        "conditions": {c.type: c.status for c in pod.status.conditions or []},
        "containers": containers,
        "restarts": sum(c["restarts"] for c in containers),
        "crash_looping": any(c["reason"] == "CrashLoopBackOff" for c in containers),
        "events": mine,
    }


def _state(state: Any) -> tuple[str | None, dict[str, Any]]:
    """(Running|Waiting|Terminated, details) of a V1ContainerState."""
    if state is None:
        return None, {}
    for name in ("running", "waiting", "terminated"):
        value = getattr(state, name, None)
        if value is not None:
            detail = {
                "reason": getattr(value, "reason", None),
                "message": getattr(value, "message", None),
                "exit_code": getattr(value, "exit_code", None),
                "started_at": _time(getattr(value, "started_at", None)),
                "finished_at": _time(getattr(value, "finished_at", None)),
            }
            return name.capitalize(), detail
    return None, {}


def _time(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _describe_container(spec: Any, status: Any) -> dict[str, Any]:
    state, now = _state(status.state if status else None)
    last, before = _state(status.last_state if status else None)
    resources = spec.resources
    return {
        "name": spec.name,
        "image": spec.image,
        "ports": [f"{p.container_port}/{p.protocol or 'TCP'}" for p in spec.ports or []],
        "limits": dict(resources.limits or {}) if resources else {},
        "requests": dict(resources.requests or {}) if resources else {},
        "liveness": _probe(spec.liveness_probe),
        "readiness": _probe(spec.readiness_probe),
        "startup": _probe(spec.startup_probe),
        "state": state,
        "reason": now.get("reason"),
        "exit_code": now.get("exit_code"),
        "last_state": last,
        "last_reason": before.get("reason"),
        "last_exit_code": before.get("exit_code"),
        "last_finished_at": before.get("finished_at"),
        "ready": bool(status and status.ready),
        "restarts": int(status.restart_count or 0) if status else 0,
    }


def _probe(probe: Any) -> str | None:
    """A probe as kubectl describe prints it: `http-get http://:8080/healthz delay=0s
    timeout=1s period=10s #success=1 #failure=3`."""
    if probe is None:
        return None
    if probe.http_get is not None:
        get = probe.http_get
        scheme = (get.scheme or "HTTP").lower()
        what = f"http-get {scheme}://{get.host or ''}:{get.port}{get.path or ''}"
    elif probe.tcp_socket is not None:
        what = f"tcp-socket {probe.tcp_socket.host or ''}:{probe.tcp_socket.port}"
    elif getattr(probe, "_exec", None) is not None:  # the model's name for `exec`
        what = "exec [" + " ".join(probe._exec.command or []) + "]"
    elif getattr(probe, "grpc", None) is not None:
        what = f"grpc <pod>:{probe.grpc.port} {probe.grpc.service or ''}".rstrip()
    else:
        what = "unknown"
    return (
        f"{what} delay={probe.initial_delay_seconds or 0}s timeout={probe.timeout_seconds or 1}s"
        f" period={probe.period_seconds or 10}s #success={probe.success_threshold or 1}"
        f" #failure={probe.failure_threshold or 3}"
    )


def _describe_text(pod: Mapping[str, Any]) -> str:
    lines = [
        f"Name: {pod['name']}",
        f"Node: {pod['node']}",
        f"Status: {pod['phase']}",
        f"Controlled By: {pod['controlled_by'] or '<none>'}",
        "Containers:",
    ]
    for c in pod["containers"]:
        lines += [f"  {c['name']}:", f"    Image: {c['image']}"]
        state = c["state"] or "<unknown>"
        lines.append(f"    State: {state}" + (f" ({c['reason']})" if c["reason"] else ""))
        if c["last_state"]:
            lines.append(
                f"    Last State: {c['last_state']} ({c['last_reason']}, "
                f"exit code {c['last_exit_code']}, finished {c['last_finished_at']})"
            )
        lines += [f"    Ready: {c['ready']}", f"    Restart Count: {c['restarts']}"]
        for key in ("limits", "requests"):
            if c[key]:
                pairs = ", ".join(f"{k}={v}" for k, v in sorted(c[key].items()))
                lines.append(f"    {key.capitalize()}: {pairs}")
        for key in ("liveness", "readiness", "startup"):
            if c[key]:
                lines.append(f"    {key.capitalize()}: {c[key]}")
    lines.append("Conditions: " + ", ".join(f"{k}={v}" for k, v in pod["conditions"].items()))
    lines.append("Events:" + ("" if pod["events"] else " <none>"))
    lines += [f"  {e['type']} {e['reason']} (x{e['count']}): {e['message']}" for e in pod["events"]]
    return "\n".join(lines)


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
