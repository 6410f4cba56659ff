"""An HTTP-level Kubernetes API server double on 127.0.0.1, built on kmock.

The official `kubernetes` client talks to it through a real kubeconfig file,
so requests and responses are serialized and parsed exactly as against a real
cluster. kmock's `KubernetesEmulator` stores objects and answers get/list/
create/patch/delete; this module adds what it lacks and the executor needs:

- label and field selectors on lists (kmock ignores them);
- pod logs (`pods/NAME/log` with container, tailLines, sinceSeconds);
- the Scale subresource and JSON-patch bodies (`kubectl rollout undo` uses one);
- a tiny deployment controller: a changed pod template bumps `generation`, gets
  a ReplicaSet with the next `deployment.kubernetes.io/revision`, and status
  catches up at once (or never, with `rollout_stuck`), so rollout status,
  restart and undo can be observed end to end;
- RBAC denials (`deny("patch", "deployments")` answers 403 like the real API)
  and an optional metrics API (`metrics.k8s.io/v1beta1`).
Exec (websocket upgrade) is not emulated.
"""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp.web
import kmock
import yaml

DEPLOY = kmock.resource("apps", "v1", "deployments")
RS = kmock.resource("apps", "v1", "replicasets")
POD = kmock.resource("", "v1", "pods")
EVENT = kmock.resource("", "v1", "events")
PODMETRICS = kmock.resource("metrics.k8s.io", "v1beta1", "pods")
REVISION = "deployment.kubernetes.io/revision"


def _status(code: int, reason: str, message: str) -> aiohttp.web.Response:
    body = {
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }
    return aiohttp.web.json_response(body, status=code)


def _labels_match(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif labels.get(term) is None:
            return False
    return True


def _field(obj: dict[str, Any], path: str) -> Any:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _fields_match(obj: dict[str, Any], selector: str) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        negate = "!=" in term
        key, value = term.replace("!=", "=").replace("==", "=").split("=", 1)
        if (str(_field(obj, key.strip())) == value.strip()) == negate:
            return False
    return True


class ClusterEmulator(kmock.KubernetesEmulator):
    """kmock's emulator plus selectors, logs, scale, JSON patch, RBAC and a controller."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.logs: dict[tuple[str, str, str], str] = {}
        self.denied: set[tuple[str, str]] = set()
        self.rollout_stuck: set[str] = set()

    async def _handle(self, request: Any) -> aiohttp.web.StreamResponse:
        res = request.resource
        if res is None:
            return await super()._handle(request)
        verb = {
            "GET": "list" if request.name is None else "get",
            "PATCH": "patch",
            "PUT": "update",
            "POST": "create",
            "DELETE": "delete",
        }.get(request.method.value)
        if (verb, res.plural) in self.denied:
            group = f".{res.group}" if res.group else ""
            return _status(
                403,
                "Forbidden",
                (
                    f'{res.plural}{group} "{request.name or ""}" is forbidden: User '
                    f'"system:serviceaccount:ops:runbook" cannot {verb} resource "{res.plural}" in '
                    f'API group "{res.group}" in the namespace "{request.namespace}"'
                ),
            )
        if request.subresource == "log":
            return self._log(request)
        if request.subresource == "scale":
            return self._scale(request)
        if request.method == "PATCH" and isinstance(request.data, list):
            return self._json_patch(request)
        if request.action == kmock.action.LIST and (
            request.params.get("labelSelector") or request.params.get("fieldSelector")
        ):
            return self._list(request)
        response = await super()._handle(request)
        if res == DEPLOY and request.method in ("PATCH", "PUT") and request.name:
            self.reconcile(request.namespace, request.name)
        return response

    def _obj(self, res: Any, ns: str, name: str) -> dict[str, Any] | None:
        key = (res, ns, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return copy.deepcopy(self.objects[key].raw)

    def _put(self, res: Any, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        self.objects[res, meta.get("namespace"), meta["name"]] = obj

    def _not_found(self, kind: str, name: str) -> aiohttp.web.Response:
        return _status(404, "NotFound", f'{kind} "{name}" not found')

    def _list(self, request: Any) -> aiohttp.web.Response:
        labels, fields = request.params.get("labelSelector"), request.params.get("fieldSelector")
        if request.resource not in self._get_resources() and request.resource != POD:
            return _status(404, "NotFound", "the server could not find the requested resource")
        items = []
        for (res, ns, _name), obj in list(self.objects.items()):
            if res != request.resource or obj.deleted:
                continue
            if request.namespace is not None and ns != request.namespace:
                continue
            raw = obj.raw
            if labels and not _labels_match(raw.get("metadata", {}).get("labels") or {}, labels):
                continue
            if fields and not _fields_match(raw, fields):
                continue
            items.append(raw)
        return aiohttp.web.json_response({"metadata": {"resourceVersion": "1"}, "items": items})

    def _log(self, request: Any) -> aiohttp.web.StreamResponse:
        pod = self._obj(POD, request.namespace, request.name)
        if pod is None:
            return self._not_found("pods", request.name)
        containers = [c["name"] for c in pod["spec"]["containers"]]
        container = request.params.get("container") or containers[0]
        if container not in containers:
            return _status(
                400, "BadRequest", f"container {container} is not valid for pod {request.name}"
            )
        lines = self.logs.get((request.namespace, request.name, container), "").splitlines(True)
        if "tailLines" in request.params:
            lines = (
                lines[-int(request.params["tailLines"]) :]
                if int(request.params["tailLines"])
                else []
            )
        return aiohttp.web.Response(text="".join(lines), content_type="text/plain")

    def _scale(self, request: Any) -> aiohttp.web.Response:
        dep = self._obj(DEPLOY, request.namespace, request.name)
        if dep is None:
            return self._not_found("deployments.apps", request.name)
        if request.method == "PATCH":
            dep["spec"]["replicas"] = int(request.data["spec"]["replicas"])
            self._put(DEPLOY, dep)
            self.reconcile(request.namespace, request.name)
            dep = self._obj(DEPLOY, request.namespace, request.name) or dep
        selector = ",".join(f"{k}={v}" for k, v in dep["spec"]["selector"]["matchLabels"].items())
        return aiohttp.web.json_response(
            {
                "apiVersion": "autoscaling/v1",
                "kind": "Scale",
                "metadata": {"name": request.name, "namespace": request.namespace},
                "spec": {"replicas": dep["spec"]["replicas"]},
                "status": {
                    "replicas": dep.get("status", {}).get("replicas", 0),
                    "selector": selector,
                },
            }
        )

    def _json_patch(self, request: Any) -> aiohttp.web.Response:
        obj = self._obj(request.resource, request.namespace, request.name)
        if obj is None:
            return self._not_found(request.resource.plural, request.name)
        for op in request.data:
            parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
            parent = obj
            for part in parts[:-1]:
                parent = parent.setdefault(part, {})
            if op["op"] in ("replace", "add"):
                parent[parts[-1]] = op["value"]
            elif op["op"] == "remove":
                parent.pop(parts[-1], None)
        self._put(request.resource, obj)
        if request.resource == DEPLOY:
            self.reconcile(request.namespace, request.name)
        return aiohttp.web.json_response(
            self._obj(request.resource, request.namespace, request.name)
        )

    def reconcile(self, ns: str, name: str) -> None:
        """What the deployment controller would do, instantly: RS per template, status."""
        dep = self._obj(DEPLOY, ns, name)
        if dep is None:
            return
        template = copy.deepcopy(dep["spec"]["template"])
        owned = [self._obj(RS, n, rn) for (r, n, rn) in list(self.objects) if r == RS and n == ns]
        owned = [
            rs
            for rs in owned
            if rs and rs["metadata"].get("ownerReferences", [{}])[0].get("name") == name
        ]
        match = next((rs for rs in owned if _strip_hash(rs["spec"]["template"]) == template), None)
        revisions = [int(rs["metadata"]["annotations"][REVISION]) for rs in owned]
        revision = max(revisions, default=0) + 1
        changed = match is None or int(match["metadata"]["annotations"][REVISION]) != max(revisions)
        if match is None:
            match = replica_set(ns, name, revision, template)
        match["metadata"]["annotations"][REVISION] = str(revision if changed else max(revisions))
        self._put(RS, match)
        meta = dep["metadata"]
        meta.setdefault("annotations", {})[REVISION] = match["metadata"]["annotations"][REVISION]
        meta["generation"] = int(meta.get("generation", 1)) + (1 if changed else 0)
        replicas = int(dep["spec"].get("replicas", 1))
        if name not in self.rollout_stuck:
            dep["status"] = _rolled_out(meta["generation"], replicas)
        self._put(DEPLOY, dep)


def _strip_hash(template: dict[str, Any]) -> dict[str, Any]:
    template = copy.deepcopy(template)
    template.get("metadata", {}).get("labels", {}).pop("pod-template-hash", None)
    return template


def _rolled_out(generation: int, replicas: int) -> dict[str, Any]:
    return {
        "observedGeneration": generation,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
    }


def replica_set(
    ns: str, deployment: str, revision: int, template: dict[str, Any]
) -> dict[str, Any]:
    template = copy.deepcopy(template)
    template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = (
        f"h{revision}"
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{deployment}-h{revision}",
            "namespace": ns,
            "annotations": {REVISION: str(revision)},
            "labels": template["metadata"]["labels"],
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": deployment,
                    "uid": f"uid-{deployment}",
                    "controller": True,
                }
            ],
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": template["metadata"]["labels"]},
            "template": template,
        },
    }


class K8sDouble:
    """The emulator served on 127.0.0.1 from a background event loop, with seed helpers.

    Every change to the emulator's state runs on its loop (`call`), so the test
    thread and the HTTP handlers never touch the store at the same time.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.emulator: ClusterEmulator | None = None
        self.url = ""
        self._thread = threading.Thread(target=self._serve, daemon=True, name="k8s-double")
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError("the Kubernetes double did not start")
        self.kubeconfig = self.write_kubeconfig(directory / "kubeconfig")

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with ClusterEmulator() as emulator, kmock.Server(emulator) as server:
            self.emulator = emulator
            self.url = f"http://127.0.0.1:{server.port}"
            self._ready.set()
            await self._stop.wait()

    def close(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def call(self, fn: Callable[[ClusterEmulator], Any]) -> Any:
        """Run `fn(emulator)` on the server's loop and return its result."""

        async def job() -> Any:
            assert self.emulator is not None
            return fn(self.emulator)

        return asyncio.run_coroutine_threadsafe(job(), self.loop).result(10)

    def write_kubeconfig(
        self, path: Path, context: str = "double", namespace: str = "default"
    ) -> Path:
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": context,
            "clusters": [{"name": "double", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "test-token"}}],
            "contexts": [
                {
                    "name": context,
                    "context": {"cluster": "double", "user": "tester", "namespace": namespace},
                }
            ],
        }
        path.write_text(yaml.safe_dump(doc))
        return path

    # -- state ---------------------------------------------------------------------------
    def reset(self) -> None:
        def clear(e: ClusterEmulator) -> None:
            for key in list(e.objects):
                del e.objects[key]
            e.logs.clear()
            e.denied.clear()
            e.rollout_stuck.clear()

        self.call(clear)

    def obj(self, res: Any, ns: str, name: str) -> dict[str, Any] | None:
        return self.call(lambda e: e._obj(res, ns, name))

    def deny(self, verb: str, plural: str) -> None:
        self.call(lambda e: e.denied.add((verb, plural)))

    def deployment(
        self,
        ns: str,
        name: str,
        images: list[str],
        replicas: int = 2,
        ready: int | None = None,
        restarts: int = 0,
        crashloop: int = 0,
    ) -> None:
        """A deployment whose history is `images` (oldest first), each a ReplicaSet revision,
        with `replicas` pods of the last one (`ready` of them ready, `crashloop` crash-looping)."""
        labels = {"app": name}

        def seed(e: ClusterEmulator) -> None:
            tmpl: dict[str, Any] = {}
            for revision, image in enumerate(images, start=1):
                tmpl = {
                    "metadata": {"labels": dict(labels)},
                    "spec": {"containers": [{"name": name, "image": image}]},
                }
                e._put(RS, replica_set(ns, name, revision, tmpl))
            ready_n = replicas if ready is None else ready
            status = _rolled_out(len(images), replicas) | {
                "readyReplicas": ready_n,
                "availableReplicas": ready_n,
            }
            e._put(
                DEPLOY,
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {
                        "name": name,
                        "namespace": ns,
                        "generation": len(images),
                        "uid": f"uid-{name}",
                        "labels": dict(labels),
                        "annotations": {REVISION: str(len(images))},
                    },
                    "spec": {
                        "replicas": replicas,
                        "selector": {"matchLabels": dict(labels)},
                        "template": copy.deepcopy(tmpl),
                    },
                    "status": status,
                },
            )
            for i in range(replicas):
                crashing = i < crashloop
                e._put(
                    POD,
                    pod(
                        ns,
                        f"{name}-h{len(images)}-{i}",
                        labels,
                        name,
                        ready=i < ready_n and not crashing,
                        restarts=restarts + (7 if crashing else 0),
                        crashing=crashing,
                    ),
                )

        self.call(seed)

    def logs(self, ns: str, pod_name: str, container: str, text: str) -> None:
        self.call(lambda e: e.logs.__setitem__((ns, pod_name, container), text))

    def event(
        self,
        ns: str,
        name: str,
        reason: str,
        message: str,
        kind: str = "Pod",
        type_: str = "Warning",
    ) -> None:
        obj = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{name}.{reason.lower()}", "namespace": ns},
            "involvedObject": {"kind": kind, "name": name, "namespace": ns},
            "reason": reason,
            "message": message,
            "type": type_,
            "count": 3,
            "lastTimestamp": "2026-01-01T00:00:00Z",
        }
        self.call(lambda e: e._put(EVENT, obj))

    def metrics(self, ns: str, pod_name: str, cpu: str, memory: str) -> None:
        obj = {
            "apiVersion": "metrics.k8s.io/v1beta1",
            "kind": "PodMetrics",
            "metadata": {"name": pod_name, "namespace": ns},
            "timestamp": "2026-01-01T00:00:00Z",
            "window": "30s",
            "containers": [{"name": "main", "usage": {"cpu": cpu, "memory": memory}}],
        }
        self.call(lambda e: e._put(PODMETRICS, obj))


def pod(
    ns: str,
    name: str,
    labels: dict[str, str],
    container: str,
    ready: bool = True,
    restarts: int = 0,
    crashing: bool = False,
) -> dict[str, Any]:
    state: dict[str, Any] = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
    if crashing:
        state = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting"}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": dict(labels)},
        "spec": {"containers": [{"name": container, "image": "img"}], "nodeName": "node-1"},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [
                {
                    "name": container,
                    "ready": ready,
                    "restartCount": restarts,
                    "image": "img",
                    "imageID": "",
                    "state": state,
                }
            ],
        },
    }


@contextmanager
def k8s_double(directory: Path) -> Iterator[K8sDouble]:
    double = K8sDouble(directory)
    try:
        yield double
    finally:
        double.close()
