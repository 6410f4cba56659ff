"""The kubernetes executor's rollout operations, scale and exec, done the way kubectl does.

Each follows kubectl's own code (k8s.io/kubectl pkg/polymorphichelpers), verdicts and
messages included:

- history/undo: a deployment's ReplicaSets are those its selector lists *and* whose
  controller owner reference carries the deployment's uid (a deleted deployment's
  leftovers share the name, never the uid); undo takes the newest-but-one revision (or the
  given one), refuses a paused deployment, says "skipped rollback" when the template
  already matches, else replaces `spec.template` and the annotations with a JSON patch;
- restart: refuses a paused deployment, else patches the `restartedAt` pod annotation;
- pause/resume: refuse a deployment already in that state, like kubectl;
- status: kubectl's rules over generation/observedGeneration, the Progressing condition
  and replica counts; a `ProgressDeadlineExceeded` deployment fails at once, otherwise the
  deployment is watched (re-read on each change) until complete or the timeout;
- exec: through an `ExecTransport`, by default the API server's websocket stream;
  `ctx.resources["kubernetes.exec"]` may hold another (e.g. one going through
  `kubectl exec`), since not every API front end speaks websockets.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from runbook.contract import ExecContext

from .client import Cluster, ClusterError
from .read import (
    default_container,
    deployment_summary,
    describe,
    get,
    list_pods,
    logs,
    owned_replica_sets,
    read_deployment,
    read_pod,
    top,
)

REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"
HASH_LABEL = "pod-template-hash"
# Annotations an undo keeps from the deployment instead of copying them from the ReplicaSet
# (kubectl's annotationsToSkip).
KEPT_ON_UNDO = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)
Result = tuple[dict[str, Any], str]


class ExecTransport(Protocol):
    """Runs argv in a container and returns (exit code, stdout, stderr)."""

    def exec(
        self, cluster: Cluster, pod: str, container: str | None, argv: list[str], timeout: float
    ) -> tuple[int, str, str]: ...


def _patch(cluster: Cluster, name: str, body: Any) -> Any:
    return cluster.apps().patch_namespaced_deployment(
        name, cluster.namespace, body, _request_timeout=cluster.timeout
    )


def revision(obj: Any) -> int:
    try:
        return int((obj.metadata.annotations or {}).get(REVISION, 0))
    except ValueError:
        return 0


# -- status ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """One observation judged by kubectl's DeploymentStatusViewer."""

    done: bool
    message: str
    failed: bool = False  # an error for kubectl: do not wait any longer


def rollout_state(dep: Any) -> Verdict:
    """kubectl's `rollout status` verdict for one observation of a deployment."""
    spec, status, name = dep.spec, dep.status, dep.metadata.name
    if (dep.metadata.generation or 0) > (status.observed_generation or 0):
        return Verdict(False, "Waiting for deployment spec update to be observed...")
    for cond in status.conditions or []:
        if cond.type == "Progressing" and cond.reason == "ProgressDeadlineExceeded":
            return Verdict(False, f'deployment "{name}" exceeded its progress deadline', True)
    waiting = f'Waiting for deployment "{name}" rollout to finish: '
    updated, replicas = status.updated_replicas or 0, status.replicas or 0
    if spec.replicas is not None and updated < spec.replicas:
        return Verdict(
            False, f"{waiting}{updated} out of {spec.replicas} new replicas have been updated..."
        )
    if replicas > updated:
        return Verdict(
            False, f"{waiting}{replicas - updated} old replicas are pending termination..."
        )
    if (status.available_replicas or 0) < updated:
        return Verdict(
            False,
            f"{waiting}{status.available_replicas or 0} of {updated} updated replicas are "
            "available...",
        )
    return Verdict(True, f'deployment "{name}" successfully rolled out')


def _next_change(cluster: Cluster, dep: Any, wait: float) -> Any | None:
    """The deployment after its next change (a watch from its resourceVersion), or None when
    nothing changed within `wait` seconds or the API server does not let us watch."""
    import urllib3
    from kubernetes import watch
    from kubernetes.client.exceptions import ApiException

    stream = watch.Watch()
    try:
        for event in stream.stream(
            cluster.apps().list_namespaced_deployment,
            cluster.namespace,
            field_selector=f"metadata.name={dep.metadata.name}",
            resource_version=dep.metadata.resource_version,
            timeout_seconds=max(1, math.ceil(wait)),
            _request_timeout=(cluster.timeout, wait),
        ):
            if event["type"] == "DELETED":
                raise ClusterError(f"deployment '{dep.metadata.name}' was deleted while waiting")
            if event["type"] in ("ADDED", "MODIFIED"):
                return event["object"]
    except ApiException as exc:
        if exc.status in (403, 405, 410):  # no watch permission, or history compacted: poll
            time.sleep(wait)
            return None
        raise
    except urllib3.exceptions.HTTPError:  # the read timeout: nothing happened within `wait`
        return None
    finally:
        stream.stop()
    return None


def rollout_status(cluster: Cluster, args: Mapping[str, Any], ctx: ExecContext) -> Result:
    timeout = float(args.get("timeout", 300))
    if ctx.timeout is not None:
        timeout = min(timeout, ctx.timeout)
    interval = float(args.get("interval", 2))
    start = time.monotonic()
    dep = read_deployment(cluster, args["deployment"])
    while True:
        verdict = rollout_state(dep)
        waited = time.monotonic() - start
        left = timeout - waited
        if verdict.done or verdict.failed or left <= 0 or ctx.cancel.is_set():
            break
        ctx.progress(verdict.message)
        changed = _next_change(cluster, dep, min(interval, left))
        dep = changed if changed is not None else read_deployment(cluster, args["deployment"])
    message = verdict.message
    if not verdict.done and not verdict.failed:
        paused = " (the deployment is paused: resume it to roll out)" if dep.spec.paused else ""
        message = f"{message}{paused} (gave up after {waited:.1f}s)"
    fields = {
        **_status_fields(dep),
        "complete": verdict.done,
        "healthy": verdict.done,
        "deadline_exceeded": verdict.failed,
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


# -- history and undo ------------------------------------------------------------------------
def rollout_history(cluster: Cluster, args: Mapping[str, Any], ctx: ExecContext) -> Result:
    """`kubectl rollout history`: the revisions of the deployment's own ReplicaSets."""
    name = args["deployment"]
    dep = read_deployment(cluster, name)
    by_revision = {revision(rs): rs for rs in owned_replica_sets(cluster, dep)}
    wanted = int(args.get("revision") or 0)
    if wanted and wanted not in by_revision:
        raise ClusterError(
            f"unable to find the specified revision {wanted} of deployment '{name}' "
            f"(revisions: {_listed(by_revision)})"
        )
    revisions = [
        {
            "revision": number,
            "change_cause": (rs.metadata.annotations or {}).get(CHANGE_CAUSE) or None,
            "images": [c.image for c in rs.spec.template.spec.containers],
            "replica_set": rs.metadata.name,
        }
        for number, rs in sorted(by_revision.items())
        if not wanted or number == wanted
    ]
    fields = {
        "deployment": name,
        "revisions": revisions,
        "numbers": [r["revision"] for r in revisions],
        "count": len(revisions),
        "current": revision(dep),
        "healthy": bool(revisions),
    }
    if not revisions:
        return fields, "No rollout history found."
    rows = [("REVISION", "CHANGE-CAUSE", "IMAGES")] + [
        (str(r["revision"]), r["change_cause"] or "<none>", ",".join(r["images"]))
        for r in revisions
    ]
    width = [max(len(row[i]) for row in rows) for i in range(2)]
    text = "\n".join(f"{a:<{width[0]}}  {b:<{width[1]}}  {c}".rstrip() for a, b, c in rows)
    return fields, f"deployment.apps/{name}\n{text}"


def _listed(by_revision: Mapping[int, Any]) -> str:
    return ", ".join(str(r) for r in sorted(by_revision)) or "none"


def _revision_to_restore(name: str, owned: list[Any], wanted: int) -> Any:
    """kubectl's deploymentRevision: the given revision, or the newest but one."""
    by_revision = {revision(rs): rs for rs in owned}
    if wanted:
        if wanted not in by_revision:
            raise ClusterError(
                f"unable to find specified revision {wanted} in history "
                f"(revisions of deployment '{name}': {_listed(by_revision)})"
            )
        return by_revision[wanted]
    ordered = sorted(by_revision)
    if len(ordered) < 2:
        raise ClusterError(f'no rollout history found for deployment "{name}"')
    return by_revision[ordered[-2]]


def _template(cluster: Cluster, template: Any) -> dict[str, Any]:
    """A pod template as JSON, without the pod-template-hash label."""
    doc: dict[str, Any] = cluster.api.sanitize_for_serialization(template)
    (doc.get("metadata") or {}).get("labels", {}).pop(HASH_LABEL, None)
    return doc


def _pruned(value: Any) -> Any:
    """Nulls and empty maps/lists dropped: apimachinery's Semantic.DeepEqual, which
    kubectl's equalIgnoreHash uses, treats them as absent."""
    if isinstance(value, dict):
        out = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def rollout_undo(cluster: Cluster, args: Mapping[str, Any], ctx: ExecContext) -> Result:
    name = args["deployment"]
    dep = read_deployment(cluster, name)
    target = _revision_to_restore(
        name, owned_replica_sets(cluster, dep), int(args.get("to_revision") or 0)
    )
    if dep.spec.paused:
        raise ClusterError(
            f"you cannot rollback a paused deployment; resume it first (rollout_resume, or "
            f"kubectl rollout resume deployment/{name}) and try again"
        )
    current, to = revision(dep), revision(target)
    template = _template(cluster, target.spec.template)
    fields = {"from_revision": current, "to_revision": to, "healthy": True}
    if _pruned(template) == _pruned(_template(cluster, dep.spec.template)):
        message = (
            f"deployment.apps/{name} skipped rollback (current template already matches "
            f"revision {to})"
        )
        return {**_status_fields(dep), **fields, "skipped": True, "rolled_back": False}, message
    kept = {k: v for k, v in (dep.metadata.annotations or {}).items() if k in KEPT_ON_UNDO}
    copied = {k: v for k, v in (target.metadata.annotations or {}).items() if k not in KEPT_ON_UNDO}
    dep = _patch(
        cluster,
        name,
        [
            {"op": "replace", "path": "/spec/template", "value": template},
            {"op": "replace", "path": "/metadata/annotations", "value": {**kept, **copied}},
        ],
    )
    message = f"deployment.apps/{name} rolled back (to the template of revision {to})"
    return {**_status_fields(dep), **fields, "skipped": False, "rolled_back": True}, message


# -- restart, pause, resume, scale -----------------------------------------------------------
def rollout_restart(cluster: Cluster, args: Mapping[str, Any], ctx: ExecContext) -> Result:
    name = args["deployment"]
    if read_deployment(cluster, name).spec.paused:
        raise ClusterError(
            f'deployments.apps "{name}" can\'t restart paused deployment (run rollout resume first)'
        )
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "spec": {
            "template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": now}}}
        }
    }
    dep = _patch(cluster, name, body)
    fields = {**_status_fields(dep), "restarted_at": now, "healthy": True}
    return fields, f"deployment.apps/{name} restarted"


def _pause(paused: bool) -> Callable[[Cluster, Mapping[str, Any], ExecContext], Result]:
    def op(cluster: Cluster, args: Mapping[str, Any], ctx: ExecContext) -> Result:
        name = args["deployment"]
        if bool(read_deployment(cluster, name).spec.paused) == paused:
            state = "is already paused" if paused else "is not paused"
            raise ClusterError(f'deployments.apps "{name}" {state}')
        dep = _patch(cluster, name, {"spec": {"paused": True if paused else None}})
        word = "paused" if paused else "resumed"
        return {**_status_fields(dep), "healthy": True}, f"deployment.apps/{name} {word}"

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


# -- exec ------------------------------------------------------------------------------------
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


def _exec_target(cluster: Cluster, args: Mapping[str, Any]) -> tuple[str, str]:
    """(pod, container) to exec into: the given pod, or a deployment's pod whose container
    runs (ready ones first, as kubectl's `exec deployment/NAME` prefers active pods); the
    container named, else kubectl's default (annotation, then the first)."""
    if args.get("pod"):
        pod = read_pod(cluster, args["pod"])
        return pod.metadata.name, args.get("container") or default_container(pod)
    name = args.get("deployment")
    candidates = []
    for pod in list_pods(cluster, {"deployment": name}):
        container = args.get("container") or default_container(pod)
        statuses = [s for s in pod.status.container_statuses or [] if s.name == container]
        running = [s for s in statuses if s.state and s.state.running]
        if pod.status.phase == "Running" and running:
            candidates.append((not running[0].ready, pod.metadata.name, container))
    if not candidates:
        raise ClusterError(f"no pod of deployment '{name}' has a running container to exec into")
    _, pod_name, container = min(candidates)
    return str(pod_name), str(container)


def exec_in_pod(cluster: Cluster, args: Mapping[str, Any], ctx: ExecContext) -> Result:
    pod, container = _exec_target(cluster, args)
    transport: ExecTransport = ctx.resources.get("kubernetes.exec") or WebsocketExec()
    code, out, err = transport.exec(cluster, pod, container, list(args["argv"]), cluster.timeout)
    fields = {
        "pod": pod,
        "container": container,
        "exit_code": code,
        "stdout": out,
        "stderr": err,
        "json": _parsed(out, code) if args.get("parse") == "json" else None,
        "healthy": code == 0,
    }
    return fields, out


def _parsed(stdout: str, code: int) -> Any:
    """`parse: json`, as the shell executor does it: after exit 0 stdout must be JSON."""
    from ..http import parse_json

    try:
        return parse_json(stdout)
    except ValueError as exc:
        if code != 0:  # the exit status says what went wrong
            return None
        raise ClusterError(
            f"stdout is not JSON (`parse: json`): {exc}; it begins {stdout.strip()[:60]!r}"
        ) from None


OPERATIONS: Mapping[str, Callable[[Cluster, Mapping[str, Any], ExecContext], Result]] = {
    "get": get,
    "logs": logs,
    "describe": describe,
    "top": top,
    "rollout_status": rollout_status,
    "rollout_history": rollout_history,
    "rollout_restart": rollout_restart,
    "rollout_undo": rollout_undo,
    "rollout_pause": _pause(True),
    "rollout_resume": _pause(False),
    "scale": scale,
    "exec": exec_in_pod,
}
