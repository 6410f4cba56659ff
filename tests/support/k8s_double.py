"""A Kubernetes API server double on 127.0.0.1, faithful enough that real `kubectl` works.

Real HTTP (a threaded stdlib server), so the official Python client and `/usr/bin/kubectl`
serialize, negotiate and parse exactly as against a cluster. What it serves:

- discovery: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/<group>[/<version>]` with
  APIResourceLists (namespaced, kind, verbs, shortNames, subresources such as
  `deployments/scale` as `autoscaling/v1 Scale`), so kubectl's RESTMapper and scale client work;
- objects with `metadata.uid`, `resourceVersion`, `generation` (bumped when `spec` changes),
  `creationTimestamp`; lists with `kind: XList`, `apiVersion` and a list resourceVersion;
  label selectors (equality and set-based) and field selectors on lists and watches;
- `watch=true` streams (chunked JSON lines; `resourceVersion`, `timeoutSeconds`), which
  `kubectl rollout status` and the executor's rollout_status use;
- create / update (resourceVersion conflicts) / delete (background cascade or Orphan) /
  patch: JSON patch (`kubectl rollout undo`), merge patch and strategic merge patch
  (`kubectl rollout pause|resume|restart`, the Python client's dict bodies); the `status`
  of deployments, replicasets and pods is the controller's, never a client's;
- subresources: `scale` (deployments and replicasets), `status`, `pods/log` (container,
  tailLines, `previous`), `pods/exec` over a websocket (`v5`/`v4.channel.k8s.io`), answered by
  `on_exec` (by default the argv runs on this machine, a stand-in container);
- a deployment + replicaset controller that rolls out over time, one step per `tick`
  (default 0.05 s): a changed pod template makes (or, for a rollback, re-uses) a ReplicaSet
  with the next `deployment.kubernetes.io/revision`, owned by the Deployment's *uid*; the new
  ReplicaSet is scaled up and the old ones down within maxSurge/maxUnavailable, pods start
  not ready and become ready a tick later (or crash-loop when their image was declared
  failing with `fail_image`), and status follows: observedGeneration, replicas,
  updated/ready/available/unavailable replicas, the Available and Progressing conditions;
  `spec.paused` stops rollouts (Progressing Unknown, DeploymentPaused), and a rollout that
  makes no progress for `progressDeadlineSeconds` gets Progressing=False,
  ProgressDeadlineExceeded; old ReplicaSets beyond `revisionHistoryLimit` are deleted;
- RBAC denials (`deny("patch", "deployments")` answers 403 like the real API) and an
  optional metrics API (`metrics.k8s.io/v1beta1` PodMetrics), served once `metrics()` seeds one.

Namespaces are virtual (the usual three, any that holds an object, any created): kubectl
asks for one after a 404 to word its error. Not emulated: authentication,
admission/validation, server-side apply, Table output (`kubectl get` without `-o` prints
NAME and AGE only), OpenAPI (so `kubectl create -f` needs `--validate=false`), protobuf
request bodies (`kubectl create deployment` sends one; `create -f` sends JSON), SPDY
exec, `sinceSeconds` on logs (lines carry no timestamps), ReplicaSet adoption of orphans,
events written by the controller. Every state change happens under one lock, so the test
thread, the HTTP handlers and the controller never interleave.
"""

from __future__ import annotations

import base64
import bisect
import copy
import hashlib
import json
import re
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
CHANGE_CAUSE = "kubernetes.io/change-cause"
HASH_LABEL = "pod-template-hash"
ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
Obj = dict[str, Any]


@dataclass(frozen=True)
class Sub:
    """A subresource as discovery lists it (`deployments/scale` is an autoscaling/v1 Scale)."""

    name: str
    kind: str
    verbs: tuple[str, ...]
    group: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    verbs: tuple[str, ...] = ALL_VERBS
    short_names: tuple[str, ...] = ()
    subresources: tuple[Sub, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """`deployments.apps`, `pods`: how the API names the resource in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


_SCALE = Sub("scale", "Scale", ("get", "patch", "update"), "autoscaling", "v1")
DEPLOY = Resource(
    "apps",
    "v1",
    "deployments",
    "Deployment",
    short_names=("deploy",),
    subresources=(_SCALE, Sub("status", "Deployment", ("get", "patch", "update"))),
)
RS = Resource(
    "apps",
    "v1",
    "replicasets",
    "ReplicaSet",
    short_names=("rs",),
    subresources=(_SCALE, Sub("status", "ReplicaSet", ("get", "patch", "update"))),
)
POD = Resource(
    "",
    "v1",
    "pods",
    "Pod",
    short_names=("po",),
    subresources=(
        Sub("log", "Pod", ("get",)),
        Sub("exec", "PodExecOptions", ("create", "get")),
        Sub("status", "Pod", ("get", "patch", "update")),
    ),
)
EVENT = Resource("", "v1", "events", "Event", short_names=("ev",))
NAMESPACE = Resource("", "v1", "namespaces", "Namespace", namespaced=False, short_names=("ns",))
PODMETRICS = Resource("metrics.k8s.io", "v1beta1", "pods", "PodMetrics", verbs=("get", "list"))
CORE = (POD, EVENT, NAMESPACE)
APPS = (DEPLOY, RS)
WITH_STATUS = (DEPLOY, RS, POD)


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def prune(value: Any) -> Any:
    """Nulls and empty maps/lists dropped: apimachinery's Semantic.DeepEqual treats them as
    absent (kubectl sends `creationTimestamp: null` and `resources: {}` in a template)."""
    if isinstance(value, dict):
        out = {k: prune(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [prune(v) for v in value]
    return value


def same_template(a: Obj, b: Obj) -> bool:
    """kubectl's equalIgnoreHash: pod templates equal but for the pod-template-hash label."""
    a, b = copy.deepcopy(a), copy.deepcopy(b)
    for t in (a, b):
        ((t.get("metadata") or {}).get("labels") or {}).pop(HASH_LABEL, None)
    return bool(prune(a) == prune(b))


def template_hash(template: Obj) -> str:
    """A stable pod-template-hash in Kubernetes' alphabet (no vowels, no 0/1/3)."""
    stripped = copy.deepcopy(template)
    ((stripped.get("metadata") or {}).get("labels") or {}).pop(HASH_LABEL, None)
    digest = hashlib.sha256(json.dumps(prune(stripped), sort_keys=True).encode()).digest()
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(alphabet[b % len(alphabet)] for b in digest[:10])


def revision_of(obj: Obj) -> int:
    try:
        return int(((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION, 0))
    except ValueError:
        return 0


def controller_uid(obj: Obj) -> str | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


# -- selectors -------------------------------------------------------------------------------
_SET_TERM = re.compile(r"^\s*(!?)([\w./-]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")


def _split_terms(selector: str) -> list[str]:
    terms, depth, start = [], 0, 0
    for i, ch in enumerate(selector):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            terms.append(selector[start:i])
            start = i + 1
    terms.append(selector[start:])
    return [t.strip() for t in terms if t.strip()]


def labels_match(labels: dict[str, str], selector: str) -> bool:
    for term in _split_terms(selector):
        if "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = (s.strip() for s in term.replace("==", "=").split("=", 1))
            if labels.get(key) != value:
                return False
        else:
            match = _SET_TERM.match(term)
            if match is None:
                raise ValueError(f"unable to parse requirement: {term!r}")
            negate, key, op, values = match.groups()
            if op:
                wanted = {v.strip() for v in values.split(",") if v.strip()}
                inside = labels.get(key) in wanted
                if inside != (op == "in"):
                    return False
            elif (key in labels) == bool(negate):
                return False
    return True


def _field(obj: Obj, path: str) -> Any:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def fields_match(obj: Obj, selector: str) -> bool:
    for term in _split_terms(selector):
        negate = "!=" in term
        key, value = term.replace("!=", "=").replace("==", "=").split("=", 1)
        found = _field(obj, key.strip())
        if (("" if found is None else str(found)) == value.strip()) == negate:
            return False
    return True


# -- patches ---------------------------------------------------------------------------------
def merge_patch(target: Any, patch: Any, strategic: bool = False) -> Any:
    """RFC 7386 merge patch; `strategic` adds what kubectl's patches need: lists of named
    objects (containers, env, volumes) merged by `name`, `$patch`/`$setElementOrder` dropped."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace" and strategic:
        return {k: v for k, v in copy.deepcopy(patch).items() if not k.startswith("$")}
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if strategic and key.startswith("$"):
            continue
        if value is None:
            out.pop(key, None)
        elif strategic and isinstance(value, list) and _named(value) and _named(out.get(key)):
            out[key] = _merge_named(out[key], value)
        else:
            out[key] = merge_patch(out.get(key), value, strategic)
    return out


def _named(items: Any) -> bool:
    return isinstance(items, list) and all(isinstance(i, dict) and "name" in i for i in items)


def _merge_named(current: list[Obj], patch: list[Obj]) -> list[Obj]:
    merged = [copy.deepcopy(i) for i in current]
    for item in patch:
        index = next((n for n, c in enumerate(merged) if c["name"] == item["name"]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                merged.pop(index)
        elif index is None:
            merged.append(merge_patch({}, item, True))
        else:
            merged[index] = merge_patch(merged[index], item, True)
    return merged


class PatchError(ValueError):
    pass


def json_patch(doc: Obj, ops: list[Obj]) -> Obj:
    """RFC 6902 (add, remove, replace, move, copy, test)."""
    doc = copy.deepcopy(doc)

    def walk(path: str) -> tuple[Any, str]:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]
        parent: Any = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent.get(part)
            if parent is None:
                raise PatchError(f"doc is missing path: {path!r}")
        return parent, parts[-1]

    def get(path: str) -> Any:
        parent, key = walk(path)
        return parent[int(key)] if isinstance(parent, list) else parent[key]

    def put(path: str, value: Any, replace: bool) -> None:
        parent, key = walk(path)
        if isinstance(parent, list):
            if key == "-":
                parent.append(value)
            elif replace:
                parent[int(key)] = value
            else:
                parent.insert(int(key), value)
        else:
            if replace and key not in parent:
                raise PatchError(f"replace operation does not apply: doc is missing key: {path}")
            parent[key] = value

    def remove(path: str) -> Any:
        parent, key = walk(path)
        if isinstance(parent, list):
            return parent.pop(int(key))
        if key not in parent:
            raise PatchError(f"remove operation does not apply: doc is missing key: {path}")
        return parent.pop(key)

    for op in ops:
        kind, path = op.get("op"), op.get("path", "")
        try:
            if kind == "add":
                put(path, copy.deepcopy(op["value"]), replace=False)
            elif kind == "replace":
                put(path, copy.deepcopy(op["value"]), replace=True)
            elif kind == "remove":
                remove(path)
            elif kind == "move":
                put(path, remove(op["from"]), replace=False)
            elif kind == "copy":
                put(path, copy.deepcopy(get(op["from"])), replace=False)
            elif kind == "test":
                if get(path) != op["value"]:
                    raise PatchError(f"testing value {path} failed")
            else:
                raise PatchError(f"Unexpected kind: {kind}")
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise PatchError(str(exc)) from None
    return doc


# -- the API ---------------------------------------------------------------------------------
class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self) -> Obj:
        return {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


def not_found(res: Resource, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{res.qualified} "{name}" not found')


ExecHandler = Callable[[str, str, str, list[str]], tuple[int, str, str]]


def run_here(ns: str, pod: str, container: str, argv: list[str]) -> tuple[int, str, str]:
    """The default exec: this machine stands in for the container."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        return 126, "", f'exec: "{argv[0]}": executable file not found in $PATH\n'
    return proc.returncode, proc.stdout, proc.stderr


@dataclass
class FailingImage:
    reason: str = "Error"
    exit_code: int = 1


@dataclass
class ApiServer:
    """The whole state of the double and what the HTTP handlers and the controller do to it."""

    tick: float = 0.05
    lock: threading.Condition = field(default_factory=threading.Condition)
    objects: dict[tuple[Resource, str | None, str], Obj] = field(default_factory=dict)
    events: list[tuple[int, Resource, str, Obj]] = field(default_factory=list)
    rv: int = 100
    logs: dict[tuple[str, str, str], str] = field(default_factory=dict)
    previous_logs: dict[tuple[str, str, str], str] = field(default_factory=dict)
    denied: set[tuple[str, str]] = field(default_factory=set)
    failing: dict[str, FailingImage] = field(default_factory=dict)
    metrics_served: bool = False
    websocket_exec: bool = True
    exec_handler: ExecHandler = run_here
    frozen: bool = False
    closing: bool = False
    requests: list[tuple[str, str]] = field(default_factory=list)
    # when each deployment last made progress (monotonic), for progressDeadlineSeconds
    progress_at: dict[str, float] = field(default_factory=dict)
    starting: dict[str, int] = field(default_factory=dict)  # pod uid -> ticks before it starts
    namespaces: set[str] = field(default_factory=lambda: {"default", "kube-system", "kube-public"})

    # -- store ---------------------------------------------------------------------------
    def next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    def get(self, res: Resource, ns: str | None, name: str) -> Obj | None:
        obj = self.objects.get((res, ns if res.namespaced else None, name))
        return copy.deepcopy(obj) if obj is not None else None

    def of(self, res: Resource, ns: str | None = None) -> list[Obj]:
        """Objects of a resource (in a namespace), in etcd key order."""
        keys = sorted(
            (k for k in self.objects if k[0] == res and (ns is None or k[1] == ns)),
            key=lambda k: (k[1] or "", k[2]),
        )
        return [self.objects[k] for k in keys]

    def store(self, res: Resource, obj: Obj, *, created: bool) -> Obj:
        """Write `obj` (complete metadata), bump resourceVersion, tell the watchers."""
        meta = obj.setdefault("metadata", {})
        obj["apiVersion"], obj["kind"] = res.api_version, res.kind
        if created:
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", now_text())
            meta.setdefault("generation", 1)
        meta["resourceVersion"] = self.next_rv()
        key = (res, meta.get("namespace") if res.namespaced else None, meta["name"])
        self.objects[key] = obj
        self._emit(res, "ADDED" if created else "MODIFIED", obj)
        return copy.deepcopy(obj)

    def remove(self, res: Resource, ns: str | None, name: str) -> Obj:
        obj = self.objects.pop((res, ns if res.namespaced else None, name))
        obj["metadata"]["resourceVersion"] = self.next_rv()
        self._emit(res, "DELETED", obj)
        self.starting.pop(obj["metadata"].get("uid", ""), None)
        return copy.deepcopy(obj)

    def _emit(self, res: Resource, kind: str, obj: Obj) -> None:
        self.events.append((self.rv, res, kind, copy.deepcopy(obj)))
        del self.events[:-20000]
        self.lock.notify_all()

    # -- API verbs -----------------------------------------------------------------------
    def create(self, res: Resource, ns: str | None, body: Obj) -> Obj:
        meta = body.setdefault("metadata", {})
        if res.namespaced:
            if meta.get("namespace") not in (None, ns):
                raise ApiError(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request",
                )
            meta["namespace"] = ns
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if not meta.get("name"):
            raise ApiError(422, "Invalid", f"{res.kind} is invalid: metadata.name: Required value")
        if self.get(res, ns, meta["name"]) is not None:
            raise ApiError(409, "AlreadyExists", f'{res.qualified} "{meta["name"]}" already exists')
        for key in ("uid", "resourceVersion", "generation", "creationTimestamp"):
            meta.pop(key, None)
        if res == DEPLOY:
            defaults_for_deployment(body)
        if res in WITH_STATUS:
            body["status"] = {}
        return self.store(res, body, created=True)

    def replace(self, res: Resource, ns: str | None, name: str, body: Obj, sub: str = "") -> Obj:
        old = self.get(res, ns, name)
        if old is None:
            raise not_found(res, name)
        meta = body.setdefault("metadata", {})
        if meta.get("name", name) != name:
            raise ApiError(
                400, "BadRequest", "the name of the object does not match the name on the URL"
            )
        sent_rv = meta.get("resourceVersion")
        if sent_rv and sent_rv != old["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {res.qualified} "{name}": the object has '
                "been modified; please apply your changes to the latest version and try again",
            )
        new = copy.deepcopy(body)
        new["metadata"] = {
            **meta,
            "name": name,
            "namespace": old["metadata"].get("namespace"),
            "uid": old["metadata"]["uid"],
            "creationTimestamp": old["metadata"]["creationTimestamp"],
            "generation": old["metadata"].get("generation", 1),
        }
        if sub == "status":
            new = {**old, "status": new.get("status", {})}
        elif res in WITH_STATUS:
            new["status"] = old.get("status", {})
        if res == DEPLOY:
            defaults_for_deployment(new)
        if sub != "status" and prune(new.get("spec")) != prune(old.get("spec")):
            new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
        return self.store(res, new, created=False)

    def patch(
        self, res: Resource, ns: str | None, name: str, ctype: str, body: Any, sub: str = ""
    ) -> Obj:
        old = self.get(res, ns, name)
        if old is None:
            raise not_found(res, name)
        ctype = ctype.split(";")[0].strip()
        try:
            if ctype == "application/json-patch+json":
                if not isinstance(body, list):
                    raise PatchError("a JSON patch is a list of operations")
                new = json_patch(old, body)
            elif ctype == "application/merge-patch+json":
                new = merge_patch(old, body)
            elif ctype == "application/strategic-merge-patch+json":
                new = merge_patch(old, body, strategic=True)
            else:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted media types "
                    f"include: application/json-patch+json, application/merge-patch+json, "
                    f'application/strategic-merge-patch+json (not "{ctype}")',
                )
        except PatchError as exc:
            raise ApiError(422, "Invalid", str(exc)) from None
        new.setdefault("metadata", {}).pop("resourceVersion", None)
        return self.replace(res, ns, name, new, sub)

    def delete(self, res: Resource, ns: str | None, name: str, propagation: str) -> Obj:
        if self.get(res, ns, name) is None:
            raise not_found(res, name)
        gone = self.remove(res, ns, name)
        uid = gone["metadata"]["uid"]
        for dep_res in (RS, POD):
            for child in list(self.of(dep_res, ns)):
                refs = child["metadata"].get("ownerReferences") or []
                if not any(r.get("uid") == uid for r in refs):
                    continue
                if propagation == "Orphan":
                    child = copy.deepcopy(child)
                    child["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
                    self.store(dep_res, child, created=False)
                else:
                    self.delete(dep_res, ns, child["metadata"]["name"], propagation)
        return gone

    def scale(self, res: Resource, ns: str, name: str) -> Obj:
        obj = self.get(res, ns, name)
        if obj is None:
            raise not_found(res, name)
        labels = (obj["spec"].get("selector") or {}).get("matchLabels") or {}
        return {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {
                k: obj["metadata"][k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            },
            "spec": {"replicas": obj["spec"].get("replicas", 1)},
            "status": {
                "replicas": (obj.get("status") or {}).get("replicas", 0),
                "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
            },
        }

    def set_scale(self, res: Resource, ns: str, name: str, scale: Obj) -> Obj:
        obj = self.get(res, ns, name)
        if obj is None:
            raise not_found(res, name)
        sent_rv = (scale.get("metadata") or {}).get("resourceVersion")
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise ApiError(
                422,
                "Invalid",
                f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid value: '
                f"{replicas}: must be greater than or equal to 0",
            )
        obj["spec"]["replicas"] = replicas
        if sent_rv:
            obj["metadata"]["resourceVersion"] = sent_rv
        else:
            obj["metadata"].pop("resourceVersion", None)
        self.replace(res, ns, name, obj)
        return self.scale(res, ns, name)

    def listing(self, res: Resource, ns: str | None, labels: str, fields: str) -> list[Obj]:
        found = []
        for obj in self.of(res, ns):
            if labels and not labels_match(obj["metadata"].get("labels") or {}, labels):
                continue
            if fields and not fields_match(obj, fields):
                continue
            found.append(copy.deepcopy(obj))
        return found

    def pod_log(self, ns: str, name: str, query: dict[str, str]) -> str:
        pod = self.get(POD, ns, name)
        if pod is None:
            raise not_found(POD, name)
        names = [c["name"] for c in pod["spec"]["containers"]]
        container = query.get("container") or ""
        if not container:
            if len(names) > 1:
                raise ApiError(
                    400,
                    "BadRequest",
                    f"a container name must be specified for pod {name}, choose one of: "
                    f"[{' '.join(names)}]",
                )
            container = names[0]
        if container not in names:
            raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {name}")
        if query.get("previous") in ("true", "True", "1"):
            status = next(
                (
                    s
                    for s in (pod.get("status") or {}).get("containerStatuses") or []
                    if s["name"] == container
                ),
                {},
            )
            if not (status.get("lastState") or {}).get("terminated"):
                raise ApiError(
                    400,
                    "BadRequest",
                    f'previous terminated container "{container}" in pod "{name}" not found',
                )
            text = self.previous_logs.get((ns, name, container), "")
        else:
            text = self.logs.get((ns, name, container), "")
        lines = text.splitlines(True)
        if "tailLines" in query:
            tail = int(query["tailLines"])
            lines = lines[-tail:] if tail else []
        if "limitBytes" in query:
            return "".join(lines)[: int(query["limitBytes"])]
        return "".join(lines)

    # -- the controller ------------------------------------------------------------------
    def step(self) -> None:
        """One controller pass: start pods, reconcile deployments, then replicasets."""
        if self.frozen:
            return
        for pod in list(self.of(POD)):
            self._advance_pod(pod)
        for dep in list(self.of(DEPLOY)):
            self._reconcile(dep)
        for rs in list(self.of(RS)):
            self._sync_replica_set(rs)
        for dep in list(self.of(DEPLOY)):
            self._deployment_status(dep)

    def owned(self, res: Resource, owner: Obj) -> list[Obj]:
        uid = owner["metadata"]["uid"]
        found = [
            o for o in self.of(res, owner["metadata"]["namespace"]) if controller_uid(o) == uid
        ]
        return sorted(
            found,
            key=lambda o: (
                o["metadata"]["creationTimestamp"],
                int(o["metadata"]["resourceVersion"]) if res == POD else 0,
                o["metadata"]["name"],
            ),
        )

    def _reconcile(self, dep: Obj) -> None:
        spec, meta = dep["spec"], dep["metadata"]
        owned = self.owned(RS, dep)
        new = next(
            (rs for rs in owned if same_template(rs["spec"]["template"], spec["template"])), None
        )
        old = [rs for rs in owned if rs is not new]
        max_old = max((revision_of(rs) for rs in old), default=0)
        want = int(spec.get("replicas", 1))
        uid = meta["uid"]
        if spec.get("paused"):
            if new is not None and not any(rs["spec"].get("replicas") for rs in old):
                self._scale_rs(new, want)
            return
        if new is None:
            new = self._new_replica_set(dep, max_old + 1)
            self._condition(
                dep,
                "Progressing",
                "True",
                "NewReplicaSetCreated",
                f'Created new replica set "{new["metadata"]["name"]}"',
            )
            self.progress_at[uid] = time.monotonic()
        elif revision_of(new) <= max_old:
            rs = copy.deepcopy(new)
            notes = rs["metadata"].setdefault("annotations", {})
            history = [h for h in notes.get(REVISION_HISTORY, "").split(",") if h]
            notes[REVISION_HISTORY] = ",".join([*history, str(revision_of(new))])
            notes[REVISION] = str(max_old + 1)
            new = self.store(RS, rs, created=False)
        if meta.get("annotations", {}).get(REVISION) != str(revision_of(new)):
            d = copy.deepcopy(dep)
            d["metadata"].setdefault("annotations", {})[REVISION] = str(revision_of(new))
            self.store(DEPLOY, d, created=False)
        strategy = (spec.get("strategy") or {}).get("type", "RollingUpdate")
        if strategy == "Recreate":
            if any(rs["spec"].get("replicas") for rs in old):
                for rs in old:
                    self._scale_rs(rs, 0)
            elif not any(self.owned(POD, rs) for rs in old):
                self._scale_rs(new, want)
            return
        surge, unavailable = fenceposts(spec, want)
        new_n = int(new["spec"].get("replicas", 0))
        total = sum(int(rs["spec"].get("replicas", 0)) for rs in owned if rs is not new) + new_n
        if new_n > want:
            self._scale_rs(new, want)
        elif new_n < want:
            up = min(want - new_n, want + surge - total)
            if up > 0:
                self._scale_rs(new, new_n + up)
                total += up
                new_n += up
        self._scale_down_old(old, new, total, want - unavailable)
        self._cleanup(dep, new)

    def _scale_down_old(self, old: list[Obj], new: Obj, total: int, min_available: int) -> None:
        """The controller's reconcileOldReplicaSets: first old replicas that are not ready
        (within what may go), then ready ones while more than minAvailable stay available."""
        new = self.get(RS, new["metadata"]["namespace"], new["metadata"]["name"]) or new
        ready_new = sum(1 for p in self.owned(POD, new) if pod_ready(p))
        room = total - min_available - (int(new["spec"].get("replicas", 0)) - ready_new)
        if room <= 0:
            return
        for rs in old:
            n = int(rs["spec"].get("replicas", 0))
            unhealthy = n - sum(1 for p in self.owned(POD, rs) if pod_ready(p))
            if unhealthy > 0 and room > 0:
                down = min(unhealthy, room)
                self._scale_rs(rs, n - down)
                room -= down
        old = [self.get(RS, r["metadata"]["namespace"], r["metadata"]["name"]) or r for r in old]
        available = ready_new + sum(
            min(
                int(rs["spec"].get("replicas", 0)),
                sum(1 for p in self.owned(POD, rs) if pod_ready(p)),
            )
            for rs in old
        )
        down_total = available - min_available
        for rs in old:
            n = int(rs["spec"].get("replicas", 0))
            if down_total <= 0:
                break
            if n:
                down = min(n, down_total)
                self._scale_rs(rs, n - down)
                down_total -= down

    def _cleanup(self, dep: Obj, new: Obj) -> None:
        limit = int(dep["spec"].get("revisionHistoryLimit", 10))
        idle = [
            rs
            for rs in self.owned(RS, dep)
            if rs["metadata"]["uid"] != new["metadata"]["uid"]
            and not rs["spec"].get("replicas")
            and not self.owned(POD, rs)
        ]
        idle.sort(key=revision_of)
        for rs in idle[: max(0, len(idle) - limit)]:
            self.remove(RS, rs["metadata"]["namespace"], rs["metadata"]["name"])

    def _new_replica_set(self, dep: Obj, revision: int) -> Obj:
        template = copy.deepcopy(dep["spec"]["template"])
        suffix = template_hash(template)
        rs = replica_set_for(dep, revision, template, suffix, replicas=0)
        notes = dep["metadata"].get("annotations") or {}
        if notes.get(CHANGE_CAUSE):
            rs["metadata"]["annotations"][CHANGE_CAUSE] = notes[CHANGE_CAUSE]
        return self.store(RS, rs, created=True)

    def _scale_rs(self, rs: Obj, replicas: int) -> None:
        if int(rs["spec"].get("replicas", 0)) == replicas:
            return
        rs = copy.deepcopy(rs)
        rs["spec"]["replicas"] = replicas
        rs["metadata"]["generation"] = int(rs["metadata"].get("generation", 1)) + 1
        self.store(RS, rs, created=False)

    def _sync_replica_set(self, rs: Obj) -> None:
        pods = self.owned(POD, rs)
        want = int(rs["spec"].get("replicas", 0))
        ns, name = rs["metadata"]["namespace"], rs["metadata"]["name"]
        if len(pods) > want:
            doomed = sorted(pods, key=lambda p: (pod_ready(p), p["metadata"]["name"]))
            for pod in doomed[: len(pods) - want]:
                self.remove(POD, ns, pod["metadata"]["name"])
        taken = {p["metadata"]["name"] for p in self.of(POD, ns)}
        index = 0
        for _ in range(want - len(pods)):
            while f"{name}-{index}" in taken:
                index += 1
            pod = pod_for(rs, f"{name}-{index}")
            taken.add(pod["metadata"]["name"])
            stored = self.store(POD, pod, created=True)
            self.starting[stored["metadata"]["uid"]] = 1
        pods = self.owned(POD, rs)
        status = {
            "replicas": len(pods),
            "fullyLabeledReplicas": len(pods),
            "readyReplicas": sum(1 for p in pods if pod_ready(p)),
            "availableReplicas": sum(1 for p in pods if pod_ready(p)),
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        if rs.get("status") != status:
            rs = copy.deepcopy(rs)
            rs["status"] = status
            self.store(RS, rs, created=False)

    def _advance_pod(self, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        if uid not in self.starting:
            return
        self.starting[uid] -= 1
        if self.starting[uid] > 0:
            return
        del self.starting[uid]
        pod = copy.deepcopy(pod)
        failing = [
            self.failing[c["image"]]
            for c in pod["spec"]["containers"]
            if c.get("image") in self.failing
        ]
        pod["status"] = pod_status(
            pod["spec"],
            ready=not failing,
            crashing=bool(failing),
            restarts=1 if failing else 0,
            last_reason=failing[0].reason if failing else "Error",
            last_exit=failing[0].exit_code if failing else 1,
        )
        self.store(POD, pod, created=False)

    def _condition(
        self, dep: Obj, kind: str, status: str, reason: str, message: str, touch: bool = True
    ) -> None:
        """Set a deployment condition (in place, stored by the caller or now)."""
        key = (DEPLOY, dep["metadata"]["namespace"], dep["metadata"]["name"])
        live = self.objects[key]
        conds = live.setdefault("status", {}).setdefault("conditions", [])
        now = now_text()
        current = next((c for c in conds if c["type"] == kind), None)
        if current and (current["status"], current["reason"]) == (status, reason) and not touch:
            return
        cond = {
            "type": kind,
            "status": status,
            "lastUpdateTime": now,
            "lastTransitionTime": now,
            "reason": reason,
            "message": message,
        }
        if current and current["status"] == status:
            cond["lastTransitionTime"] = current["lastTransitionTime"]
        conds[:] = [c for c in conds if c["type"] != kind] + [cond]
        self.store(DEPLOY, live, created=False)

    def _deployment_status(self, dep: Obj) -> None:
        spec, meta = dep["spec"], dep["metadata"]
        owned = self.owned(RS, dep)
        new = next(
            (rs for rs in owned if same_template(rs["spec"]["template"], spec["template"])), None
        )
        pods = {rs["metadata"]["uid"]: self.owned(POD, rs) for rs in owned}
        all_pods = [p for group in pods.values() for p in group]
        want = int(spec.get("replicas", 1))
        _, unavailable = fenceposts(spec, want)
        ready = sum(1 for p in all_pods if pod_ready(p))
        updated = len(pods[new["metadata"]["uid"]]) if new else 0
        total_spec = sum(int(rs["spec"].get("replicas", 0)) for rs in owned)
        before = dep.get("status") or {}
        status = {
            **before,
            "observedGeneration": meta.get("generation", 1),
            "replicas": len(all_pods),
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": max(0, total_spec - ready),
        }
        for key in (
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
        ):
            if not status[key]:
                status.pop(key)
        if status != before:
            d = copy.deepcopy(dep)
            d["status"] = status
            self.store(DEPLOY, d, created=False)
        dep = self.objects[(DEPLOY, meta["namespace"], meta["name"])]
        available = ready >= want - unavailable
        self._condition(
            dep,
            "Available",
            "True" if available else "False",
            "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
            "Deployment has minimum availability."
            if available
            else "Deployment does not have minimum availability.",
            touch=False,
        )
        self._progress(dep, before, status, new, want)

    def _progress(self, dep: Obj, before: Obj, now: Obj, new: Obj | None, want: int) -> None:
        """The Progressing condition, as the deployment controller's syncRolloutStatus sets it."""
        uid = dep["metadata"]["uid"]
        conds = {c["type"]: c for c in (dep.get("status") or {}).get("conditions") or []}
        current = conds.get("Progressing")
        rs_name = new["metadata"]["name"] if new else dep["metadata"]["name"]
        if dep["spec"].get("paused"):
            if not current or current["reason"] != "DeploymentPaused":
                self._condition(
                    dep, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused"
                )
            return
        if current and current["reason"] == "DeploymentPaused":
            self._condition(
                dep, "Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed"
            )
            self.progress_at[uid] = time.monotonic()
            return
        complete = (
            now.get("updatedReplicas", 0) == want
            and now.get("replicas", 0) == want
            and now.get("availableReplicas", 0) == want
        )
        if (
            complete
            and now.get("replicas", 0) == now.get("updatedReplicas", 0)
            and current
            and current["reason"] == "NewReplicaSetAvailable"
        ):
            return
        old_left = before.get("replicas", 0) - before.get("updatedReplicas", 0)
        new_left = now.get("replicas", 0) - now.get("updatedReplicas", 0)
        moved = (
            now.get("updatedReplicas", 0) > before.get("updatedReplicas", 0)
            or new_left < old_left
            or now.get("readyReplicas", 0) > before.get("readyReplicas", 0)
            or now.get("availableReplicas", 0) > before.get("availableReplicas", 0)
        )
        deadline = dep["spec"].get("progressDeadlineSeconds")
        if complete:
            self._condition(
                dep,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{rs_name}" has successfully progressed.',
            )
        elif moved or current is None:
            self._condition(
                dep,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                f'ReplicaSet "{rs_name}" is progressing.',
            )
            self.progress_at[uid] = time.monotonic()
        elif (
            deadline is not None
            and current["reason"] != "ProgressDeadlineExceeded"
            and time.monotonic() - self.progress_at.setdefault(uid, time.monotonic())
            > float(deadline)
        ):
            self._condition(
                dep,
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                f'ReplicaSet "{rs_name}" has timed out progressing.',
            )


def fenceposts(spec: Obj, want: int) -> tuple[int, int]:
    """maxSurge (rounded up) and maxUnavailable (rounded down); both 0 means 1 unavailable."""
    rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}

    def scaled(value: Any, up: bool) -> int:
        if isinstance(value, str) and value.endswith("%"):
            exact = int(value[:-1]) * want / 100
            return int(-(-exact // 1)) if up else int(exact // 1)
        return int(value)

    surge = scaled(rolling.get("maxSurge", "25%"), True)
    unavailable = scaled(rolling.get("maxUnavailable", "25%"), False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def defaults_for_deployment(dep: Obj) -> None:
    spec = dep.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        strategy["type"] = "RollingUpdate"
        strategy.setdefault("rollingUpdate", {"maxSurge": "25%", "maxUnavailable": "25%"})
    if not spec.get("paused"):
        spec.pop("paused", None)
    defaults_for_pod_spec(spec.setdefault("template", {}).setdefault("spec", {}))


def defaults_for_pod_spec(spec: Obj) -> None:
    """The API server's defaulting of a pod spec (what `kubectl describe` then shows)."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    for container in spec.get("containers") or []:
        for key in ("livenessProbe", "readinessProbe", "startupProbe"):
            probe = container.get(key)
            if not isinstance(probe, dict):
                continue
            probe.setdefault("timeoutSeconds", 1)
            probe.setdefault("periodSeconds", 10)
            probe.setdefault("successThreshold", 1)
            probe.setdefault("failureThreshold", 3)
            if isinstance(probe.get("httpGet"), dict):
                probe["httpGet"].setdefault("scheme", "HTTP")


def pod_ready(pod: Obj) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def replica_set_for(dep: Obj, revision: int, template: Obj, suffix: str, replicas: int) -> Obj:
    template = copy.deepcopy(template)
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    labels[HASH_LABEL] = suffix
    meta = dep["metadata"]
    selector = copy.deepcopy(dep["spec"].get("selector") or {"matchLabels": {}})
    selector.setdefault("matchLabels", {})[HASH_LABEL] = suffix
    return {
        "metadata": {
            "name": f"{meta['name']}-{suffix}",
            "namespace": meta["namespace"],
            "labels": dict(labels),
            "annotations": {
                REVISION: str(revision),
                "deployment.kubernetes.io/desired-replicas": str(dep["spec"].get("replicas", 1)),
            },
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {"replicas": replicas, "selector": selector, "template": template},
        "status": {"replicas": 0},
    }


def pod_for(rs: Obj, name: str) -> Obj:
    template = rs["spec"]["template"]
    spec = copy.deepcopy(template.get("spec") or {})
    spec.setdefault("nodeName", "node-1")
    return {
        "metadata": {
            "name": name,
            "namespace": rs["metadata"]["namespace"],
            "labels": dict((template.get("metadata") or {}).get("labels") or {}),
            "annotations": dict((template.get("metadata") or {}).get("annotations") or {}),
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": rs["metadata"]["name"],
                    "uid": rs["metadata"]["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
        "status": {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "qosClass": "BestEffort",
        },
    }


def pod_status(
    spec: Obj,
    ready: bool = True,
    crashing: bool = False,
    restarts: int = 0,
    last_reason: str = "Error",
    last_exit: int = 1,
) -> Obj:
    """A Running pod's status: containers running (ready or not) or waiting in CrashLoopBackOff,
    with `lastState.terminated` (reason, exit code) once a container has restarted."""
    started = now_text()
    statuses = []
    for container in spec["containers"]:
        state: Obj = {"running": {"startedAt": started}}
        if crashing:
            state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off 40s restarting failed container={container['name']}",
                }
            }
        status: Obj = {
            "name": container["name"],
            "image": container.get("image", ""),
            "imageID": f"docker.io/library/{container.get('image', '')}@sha256:" + "0" * 64,
            "containerID": "containerd://" + uuid.uuid4().hex,
            "ready": ready and not crashing,
            "started": not crashing,
            "restartCount": restarts,
            "state": state,
            "lastState": {},
        }
        if restarts:
            status["lastState"] = {
                "terminated": {
                    "exitCode": last_exit,
                    "reason": last_reason,
                    "startedAt": "2026-01-01T00:00:00Z",
                    "finishedAt": "2026-01-01T00:01:00Z",
                    "containerID": "containerd://" + uuid.uuid4().hex,
                }
            }
        statuses.append(status)
    flag = "True" if ready and not crashing else "False"
    limits = [c.get("resources", {}).get("limits") for c in spec["containers"]]
    return {
        "phase": "Running",
        "conditions": [
            {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": flag},
            {"type": "ContainersReady", "status": flag},
            {"type": "PodScheduled", "status": "True"},
        ],
        "hostIP": "10.0.0.1",
        "podIP": "10.244.0." + str(1 + uuid.uuid4().int % 250),
        "startTime": started,
        "containerStatuses": statuses,
        "qosClass": "Burstable" if any(limits) else "BestEffort",
    }


# -- HTTP ------------------------------------------------------------------------------------
def discovery_list(group_version: str, resources: tuple[Resource, ...]) -> Obj:
    entries: list[Obj] = []
    for res in resources:
        entries.append(
            {
                "name": res.plural,
                "singularName": res.kind.lower(),
                "namespaced": res.namespaced,
                "kind": res.kind,
                "verbs": list(res.verbs),
                **({"shortNames": list(res.short_names)} if res.short_names else {}),
                **({"categories": ["all"]} if res in (DEPLOY, RS, POD) else {}),
            }
        )
        for sub in res.subresources:
            entry: Obj = {
                "name": f"{res.plural}/{sub.name}",
                "singularName": "",
                "namespaced": res.namespaced,
                "kind": sub.kind,
                "verbs": list(sub.verbs),
            }
            if sub.group is not None:
                entry["group"], entry["version"] = sub.group, sub.version
            entries.append(entry)
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": entries,
    }


def _group(name: str, version: str) -> Obj:
    gv = {"groupVersion": f"{name}/{version}", "version": version}
    return {"name": name, "versions": [gv], "preferredVersion": gv}


def _ws_frame(opcode: int, payload: bytes) -> bytes:
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([n])
    elif n < 1 << 16:
        head += bytes([126]) + n.to_bytes(2, "big")
    else:
        head += bytes([127]) + n.to_bytes(8, "big")
    return head + payload


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hang up on watches and timeouts: that is what they do


def _handler_for(api: ApiServer, address: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._serve()

        do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

        def _send(self, code: int, body: Any, ctype: str = "application/json") -> None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if not raw:
                return None
            if "protobuf" in self.headers.get("Content-Type", ""):
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    "this API double reads JSON bodies only, not protobuf (kubectl's typed "
                    "create/replace send protobuf: use `kubectl create --validate=false -f`)",
                )
            try:
                return json.loads(raw)
            except ValueError:
                return yaml.safe_load(raw)

        def _serve(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            parts = [p for p in url.path.split("/") if p]
            with api.lock:
                api.requests.append((self.command, self.path))
            try:
                self._route(parts, query, url.query)
            except ApiError as exc:
                self._send(exc.code, exc.status())
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def _route(self, parts: list[str], query: dict[str, str], raw_query: str) -> None:
            if self.command == "GET" and self._discovery(parts):
                return
            if parts[:2] == ["api", "v1"]:
                group, version, rest = "", "v1", parts[2:]
            elif len(parts) >= 3 and parts[0] == "apis":
                group, version, rest = parts[1], parts[2], parts[3:]
            else:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            ns = None
            plurals = {r.plural for r in CORE + APPS + (PODMETRICS,)} - {"namespaces"}
            if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] in plurals:
                ns, rest = rest[1], rest[2:]
            res = self._resource(group, version, rest[0] if rest else "")
            name = rest[1] if len(rest) > 1 else None
            sub = rest[2] if len(rest) > 2 else ""
            self._act(res, ns, name, sub, query, raw_query)

        def _resource(self, group: str, version: str, plural: str) -> Resource:
            served = list(CORE + APPS) + ([PODMETRICS] if api.metrics_served else [])
            for res in served:
                if (res.group, res.version, res.plural) == (group, version, plural):
                    return res
            raise ApiError(404, "NotFound", "the server could not find the requested resource")

        def _discovery(self, parts: list[str]) -> bool:
            groups = [_group("apps", "v1")]
            if api.metrics_served:
                groups.append(_group("metrics.k8s.io", "v1beta1"))
            answers: dict[tuple[str, ...], Any] = {
                ("version",): {
                    "major": "1",
                    "minor": "32",
                    "gitVersion": "v1.32.0-double",
                    "platform": "linux/amd64",
                },
                ("api",): {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": address}
                    ],
                },
                ("api", "v1"): discovery_list("v1", CORE),
                ("apis",): {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups},
                ("apis", "apps"): {"kind": "APIGroup", "apiVersion": "v1", **groups[0]},
                ("apis", "apps", "v1"): discovery_list("apps/v1", APPS),
            }
            if api.metrics_served:
                answers[("apis", "metrics.k8s.io")] = {
                    "kind": "APIGroup",
                    "apiVersion": "v1",
                    **groups[1],
                }
                answers[("apis", "metrics.k8s.io", "v1beta1")] = discovery_list(
                    "metrics.k8s.io/v1beta1", (PODMETRICS,)
                )
            answer = answers.get(tuple(parts))
            if answer is None:
                return False
            self._send(200, answer)
            return True

        def _act(
            self,
            res: Resource,
            ns: str | None,
            name: str | None,
            sub: str,
            query: dict[str, str],
            raw_query: str,
        ) -> None:
            method = self.command
            watching = query.get("watch") in ("true", "1", "True")
            verb = {
                "GET": "watch" if watching else ("get" if name else "list"),
                "POST": "create",
                "PUT": "update",
                "PATCH": "patch",
                "DELETE": "delete",
            }[method]
            if sub == "exec":
                verb = "create"
            with api.lock:
                denied = (verb, res.plural) in api.denied
            if denied:
                group = f".{res.group}" if res.group else ""
                raise ApiError(
                    403,
                    "Forbidden",
                    f'{res.plural}{group} "{name or ""}" is forbidden: User '
                    f'"system:serviceaccount:ops:runbook" cannot {verb} resource "{res.plural}" '
                    f'in API group "{res.group}" in the namespace "{ns}"',
                )
            if sub == "exec":
                self._exec(ns or "default", name or "", raw_query)
                return
            if watching:
                self._watch(res, ns, query)
                return
            body = self._body() if method in ("POST", "PUT", "PATCH", "DELETE") else None
            with api.lock:
                answer = self._do(res, ns, name, sub, query, body)
            if isinstance(answer, str):
                self._send(200, answer, "text/plain")
            else:
                self._send(201 if method == "POST" else 200, answer)

        def _do(
            self,
            res: Resource,
            ns: str | None,
            name: str | None,
            sub: str,
            query: dict[str, str],
            body: Any,
        ) -> Any:
            method = self.command
            if res == NAMESPACE:
                return self._namespace(name, body)
            if name is None:
                if method == "POST":
                    return api.create(res, ns, body or {})
                if method != "GET":
                    raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")
                try:
                    items = api.listing(
                        res, ns, query.get("labelSelector", ""), query.get("fieldSelector", "")
                    )
                except ValueError as exc:
                    raise ApiError(400, "BadRequest", str(exc)) from None
                return {
                    "kind": f"{res.kind}List",
                    "apiVersion": res.api_version,
                    "metadata": {"resourceVersion": str(api.rv)},
                    "items": items,
                }
            if sub == "log" and res == POD and method == "GET":
                return api.pod_log(ns or "default", name, query)
            if sub == "scale" and res in (DEPLOY, RS):
                if method == "GET":
                    return api.scale(res, ns or "default", name)
                if method == "PUT":
                    return api.set_scale(res, ns or "default", name, body or {})
                if method == "PATCH":
                    current = api.scale(res, ns or "default", name)
                    ctype = self.headers.get("Content-Type", "")
                    if "json-patch" in ctype:
                        patched = json_patch(current, body)
                    else:
                        patched = merge_patch(current, body, "strategic" in ctype)
                    patched["metadata"].pop("resourceVersion", None)
                    return api.set_scale(res, ns or "default", name, patched)
            if sub not in ("", "status"):
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            if method == "GET":
                obj = api.get(res, ns, name)
                if obj is None:
                    raise not_found(res, name)
                return obj
            if method == "PUT":
                return api.replace(res, ns, name, body or {}, sub)
            if method == "PATCH":
                return api.patch(res, ns, name, self.headers.get("Content-Type", ""), body, sub)
            if method == "DELETE":
                policy = query.get("propagationPolicy") or (body or {}).get(
                    "propagationPolicy", "Background"
                )
                if (body or {}).get("orphanDependents") is True:
                    policy = "Orphan"
                return api.delete(res, ns, name, policy)
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")

        def _namespace(self, name: str | None, body: Any) -> Obj:
            """Namespaces are virtual: the usual three, any holding an object, any created."""
            if self.command == "POST":
                name = ((body or {}).get("metadata") or {}).get("name", "")
                api.namespaces.add(str(name))
            elif self.command != "GET":
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")
            known = sorted(api.namespaces | {k[1] for k in api.objects if k[1]})

            def namespace(ns: str) -> Obj:
                return {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": ns, "uid": f"ns-{ns}", "resourceVersion": "1"},
                    "spec": {"finalizers": ["kubernetes"]},
                    "status": {"phase": "Active"},
                }

            if name is None and self.command == "GET":
                return {
                    "kind": "NamespaceList",
                    "apiVersion": "v1",
                    "metadata": {"resourceVersion": str(api.rv)},
                    "items": [namespace(n) for n in known],
                }
            if name not in known:
                raise not_found(NAMESPACE, name or "")
            return namespace(name)

        def _watch(self, res: Resource, ns: str | None, query: dict[str, str]) -> None:
            labels, fields = query.get("labelSelector", ""), query.get("fieldSelector", "")
            deadline = time.monotonic() + float(query.get("timeoutSeconds") or 1800)
            since = query.get("resourceVersion", "")

            def wanted(obj: Obj) -> bool:
                if ns is not None and obj["metadata"].get("namespace") != ns:
                    return False
                if labels and not labels_match(obj["metadata"].get("labels") or {}, labels):
                    return False
                return not (fields and not fields_match(obj, fields))

            with api.lock:
                if since in ("", "0"):
                    backlog = [("ADDED", copy.deepcopy(o)) for o in api.of(res, ns) if wanted(o)]
                    seen = api.rv
                else:
                    seen = int(since)
                    backlog = []
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

            def chunk(data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            for kind, obj in backlog:
                chunk(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
            while True:
                with api.lock:
                    start = bisect.bisect_right(api.events, seen, key=lambda e: e[0])
                    fresh = [
                        (kind, obj)
                        for _, r, kind, obj in api.events[start:]
                        if r == res and wanted(obj)
                    ]
                    seen = api.rv
                    left = deadline - time.monotonic()
                    if not fresh and left > 0 and not api.closing:
                        api.lock.wait(min(left, 0.5))
                        continue
                for kind, obj in fresh:
                    chunk(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
                if left <= 0 or api.closing:
                    chunk(b"")
                    return

        def _exec(self, ns: str, name: str, raw_query: str) -> None:
            multi = parse_qs(raw_query, keep_blank_values=True)
            argv = multi.get("command", [])
            with api.lock:
                pod = api.get(POD, ns, name)
                upgrade = api.websocket_exec
            if pod is None:
                raise not_found(POD, name)
            names = [c["name"] for c in pod["spec"]["containers"]]
            container = (multi.get("container") or [names[0]])[-1]
            if container not in names:
                raise ApiError(
                    400, "BadRequest", f"container {container} is not valid for pod {name}"
                )
            if self.headers.get("Upgrade", "").lower() != "websocket" or not upgrade:
                raise ApiError(
                    400,
                    "BadRequest",
                    "Upgrade request required (this API double speaks websocket exec only)",
                )
            statuses = (pod.get("status") or {}).get("containerStatuses") or []
            running = any(
                s["name"] == container and "running" in (s.get("state") or {}) for s in statuses
            )
            if not running:
                raise ApiError(
                    400,
                    "BadRequest",
                    f'unable to upgrade connection: container not found ("{container}")',
                )
            offered = [p.strip() for p in self.headers.get("Sec-WebSocket-Protocol", "").split(",")]
            protocol = next(
                (p for p in ("v5.channel.k8s.io", "v4.channel.k8s.io") if p in offered), None
            )
            if protocol is None:
                raise ApiError(400, "BadRequest", f"no supported exec protocol in {offered}")
            key = self.headers.get("Sec-WebSocket-Key", "")
            accept = base64.b64encode(
                hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
            ).decode()
            self.send_response(101, "Switching Protocols")
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept)
            self.send_header("Sec-WebSocket-Protocol", protocol)
            self.end_headers()
            self.close_connection = True
            code, out, err = api.exec_handler(ns, name, container, argv)
            frames = [_ws_frame(2, b"\x01" + out.encode()), _ws_frame(2, b"\x02" + err.encode())]
            status: Obj = {"metadata": {}, "status": "Success"}
            if code:
                status = {
                    "metadata": {},
                    "status": "Failure",
                    "message": f"command terminated with non-zero exit code: exit status {code}",
                    "reason": "NonZeroExitCode",
                    "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
                }
            frames.append(_ws_frame(2, b"\x03" + json.dumps(status).encode()))
            frames.append(_ws_frame(8, (1000).to_bytes(2, "big")))
            self.wfile.write(b"".join(frames))
            self.wfile.flush()
            with suppress(OSError):
                self.connection.settimeout(1)
                self.connection.recv(1024)  # the client's close frame
                self.connection.shutdown(socket.SHUT_RDWR)

    return Handler


class K8sDouble:
    """The API server on 127.0.0.1 with its controller thread, plus seed helpers for tests."""

    def __init__(self, directory: Path, tick: float = 0.05) -> None:
        self.directory = directory
        self.api = ApiServer(tick=tick)
        self._httpd = _Server(("127.0.0.1", 0), _handler_for(self.api, "127.0.0.1"))
        port = self._httpd.server_address[1]
        self._httpd.RequestHandlerClass = _handler_for(self.api, f"127.0.0.1:{port}")
        self.url = f"http://127.0.0.1:{port}"
        self._threads = [
            threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                daemon=True,
                name="k8s-double-http",
            ),
            threading.Thread(target=self._control, daemon=True, name="k8s-double-controller"),
        ]
        for thread in self._threads:
            thread.start()
        self.kubeconfig = self.write_kubeconfig(directory / "kubeconfig")

    def _control(self) -> None:
        while True:
            with self.api.lock:
                if self.api.closing:
                    return
                self.api.step()
                tick = self.api.tick
            time.sleep(tick)

    def close(self) -> None:
        with self.api.lock:
            self.api.closing = True
            self.api.lock.notify_all()
        self._httpd.shutdown()
        self._httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def call(self, fn: Callable[[ApiServer], Any]) -> Any:
        """Run `fn(api)` under the state lock and return its result."""
        with self.api.lock:
            return fn(self.api)

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
    def reset(self, tick: float = 0.05) -> None:
        def clear(api: ApiServer) -> None:
            for res, ns, name in list(api.objects):
                api.remove(res, ns, name)
            api.logs.clear()
            api.previous_logs.clear()
            api.denied.clear()
            api.failing.clear()
            api.progress_at.clear()
            api.starting.clear()
            api.requests.clear()
            api.metrics_served = False
            api.namespaces = {"default", "kube-system", "kube-public"}
            api.websocket_exec = True
            api.exec_handler = run_here
            api.frozen = False
            api.tick = tick

        self.call(clear)

    def obj(self, res: Resource, ns: str, name: str) -> Obj | None:
        return self.call(lambda api: api.get(res, ns, name))

    def objs(self, res: Resource, ns: str) -> list[Obj]:
        return self.call(lambda api: copy.deepcopy(api.of(res, ns)))

    def deny(self, verb: str, plural: str) -> None:
        self.call(lambda api: api.denied.add((verb, plural)))

    def set_tick(self, seconds: float) -> None:
        """How long the controller sleeps between passes (rollouts take that many steps)."""
        self.call(lambda api: setattr(api, "tick", seconds))

    def freeze(self, frozen: bool = True) -> None:
        """Stop (or restart) the controller: state then changes only through the API."""
        self.call(lambda api: setattr(api, "frozen", frozen))

    def fail_image(self, image: str, reason: str = "Error", exit_code: int = 1) -> None:
        """Pods started with `image` crash-loop (never ready), last state `reason`."""
        self.call(lambda api: api.failing.__setitem__(image, FailingImage(reason, exit_code)))

    def on_exec(self, handler: ExecHandler) -> None:
        """Answer `pods/exec` with `handler(namespace, pod, container, argv)`."""
        self.call(lambda api: setattr(api, "exec_handler", handler))

    def refuse_websocket(self) -> None:
        self.call(lambda api: setattr(api, "websocket_exec", False))

    def deployment(
        self,
        ns: str,
        name: str,
        images: list[str],
        replicas: int = 2,
        ready: int | None = None,
        restarts: int = 0,
        crashloop: int = 0,
        *,
        paused: bool = False,
        progress_deadline: int | None = 600,
        container: Obj | None = None,
        change_causes: list[str] | None = None,
        crash_reason: str = "Error",
        crash_exit_code: int = 1,
        sidecars: list[Obj] | None = None,
        pod_annotations: dict[str, str] | None = None,
    ) -> Obj:
        """A rolled-out deployment whose history is `images` (oldest first), one ReplicaSet per
        revision (named NAME-hN), owned by its uid, with `replicas` pods of the last one named
        NAME-hN-I (`ready` of them ready, the first `crashloop` crash-looping with last state
        `crash_reason`). `container` adds fields (resources, probes...) to every revision's
        container; `sidecars` are containers placed before it, `pod_annotations` go on the
        pod template (e.g. kubectl.kubernetes.io/default-container)."""
        labels = {"app": name}

        def seed(api: ApiServer) -> Obj:
            template: Obj = {}
            dep: Obj = {
                "metadata": {
                    "name": name,
                    "namespace": ns,
                    "labels": dict(labels),
                    "annotations": {REVISION: str(len(images))},
                },
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": dict(labels)},
                    "template": {},
                },
            }
            if paused:
                dep["spec"]["paused"] = True
            if progress_deadline is not None:
                dep["spec"]["progressDeadlineSeconds"] = progress_deadline
            defaults_for_deployment(dep)
            dep["metadata"]["generation"] = len(images)
            stored = api.store(DEPLOY, dep, created=True)
            for revision, image in enumerate(images, start=1):
                template = {
                    "metadata": {"labels": dict(labels)},
                    "spec": {
                        "containers": [
                            *copy.deepcopy(sidecars or []),
                            {"name": name, "image": image, **copy.deepcopy(container or {})},
                        ]
                    },
                }
                if pod_annotations:
                    template["metadata"]["annotations"] = dict(pod_annotations)
                defaults_for_pod_spec(template["spec"])
                last = revision == len(images)
                rs = replica_set_for(
                    stored, revision, template, f"h{revision}", replicas if last else 0
                )
                if change_causes and revision <= len(change_causes):
                    rs["metadata"]["annotations"][CHANGE_CAUSE] = change_causes[revision - 1]
                rs_stored = api.store(RS, rs, created=True)
                if last:
                    ready_n = replicas if ready is None else ready
                    for i in range(replicas):
                        crashing = i < crashloop
                        p = pod_for(rs_stored, f"{name}-h{revision}-{i}")
                        p["status"] = pod_status(
                            p["spec"],
                            ready=i < ready_n,
                            crashing=crashing,
                            restarts=restarts + (7 if crashing else 0),
                            last_reason=crash_reason,
                            last_exit=crash_exit_code,
                        )
                        api.store(POD, p, created=True)
            stored["spec"]["template"] = copy.deepcopy(template)
            stored["status"] = {"observedGeneration": len(images)}
            api.store(DEPLOY, stored, created=False)
            for rs in api.owned(RS, stored):
                api._sync_replica_set(rs)
            api._deployment_status(api.objects[(DEPLOY, ns, name)])
            return copy.deepcopy(api.objects[(DEPLOY, ns, name)])

        return self.call(seed)  # type: ignore[no-any-return]

    def leftover_replica_set(
        self, ns: str, deployment: str, revision: int, image: str, replicas: int = 0
    ) -> Obj:
        """A ReplicaSet still owned by a *deleted* deployment of the same name (another uid):
        what is left while the garbage collector has not caught up, or after a restore."""

        def seed(api: ApiServer) -> Obj:
            ghost = {
                "metadata": {"name": deployment, "namespace": ns, "uid": str(uuid.uuid4())},
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": deployment}}},
            }
            template = {
                "metadata": {"labels": {"app": deployment}},
                "spec": {"containers": [{"name": deployment, "image": image}]},
            }
            rs = replica_set_for(ghost, revision, template, f"old{revision}", replicas)
            return api.store(RS, rs, created=True)

        return self.call(seed)  # type: ignore[no-any-return]

    def patch_deployment(self, ns: str, name: str, patch: Obj) -> Obj:
        """A strategic merge patch through the API's own path, as `kubectl set image` or
        `kubectl edit` would send (generation bump, then the controller rolls it out)."""
        return self.call(  # type: ignore[no-any-return]
            lambda api: api.patch(DEPLOY, ns, name, "application/strategic-merge-patch+json", patch)
        )

    def set_image(self, ns: str, name: str, image: str, cause: str | None = None) -> Obj:
        patch: Obj = {
            "spec": {"template": {"spec": {"containers": [{"name": name, "image": image}]}}}
        }
        if cause:
            patch["metadata"] = {"annotations": {CHANGE_CAUSE: cause}}
        return self.patch_deployment(ns, name, patch)

    def wait(
        self, ns: str, name: str, predicate: Callable[[Obj], bool], timeout: float = 10
    ) -> Obj:
        """Wait until the deployment satisfies `predicate` (the controller works meanwhile)."""
        end = time.monotonic() + timeout
        while True:
            dep = self.obj(DEPLOY, ns, name)
            if dep is not None and predicate(dep):
                return dep
            if time.monotonic() > end:
                raise AssertionError(f"deployment {ns}/{name} never got there: {dep}")
            time.sleep(0.02)

    def wait_rolled_out(self, ns: str, name: str, timeout: float = 10) -> Obj:
        return self.wait(ns, name, rolled_out, timeout)

    def logs(
        self, ns: str, pod_name: str, container: str, text: str, previous: bool = False
    ) -> None:
        store = "previous_logs" if previous else "logs"
        self.call(lambda api: getattr(api, store).__setitem__((ns, pod_name, container), text))

    def event(
        self,
        ns: str,
        name: str,
        reason: str,
        message: str,
        kind: str = "Pod",
        type_: str = "Warning",
        count: int = 3,
    ) -> None:
        def seed(api: ApiServer) -> None:
            target = (
                api.get(POD if kind == "Pod" else DEPLOY, ns, name)
                if kind in ("Pod", "Deployment")
                else None
            )
            involved = {"kind": kind, "name": name, "namespace": ns}
            if target is not None:
                involved["uid"] = target["metadata"]["uid"]
                involved["apiVersion"] = target["apiVersion"]
            obj = {
                "metadata": {"name": f"{name}.{reason.lower()}", "namespace": ns},
                "involvedObject": involved,
                "reason": reason,
                "message": message,
                "type": type_,
                "count": count,
                "source": {"component": "kubelet", "host": "node-1"},
                "firstTimestamp": "2026-01-01T00:00:00Z",
                "lastTimestamp": "2026-01-01T00:00:00Z",
            }
            key = (EVENT, ns, obj["metadata"]["name"])
            if key in api.objects:
                api.remove(EVENT, ns, obj["metadata"]["name"])
            api.store(EVENT, obj, created=True)

        self.call(seed)

    def metrics(self, ns: str, pod_name: str, cpu: str, memory: str) -> None:
        """Serve the metrics API (from now on) with this pod's usage."""
        obj = {
            "metadata": {"name": pod_name, "namespace": ns, "labels": {}},
            "timestamp": "2026-01-01T00:00:00Z",
            "window": "30s",
            "containers": [{"name": "main", "usage": {"cpu": cpu, "memory": memory}}],
        }

        def seed(api: ApiServer) -> None:
            api.metrics_served = True
            pod = api.get(POD, ns, pod_name)
            if pod is not None:
                obj["metadata"]["labels"] = pod["metadata"].get("labels") or {}
                obj["containers"][0]["name"] = pod["spec"]["containers"][0]["name"]
            api.store(PODMETRICS, obj, created=True)

        self.call(seed)


def rolled_out(dep: Obj) -> bool:
    """kubectl's verdict: observed, all replicas updated and available, no old ones left."""
    status, want = dep.get("status") or {}, dep["spec"].get("replicas", 1)
    return bool(
        status.get("observedGeneration", 0) >= dep["metadata"].get("generation", 1)
        and status.get("updatedReplicas", 0) == want
        and status.get("replicas", 0) == want
        and status.get("availableReplicas", 0) == want
    )


@contextmanager
def k8s_double(directory: Path, tick: float = 0.05) -> Iterator[K8sDouble]:
    double = K8sDouble(directory, tick)
    try:
        yield double
    finally:
        double.close()
