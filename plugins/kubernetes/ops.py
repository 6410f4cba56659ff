"""The kubernetes executor's rollout operations, scale and exec, done the way kubectl does.

- restart: patch `spec.template.metadata.annotations["kubectl.kubernetes.io/restartedAt"]`;
- undo: find the deployment's ReplicaSets, take the previous revision's (or the
  given one's) pod template without its `pod-template-hash` label, and replace
  the deployment's template with a JSON patch;
- status: kubectl's rules over generation/observedGeneration and replica counts,
  polled until complete or the timeout passes;
- exec: through an `ExecTransport`, by default the API server's websocket
  stream; `ctx.resources["kubernetes.exec"]` may hold another (e.g. one going
  through `kubectl exec`, or a test's), since not every API front end speaks websockets.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from runbook.contract import ExecContext

from .client import Cluster, ClusterError
from .read import deployment_summary, get, list_pods, logs, top

REVISION = "deployment.kubernetes.io/revision"
Result = tuple[dict[str, Any], str]


class ExecTransport(Protocol):
    """Runs argv in a container and returns (exit code, stdout, stderr)."""

    def exec(
        self, cluster: Cluster, pod: str, container: str | None, argv: list[str], timeout: float
    ) -> tuple[int, str, str]: ...


def _deployment(cluster: Cluster, name: str) -> Any:
    return cluster.apps().read_namespaced_deployment(
        name, cluster.namespace, _request_timeout=cluster.timeout
    )


def _patch(cluster: Cluster, name: str, body: Any) -> Any:
    return cluster.apps().patch_namespaced_deployment(
        name, cluster.namespace, body, _request_timeout=cluster.timeout
    )


def rollout_state(dep: Any) -> tuple[bool, str]:
    """kubectl's `rollout status` verdict for one observation of a deployment."""
    spec, status, name = dep.spec, dep.status, dep.metadata.name
    if (dep.metadata.generation or 0) > (status.observed_generation or 0):
        return False, f'waiting for deployment "{name}" spec update to be observed'
    for cond in status.conditions or []:
        if cond.type == "Progressing" and cond.reason == "ProgressDeadlineExceeded":
            return False, f'deployment "{name}" exceeded its progress deadline'
    want, updated = spec.replicas or 0, status.updated_replicas or 0
    if updated < want:
        return False, f"{updated} out of {want} new replicas have been updated"
    if (status.replicas or 0) > updated:
        return False, f"{(status.replicas or 0) - updated} old replicas are pending termination"
    if (status.available_replicas or 0) < updated:
        return (
            False,
            f"{status.available_replicas or 0} of {updated} updated replicas are available",
        )
    return True, f'deployment "{name}" successfully rolled out'


def rollout_status(cluster: Cluster, args: Mapping[str, Any], ctx: ExecContext) -> Result:
    timeout = float(args.get("timeout", 300))
    if ctx.timeout is not None:
        timeout = min(timeout, ctx.timeout)
    interval = float(args.get("interval", 2))
    start = time.monotonic()
    while True:
        dep = _deployment(cluster, args["deployment"])
        complete, message = rollout_state(dep)
        waited = time.monotonic() - start
        if complete or waited + interval > timeout or ctx.cancel.is_set():
            break
        ctx.progress(message)
        ctx.cancel.wait(interval)
    if not complete:
        message = f"{message} (gave up after {waited:.1f}s)"
    fields = {
        **_status_fields(dep),
        "complete": complete,
        "healthy": complete,
        "waited": round(waited, 3),
        "message": message,
    }
    return fields, message


def _status_fields(dep: Any) -> dict[str, Any]:
    summary = deployment_summary(dep)
    return {
        "deployment": summary["name"],
        "replicas": summary["replicas"],
        "updated": summary["updated"],
        "ready_replicas": summary["ready"],
        "available_replicas": summary["available"],
        "paused": summary["paused"],
        "revision": summary["revision"],
        "images": summary["images"],
        "generation": dep.metadata.generation,
    }


def rollout_restart(cluster: Cluster, args: Mapping[str, Any], ctx: ExecContext) -> Result:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "spec": {
            "template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": now}}}
        }
    }
    dep = _patch(cluster, args["deployment"], body)
    fields = {**_status_fields(dep), "restarted_at": now, "healthy": True}
    return fields, f"deployment.apps/{args['deployment']} restarted"


def _pause(paused: bool) -> Callable[[Cluster, Mapping[str, Any], ExecContext], Result]:
    def op(cluster: Cluster, args: Mapping[str, Any], ctx: ExecContext) -> Result:
        dep = _patch(cluster, args["deployment"], {"spec": {"paused": paused}})
        word = "paused" if paused else "resumed"
        return {
            **_status_fields(dep),
            "healthy": True,
        }, f"deployment.apps/{args['deployment']} {word}"

    return op


def scale(cluster: Cluster, args: Mapping[str, Any], ctx: ExecContext) -> Result:
    apps, name = cluster.apps(), args["deployment"]
    before = apps.read_namespaced_deployment_scale(
        name, cluster.namespace, _request_timeout=cluster.timeout
    )
    previous = int(before.spec.replicas or 0)
    after = apps.patch_namespaced_deployment_scale(
        name,
        cluster.namespace,
        {"spec": {"replicas": int(args["replicas"])}},
        _request_timeout=cluster.timeout,
    )
    fields = {
        "deployment": name,
        "previous_replicas": previous,
        "replicas": int(after.spec.replicas or 0),
        "healthy": True,
    }
    return fields, f"deployment.apps/{name} scaled from {previous} to {fields['replicas']}"


def rollout_undo(cluster: Cluster, args: Mapping[str, Any], ctx: ExecContext) -> Result:
    name = args["deployment"]
    dep = _deployment(cluster, name)
    owned = [
        rs
        for rs in cluster.apps()
        .list_namespaced_replica_set(cluster.namespace, _request_timeout=cluster.timeout)
        .items
        if any(
            o.uid == dep.metadata.uid or o.name == name for o in rs.metadata.owner_references or []
        )
    ]
    by_revision = {int((rs.metadata.annotations or {}).get(REVISION, 0)): rs for rs in owned}
    current = int((dep.metadata.annotations or {}).get(REVISION, max(by_revision, default=0)))
    wanted = int(args["to_revision"]) if args.get("to_revision") not in (None, "", 0, "0") else None
    if wanted is None:
        older = [r for r in by_revision if r < current]
        if not older:
            raise ClusterError(f"deployment '{name}' has no previous revision to roll back to")
        wanted = max(older)
    if int(wanted) not in by_revision:
        known = ", ".join(str(r) for r in sorted(by_revision)) or "none"
        raise ClusterError(f"deployment '{name}' has no revision {wanted} (revisions: {known})")
    template = cluster.api.sanitize_for_serialization(by_revision[int(wanted)].spec.template)
    template.get("metadata", {}).get("labels", {}).pop("pod-template-hash", None)
    dep = _patch(cluster, name, [{"op": "replace", "path": "/spec/template", "value": template}])
    fields = {
        **_status_fields(dep),
        "from_revision": current,
        "to_revision": int(wanted),
        "healthy": True,
    }
    return (
        fields,
        f"deployment.apps/{name} rolled back (revision {current} -> template of {wanted})",
    )


class WebsocketExec:
    """`kubectl exec` over the API server's websocket stream (the default transport)."""

    def exec(
        self, cluster: Cluster, pod: str, container: str | None, argv: list[str], timeout: float
    ) -> tuple[int, str, str]:
        from kubernetes.client.exceptions import ApiException
        from kubernetes.stream import stream

        kwargs = {"container": container} if container else {}
        try:
            resp = stream(
                cluster.core().connect_get_namespaced_pod_exec,
                pod,
                cluster.namespace,
                command=argv,
                stderr=True,
                stdin=False,
                stdout=True,
                tty=False,
                _preload_content=False,
                **kwargs,
            )
        except ApiException as exc:
            if exc.status:
                raise
            reason = str(exc.reason or "").split(" -+-+- ")[0]
            raise ClusterError(
                f"exec into pod '{pod}': the API server did not accept the "
                f"websocket upgrade ({reason})"
            ) from None
        resp.run_forever(timeout=timeout)
        code = resp.returncode
        out, err = resp.read_stdout() or "", resp.read_stderr() or ""
        resp.close()
        return (code if code is not None else -1), out, err


def exec_in_pod(cluster: Cluster, args: Mapping[str, Any], ctx: ExecContext) -> Result:
    pod = args.get("pod")
    if not pod:
        pods = [
            p
            for p in list_pods(cluster, {"deployment": args.get("deployment")})
            if p.status.phase == "Running"
        ]
        if not pods:
            raise ClusterError(f"no running pod of deployment '{args.get('deployment')}'")
        pod = pods[0].metadata.name
    transport: ExecTransport = ctx.resources.get("kubernetes.exec") or WebsocketExec()
    code, out, err = transport.exec(
        cluster, pod, args.get("container"), list(args["argv"]), cluster.timeout
    )
    fields = {"pod": pod, "exit_code": code, "stdout": out, "stderr": err, "healthy": code == 0}
    return fields, out


OPERATIONS: Mapping[str, Callable[[Cluster, Mapping[str, Any], ExecContext], Result]] = {
    "get": get,
    "logs": logs,
    "top": top,
    "rollout_status": rollout_status,
    "rollout_restart": rollout_restart,
    "rollout_undo": rollout_undo,
    "rollout_pause": _pause(True),
    "rollout_resume": _pause(False),
    "scale": scale,
    "exec": exec_in_pod,
}
