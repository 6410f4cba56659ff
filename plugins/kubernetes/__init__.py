"""The `kubernetes` executor: the seeds' `kubectl` procedures as typed steps.

One operation per step (`get`, `logs`, `describe`, `top`, `rollout_status`,
`rollout_history`, `rollout_restart`, `rollout_undo`, `rollout_pause`,
`rollout_resume`, `scale`, `exec`). Reads are checks a dry-run may run; the rest
are actions whose plan is the exact API call (`PATCH apps/v1
namespaces/production/deployments/api (spec.replicas=5)`), and they give kubectl's
answers (restart = the `restartedAt` annotation patch, refused while paused; undo =
the previous ReplicaSet's template, owned by the deployment's uid, "skipped" when it
already matches; see docs/peers.md for where we deliberately differ). `exec` may
be a check (its author means it to read) but a dry-run never runs it: a command in
a container can do anything. The cluster comes from the step, then the target
(`transport: kubernetes`, `kubeconfig`, `context`, `namespace`), then KUBECONFIG
(every file, merged as kubectl merges them) or ~/.kube/config, then in-cluster
config. The official client is imported only when a step runs, so `runbook plan`
never pays for it.
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

_DEPLOY = {"deployment": prop("string", "Deployment name.", minLength=1)}
_SELECT = {
    "selector": prop("string", "Label selector, e.g. 'app=api,tier!=canary'."),
    "field_selector": prop("string", "Field selector, e.g. 'status.phase=Running'."),
}
OPERATIONS: Mapping[str, Mapping[str, Any]] = {
    "get": {
        "description": "List pods, deployments, replicasets or events; pods add a readiness "
        "summary (ready/total, restarts, crash-looping, by phase).",
        "properties": {
            "kind": {
                "description": "What to list.",
                "enum": ["pods", "deployments", "replicasets", "events"],
            },
            "name": prop("string", "Only this object (events: involving this object)."),
            **_DEPLOY,
            **_SELECT,
        },
        "required": ["kind"],
    },
    "logs": {
        "description": "Container logs of a pod, or of every pod of a deployment.",
        "properties": {
            **_DEPLOY,
            "pod": prop("string", "Pod name (instead of `deployment`)."),
            "container": prop(
                "string",
                "Container (default: as kubectl, the pod's kubectl.kubernetes.io/default-container "
                "annotation, else the first).",
            ),
            "since": prop("string", "Only newer lines: '5m', '1h', '30s'."),
            "tail": prop("integer", "Last N lines per pod.", minimum=0),
            "grep": prop(
                "string",
                "Keep only lines matching this regular expression (RE2 syntax: linear time, "
                "no backreferences or lookaround).",
            ),
            "previous": prop(
                "boolean",
                "The previous (crashed) container instance, like `kubectl logs --previous`; "
                "across a deployment, pods that never restarted are listed in `no_previous`.",
            ),
        },
        "oneOf": [{"required": ["deployment"]}, {"required": ["pod"]}],
    },
    "describe": {
        "description": "Pods as `kubectl describe pod` shows them: per container the image, "
        "limits/requests, probes, state and last state (reason, exit code, e.g. OOMKilled), "
        "readiness and restart count; per pod the conditions and its events.",
        "properties": {
            "pod": prop("string", "Pod name (instead of `deployment`/`selector`)."),
            **_DEPLOY,
            **_SELECT,
        },
        "anyOf": [
            {"required": ["pod"]},
            {"required": ["deployment"]},
            {"required": ["selector"]},
        ],
    },
    "top": {
        "description": "CPU/memory per pod from the metrics API (metrics-server).",
        "properties": _SELECT,
    },
    "rollout_status": {
        "description": "Watch until the deployment's rollout is complete (or timeout); a "
        "rollout past its progress deadline fails at once, as in kubectl.",
        "properties": {
            **_DEPLOY,
            "timeout": prop("number", "Seconds (default 300).", exclusiveMinimum=0),
            "interval": prop(
                "number",
                "Seconds between progress reports when nothing changes (default 2).",
                exclusiveMinimum=0,
            ),
        },
        "required": ["deployment"],
    },
    "rollout_history": {
        "description": "Revisions of the deployment's own ReplicaSets, with change-cause "
        "and images (kubectl rollout history).",
        "properties": {
            **_DEPLOY,
            "revision": prop("integer", "Only this revision.", minimum=1),
        },
        "required": ["deployment"],
    },
    "rollout_restart": {
        "description": "kubectl rollout restart (refused while the deployment is paused).",
        "properties": _DEPLOY,
        "required": ["deployment"],
    },
    "rollout_undo": {
        "description": "Roll back to the previous (or a given) ReplicaSet revision "
        "(refused while paused; `skipped` when the template already matches).",
        "properties": {
            **_DEPLOY,
            "to_revision": prop("integer", "Revision (default: the previous one).", minimum=0),
        },
        "required": ["deployment"],
    },
    "rollout_pause": {
        "description": "Pause rollouts (an error when already paused, as in kubectl).",
        "properties": _DEPLOY,
        "required": ["deployment"],
    },
    "rollout_resume": {
        "description": "Resume rollouts (an error when not paused, as in kubectl).",
        "properties": _DEPLOY,
        "required": ["deployment"],
    },
    "scale": {
        "description": "Set replicas; the previous count is in the result.",
        "properties": {**_DEPLOY, "replicas": prop("integer", "Replicas.", minimum=0)},
        "required": ["deployment", "replicas"],
    },
    "exec": {
        "description": "Run argv in a container (e.g. pg_isready) and capture its output; "
        "usable as a check, never run by a dry-run.",
        "properties": {
            **_DEPLOY,
            "pod": prop("string", "Pod name (instead of `deployment`)."),
            "container": prop(
                "string",
                "Container (default: as kubectl, the pod's kubectl.kubernetes.io/default-container "
                "annotation, else the first).",
            ),
            "argv": {
                "description": "Program and arguments (no shell).",
                "type": "array",
                "items": {"type": "string"},
                "minItems": 1,
            },
            "parse": {
                "description": "`json`: parse stdout as one JSON document into the result's "
                "`json`, as the shell executor does (after exit status 0, stdout that is not "
                "JSON is an error). Without it `json` is None.",
                "enum": ["json"],
            },
        },
        "required": ["argv"],
        "anyOf": [{"required": ["pod"]}, {"required": ["deployment"]}],
    },
}
COMMON: Mapping[str, Any] = {
    "target": prop("string", "Target (transport: kubernetes) with kubeconfig/context/namespace."),
    "namespace": prop("string", "Namespace (default: the target's, then the context's)."),
    "context": prop("string", "kubeconfig context (default: the current one)."),
    "kubeconfig": prop(
        "string", "kubeconfig path (default: KUBECONFIG, ~/.kube/config, then in-cluster)."
    ),
    "request_timeout": prop("number", "Seconds per API request (default 30).", exclusiveMinimum=0),
}
SCHEMA = op_schema(
    "kubernetes", "Read and operate Kubernetes workloads like kubectl does.", OPERATIONS, COMMON
)
READ_ONLY = frozenset({"get", "logs", "describe", "top", "rollout_status", "rollout_history"})
RESULT_FIELDS: Mapping[str, str] = {
    "healthy": "the operation's verdict: all pods ready, rollout complete, metrics present...",
    "items / count / names": "get: objects (summarised) and their names",
    "ready / total / restarts / crash_looping / phases": "get pods: readiness summary",
    "lines / matches / pods / no_previous": "logs: line count, lines matching grep, pods "
    "read (previous: pods without a previous container)",
    "pods / oom_killed / last_reasons / restarts / warnings": "describe: per pod and "
    "container (image, limits, probes, state, last state), OOMKilled seen, Warning events",
    "pods / available": "top: [{name, cpu_millicores, memory_bytes}], metrics API present",
    "complete / updated / ready_replicas / available_replicas / revision": "rollout_status "
    "(the counts also after rollout actions)",
    "previous_replicas / replicas": "scale",
    "complete / deadline_exceeded / message": "rollout_status: kubectl's verdict and words",
    "revisions / numbers / current": "rollout_history: [{revision, change_cause, images}]",
    "from_revision / to_revision / rolled_back / skipped": "rollout_undo",
    "exit_code / stdout / stderr / json": "exec (json: stdout parsed, with `parse: json`)",
}


def namespace_of(config: Mapping[str, Any], target: Any) -> str | None:
    options = dict(getattr(target, "options", {}) or {})
    value = config.get("namespace") or options.get("namespace")
    return str(value) if value else None


def _call(name: str, args: Mapping[str, Any], ns: str) -> tuple[str, str, str]:
    """(HTTP verb, API path, what changes) of the operation, as the API server sees it."""
    dep = f"apis/apps/v1 namespaces/{ns}/deployments/{args.get('deployment', '')}"
    if name == "get":
        group = "apis/apps/v1" if args["kind"] in ("deployments", "replicasets") else "api/v1"
        keys = ("name", "deployment", "selector", "field_selector")
        sel = " ".join(f"{k}={args[k]}" for k in keys if args.get(k))
        return "GET", f"{group} namespaces/{ns}/{args['kind']}", sel
    if name == "logs":
        who = (
            f"pods/{args['pod']}"
            if args.get("pod")
            else f"pods/<each pod of deployment {args['deployment']}>"
        )
        opts = " ".join(
            f"{k}={args[k]}"
            for k in ("container", "since", "tail", "grep", "previous")
            if k in args
        )
        return "GET", f"api/v1 namespaces/{ns}/{who}/log", opts
    if name == "describe":
        who = (
            f"pods/{args['pod']}"
            if args.get("pod")
            else "pods ("
            + " ".join(
                f"{k}={args[k]}"
                for k in ("deployment", "selector", "field_selector")
                if args.get(k)
            )
            + ")"
        )
        return "GET", f"api/v1 namespaces/{ns}/{who}", "and their events"
    if name == "rollout_history":
        return (
            "GET",
            f"apis/apps/v1 namespaces/{ns}/replicasets",
            (f"owned by deployment {args['deployment']}"),
        )
    if name == "top":
        return "GET", f"apis/metrics.k8s.io/v1beta1 namespaces/{ns}/pods", args.get("selector", "")
    if name == "rollout_status":
        return "GET", dep, f"watch until complete, timeout {args.get('timeout', 300)}s"
    if name == "scale":
        return "PATCH", dep + "/scale", f"spec.replicas={args['replicas']}"
    if name == "rollout_restart":
        return (
            "PATCH",
            dep,
            "spec.template.metadata.annotations.kubectl.kubernetes.io/restartedAt=<now>",
        )
    if name == "rollout_undo":
        to = args.get("to_revision", "previous")
        return (
            "PATCH",
            dep,
            (f"spec.template, metadata.annotations=<those of the ReplicaSet of revision {to}>"),
        )
    if name in ("rollout_pause", "rollout_resume"):
        return "PATCH", dep, f"spec.paused={'true' if name == 'rollout_pause' else 'false'}"
    who = (
        f"pods/{args['pod']}"
        if args.get("pod")
        else f"pods/<a pod of deployment {args.get('deployment')} whose container runs>"
    )
    return "POST", f"api/v1 namespaces/{ns}/{who}/exec", "argv=" + " ".join(args["argv"])


def plan(config: Mapping[str, Any], ctx: PlanContext) -> PlannedCall:
    """The exact API call; the namespace reads `<context default>` when only kubeconfig knows it."""
    name, args = operation(config, OPERATIONS)
    ns = namespace_of(config, ctx.target) or "<context default>"
    verb, path, change = _call(name, args, ns)
    options = dict(getattr(ctx.target, "options", {}) or {})
    detail: dict[str, Any] = {
        "operation": name,
        "verb": verb,
        "path": path,
        "args": args,
        "namespace": ns,
    }
    for key in ("context", "kubeconfig"):
        if config.get(key) or options.get(key):
            detail[key] = config.get(key) or options.get(key)
    summary = f"{verb} {path}" + (f" ({change})" if change else "")
    return PlannedCall(summary, detail)


def run(config: Mapping[str, Any], ctx: ExecContext) -> StepResult:
    """Connect (client reused for the run), do the operation, turn API errors into one line."""
    from .client import ClusterError, connect, describe_api_error
    from .ops import OPERATIONS as IMPL

    import_optional("kubernetes", "k8s")  # MissingExtra: the exact pip command
    name, args = operation(config, OPERATIONS)
    detail = dict(plan(config, PlanContext(ctx.step_id, ctx.target)).detail)
    start = time.monotonic()
    try:
        cluster = connect(config, ctx)
        located = {**config, "namespace": cluster.namespace}
        detail = dict(plan(located, PlanContext(ctx.step_id, ctx.target)).detail)
        fields, text = IMPL[name](cluster, args, ctx)
    except ClusterError as exc:
        return StepResult.failure(str(exc), elapsed=time.monotonic() - start, call=detail)
    except Exception as exc:
        message = describe_api_error(exc, detail)
        if message is None:
            raise
        return StepResult.failure(message, elapsed=time.monotonic() - start, call=detail)
    return StepResult(
        ok=True, fields=fields, output=text, elapsed=time.monotonic() - start, call=detail
    )


def side_effect_free(config: Mapping[str, Any]) -> bool:
    """`get`, `logs`, `describe`, `top`, `rollout_status`, `rollout_history`: fixed
    GET/list/watch requests to the API server, whatever the arguments. Not the rollout
    actions, `scale`, nor `exec` even as a check: the command in the container can do
    anything."""
    named = [op for op in OPERATIONS if op in config]
    return bool(named) and set(named) <= READ_ONLY


SPEC = ExecutorSpec(
    name="kubernetes",
    schema=SCHEMA,
    plan=plan,
    run=run,
    read_only=False,
    read_only_when=lambda config: any(op in config for op in READ_ONLY),
    side_effect_free_when=side_effect_free,
    default_expect=("healthy",),
    description="Kubernetes like kubectl: get/logs (incl. previous)/describe/top/rollout "
    "status/history (checks); rollout restart/undo/pause/resume, scale (actions); exec "
    "(check or action, never run by a dry-run); official client, extra 'k8s'.",
    result_fields=RESULT_FIELDS,
)


@hookimpl
def runbook_executors() -> list[ExecutorSpec]:
    """The kubernetes executor."""
    return [SPEC]
