"""Reaching a cluster: kubeconfig/context/namespace resolution and readable API errors.

A `Cluster` is created once per (kubeconfig, context) per run and kept in
`ctx.resources`, so ten steps make one TLS handshake, not ten. Every failure a
responder can meet at 3 a.m. is turned into one line that says what to fix:
a missing kubeconfig or context (with the contexts that do exist), an RBAC
denial (verb and resource), a missing object, an unreachable API server.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbook.contract import ExecContext, ExecutorError, import_optional

from ..operations import one_line

DEFAULT_REQUEST_TIMEOUT = 30.0


class ClusterError(ExecutorError):
    """The cluster cannot be reached or configured; the message says what to fix."""


@dataclass
class Cluster:
    """An API client bound to a namespace, with the per-request timeout to use."""

    api: Any  # kubernetes.client.ApiClient
    namespace: str
    timeout: float
    where: str

    def close(self) -> None:
        self.api.close()

    def apps(self) -> Any:
        from kubernetes import client

        return client.AppsV1Api(self.api)

    def core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.api)

    def custom(self) -> Any:
        from kubernetes import client

        return client.CustomObjectsApi(self.api)


def _setting(config: Mapping[str, Any], ctx: ExecContext, key: str) -> str | None:
    options = dict(getattr(ctx.target, "options", {}) or {})
    value = config.get(key) or options.get(key)
    return str(value) if value else None


def kubeconfig_files(explicit: str | None) -> tuple[Path, ...]:
    """The kubeconfig files to merge, in precedence order; () means in-cluster config.

    kubectl's loading rules: an explicit file; else every existing file of KUBECONFIG
    (path-separated, missing ones skipped, ~/.kube/config NOT consulted when KUBECONFIG is
    set); else ~/.kube/config; else in-cluster config when running in a pod.
    """
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ClusterError(f"kubeconfig not found: {path}")
        return (path,)
    listed = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    candidates = [Path(p).expanduser() for p in listed] or [Path("~/.kube/config").expanduser()]
    found: list[Path] = []
    for path in candidates:
        if path.is_file() and path not in found:
            found.append(path)
    if found or os.environ.get("KUBERNETES_SERVICE_HOST"):
        return tuple(found)
    if listed:
        raise ClusterError(
            "no kubeconfig: none of the files in KUBECONFIG exist "
            f"({os.pathsep.join(listed)}), and in-cluster config is not available here"
        )
    raise ClusterError(
        "no kubeconfig: set `kubeconfig` on the step or target, or KUBECONFIG, "
        "or create ~/.kube/config (in-cluster config is not available here either)"
    )


def merged_kubeconfig(paths: tuple[Path, ...]) -> dict[str, Any]:
    """The files merged as kubectl merges them: the first file to define a cluster, context
    or user by name wins, and so does the first `current-context` that is set."""
    import yaml

    merged: dict[str, Any] = {"clusters": [], "contexts": [], "users": []}
    for path in paths:
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ClusterError(f"cannot read kubeconfig {path}: {one_line(str(exc))}") from None
        if not isinstance(doc, dict):
            raise ClusterError(f"cannot read kubeconfig {path}: not a mapping")
        for key in ("clusters", "contexts", "users"):
            names = {item.get("name") for item in merged[key]}
            for item in doc.get(key) or []:
                if isinstance(item, dict) and item.get("name") not in names:
                    merged[key].append(item)
                    names.add(item.get("name"))
        if doc.get("current-context") and not merged.get("current-context"):
            merged["current-context"] = doc["current-context"]
    return merged


def connect(config: Mapping[str, Any], ctx: ExecContext) -> Cluster:
    """The cluster for this step, reusing the run's client for the same kubeconfig/context."""
    import_optional("kubernetes", "k8s")
    paths = kubeconfig_files(_setting(config, ctx, "kubeconfig"))
    context = _setting(config, ctx, "context")
    key = f"kubernetes:{os.pathsep.join(map(str, paths))}:{context}"
    cached = ctx.resources.get(key)
    if cached is None:
        cached = _load(paths, context)
        ctx.resources[key] = cached
    timeout = float(config.get("request_timeout", DEFAULT_REQUEST_TIMEOUT))
    if ctx.timeout is not None:
        timeout = max(0.5, min(timeout, ctx.timeout))
    namespace = _setting(config, ctx, "namespace") or cached.namespace
    return Cluster(cached.api, namespace, timeout, cached.where)


def _load(paths: tuple[Path, ...], context: str | None) -> Cluster:
    from kubernetes import client, config
    from kubernetes.config.kube_config import KubeConfigLoader, KubeConfigMerger

    configuration = client.Configuration()
    try:
        if not paths:
            config.load_incluster_config(client_configuration=configuration)
            namespace = _incluster_namespace()
        else:
            merged = merged_kubeconfig(paths)
            namespace = _check_context(merged, paths, context)
            # The client's merger keeps each entry's file (relative certificate paths work)
            # but lets the *last* file's current-context win: set kubectl's (the first).
            files = KubeConfigMerger(os.pathsep.join(str(p) for p in paths))
            files.config.value["current-context"] = merged.get("current-context")
            KubeConfigLoader(
                config_dict=files.config,
                active_context=context,
                config_base_path=None,
                config_persister=files.save_changes,
            ).load_and_set(configuration)
    except config.ConfigException as exc:
        raise ClusterError(f"cannot load Kubernetes config: {one_line(str(exc))}") from None
    configuration.retries = 0  # an unreachable API server must fail fast, not in 3 rounds
    where = f"{configuration.host} (context {context or 'current'})"
    return Cluster(client.ApiClient(configuration), namespace, DEFAULT_REQUEST_TIMEOUT, where)


def _check_context(merged: Mapping[str, Any], paths: tuple[Path, ...], context: str | None) -> str:
    """Fail with the available contexts listed; return the context's namespace."""
    where = "kubeconfig " + os.pathsep.join(str(p) for p in paths)
    contexts = {c.get("name"): c.get("context") or {} for c in merged.get("contexts") or []}
    wanted = context or merged.get("current-context")
    if not wanted:
        raise ClusterError(f"{where} has no current-context; set `context`")
    if wanted not in contexts:
        known = ", ".join(sorted(str(c) for c in contexts)) or "none"
        raise ClusterError(f"context '{wanted}' not found in {where} (available: {known})")
    return str(contexts[wanted].get("namespace") or "default")


def _incluster_namespace() -> str:
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return path.read_text().strip() if path.is_file() else "default"


def describe_api_error(exc: Exception, detail: Mapping[str, Any]) -> str | None:
    """One line for a client/API failure, or None when `exc` is not one (a bug: re-raised)."""
    import urllib3
    from kubernetes.client.exceptions import ApiException

    what = f"{detail['verb']} {detail['path']}"
    if isinstance(exc, ApiException):
        return _api_exception(exc, detail, what)
    if isinstance(exc, urllib3.exceptions.MaxRetryError | urllib3.exceptions.HTTPError):
        reason = getattr(exc, "reason", None) or exc
        text = one_line(str(reason))
        if "refused" in text.lower():
            text = "connection refused"
        return f"Kubernetes API server unreachable ({what}): {text}"
    if isinstance(exc, OSError):
        return f"Kubernetes API server unreachable ({what}): {one_line(str(exc))}"
    return None


def _api_exception(exc: Any, detail: Mapping[str, Any], what: str) -> str:
    message = ""
    try:
        message = str(json.loads(exc.body or "{}").get("message", ""))
    except (ValueError, AttributeError):
        message = one_line(str(exc.body or ""))[:200]
    verb = {"GET": "get", "PATCH": "patch", "POST": "create"}.get(detail["verb"], detail["verb"])
    if exc.status == 403:
        return f"forbidden by RBAC: cannot {verb} {detail['path']} ({message})"
    if exc.status == 401:
        return f"unauthorized: the cluster rejected the credentials for {what}"
    if exc.status == 404:
        args = detail.get("args", {})
        name = args.get("deployment") or args.get("pod") or args.get("name")
        kind = "deployment" if args.get("deployment") else "object"
        if name:
            return f"{kind} '{name}' not found in namespace '{detail['namespace']}' ({message})"
        return f"not found: {what} ({message})"
    return f"Kubernetes API error {exc.status} {exc.reason} on {what}: {message}"
