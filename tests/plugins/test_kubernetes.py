"""The kubernetes executor against the kmock API double: the real client, real HTTP."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from runbook_plugins import kubernetes as k8s_plugin
from support.http_servers import closed_port
from support.k8s_double import DEPLOY, K8sDouble

from runbook.contract import ExecContext, PlanContext, StepResult
from runbook.load.model import Target

NS = "production"


def run(double: K8sDouble, op: dict[str, Any], **extra: Any) -> StepResult:
    config = {"kubeconfig": str(double.kubeconfig), "namespace": NS, **op, **extra}
    return k8s_plugin.run(config, ExecContext("step", timeout=10))


def test_pod_readiness_summary_counts_ready_restarts_and_crash_loops(k8s: K8sDouble) -> None:
    k8s.deployment(NS, "api", ["api:1"], replicas=3, crashloop=1, restarts=1)
    k8s.deployment(NS, "web", ["web:1"], replicas=2)
    result = run(k8s, {"get": {"kind": "pods", "deployment": "api"}})
    assert result.ok, result.error
    f = result.fields
    assert (f["ready"], f["total"], f["restarts"]) == (2, 3, 10)
    assert f["crash_looping"] == ["api-h1-0"] and f["phases"] == {"Running": 3}
    assert f["healthy"] is False
    assert run(k8s, {"get": {"kind": "pods", "selector": "app=web"}}).fields["names"] == [
        "web-h1-0",
        "web-h1-1",
    ]


def test_events_are_filtered_by_field_selector(k8s: K8sDouble) -> None:
    k8s.event(NS, "api-1", "BackOff", "Back-off restarting failed container")
    k8s.event(NS, "api-2", "Pulled", "pulled", type_="Normal")
    result = run(k8s, {"get": {"kind": "events", "field_selector": "type=Warning"}})
    assert [e["reason"] for e in result.fields["items"]] == ["BackOff"]


def test_logs_of_a_deployment_are_prefixed_tailed_and_grepped(k8s: K8sDouble) -> None:
    k8s.deployment(NS, "api", ["api:1"], replicas=2)
    k8s.logs(NS, "api-h1-0", "api", "starting\nERROR db timeout\nok\n")
    k8s.logs(NS, "api-h1-1", "api", "ERROR old\nfine\n")
    result = run(k8s, {"logs": {"deployment": "api", "tail": 2, "grep": "ERROR"}})
    assert result.fields["pods"] == ["api-h1-0", "api-h1-1"]
    assert result.output.splitlines() == [
        "[pod/api-h1-0] ERROR db timeout",
        "[pod/api-h1-1] ERROR old",
    ]
    assert result.fields["lines"] == 4


def test_top_says_metrics_server_is_missing_or_sums_usage(k8s: K8sDouble) -> None:
    missing = run(k8s, {"top": {}})
    assert missing.ok and missing.fields["available"] is False
    assert "metrics-server not available" in missing.output
    k8s.metrics(NS, "api-1", "250m", "128Mi")
    k8s.metrics(NS, "api-2", "0.5", "64Mi")
    present = run(k8s, {"top": {}})
    assert present.fields["cpu_millicores"] == 750
    assert present.fields["memory_bytes"] == 192 * 2**20


def test_scale_records_the_previous_replica_count(k8s: K8sDouble) -> None:
    k8s.deployment(NS, "api", ["api:1"], replicas=2)
    result = run(k8s, {"scale": {"deployment": "api", "replicas": 5}})
    assert (result.fields["previous_replicas"], result.fields["replicas"]) == (2, 5)
    assert k8s.obj(DEPLOY, NS, "api")["spec"]["replicas"] == 5


def test_restart_patches_the_restarted_at_annotation_like_kubectl(k8s: K8sDouble) -> None:
    k8s.deployment(NS, "api", ["api:1"])
    result = run(k8s, {"rollout_restart": {"deployment": "api"}})
    annotations = k8s.obj(DEPLOY, NS, "api")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["kubectl.kubernetes.io/restartedAt"] == result.fields["restarted_at"]
    status = run(k8s, {"rollout_status": {"deployment": "api"}})
    assert status.fields["complete"] and status.fields["revision"] == "2"


def test_undo_restores_the_previous_or_a_given_revision(k8s: K8sDouble) -> None:
    k8s.deployment(NS, "api", ["api:1", "api:2", "api:3"])
    undo = run(k8s, {"rollout_undo": {"deployment": "api"}})
    assert (undo.fields["from_revision"], undo.fields["to_revision"]) == (3, 2)
    image = k8s.obj(DEPLOY, NS, "api")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "api:2"
    run(k8s, {"rollout_undo": {"deployment": "api", "to_revision": 1}})
    image = k8s.obj(DEPLOY, NS, "api")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "api:1"
    bad = run(k8s, {"rollout_undo": {"deployment": "api", "to_revision": 9}})
    assert not bad.ok and "has no revision 9" in str(bad.error)


def test_pause_and_resume_flip_spec_paused(k8s: K8sDouble) -> None:
    k8s.deployment(NS, "api", ["api:1"])
    assert run(k8s, {"rollout_pause": {"deployment": "api"}}).fields["paused"] is True
    assert k8s.obj(DEPLOY, NS, "api")["spec"]["paused"] is True
    assert run(k8s, {"rollout_resume": {"deployment": "api"}}).fields["paused"] is False


def test_rollout_status_gives_up_at_its_timeout(k8s: K8sDouble) -> None:
    k8s.deployment(NS, "api", ["api:1"], replicas=3, ready=1)
    result = run(k8s, {"rollout_status": {"deployment": "api", "timeout": 0.5, "interval": 0.1}})
    assert result.ok and result.fields["complete"] is False
    assert "1 of 3 updated replicas are available" in result.output


def test_missing_deployment_rbac_and_unreachable_fail_with_one_line(k8s: K8sDouble) -> None:
    missing = run(k8s, {"scale": {"deployment": "nope", "replicas": 1}})
    assert missing.error is not None
    assert missing.error.startswith("deployment 'nope' not found in namespace 'production'")
    k8s.deployment(NS, "api", ["api:1"])
    k8s.deny("patch", "deployments")
    denied = run(k8s, {"rollout_restart": {"deployment": "api"}})
    assert denied.error is not None and denied.error.startswith(
        "forbidden by RBAC: cannot patch apis/apps/v1 namespaces/production/deployments/api"
    )
    offline = K8sDouble.write_kubeconfig(k8s, k8s.directory / "offline", "x")
    text = offline.read_text().replace(k8s.url, f"http://127.0.0.1:{closed_port()}")
    offline.write_text(text)
    down = run(k8s, {"get": {"kind": "pods"}}, kubeconfig=str(offline))
    assert down.error is not None and "API server unreachable" in down.error
    assert "connection refused" in down.error


def test_missing_kubeconfig_or_context_names_what_exists(k8s: K8sDouble) -> None:
    no_context = run(k8s, {"get": {"kind": "pods"}}, context="prod")
    assert no_context.error == (
        f"context 'prod' not found in kubeconfig {k8s.kubeconfig} (available: double)"
    )
    assert run(k8s, {"get": {"kind": "pods"}}, kubeconfig="/nonexistent").error == (
        "kubeconfig not found: /nonexistent"
    )


def test_target_supplies_kubeconfig_and_namespace(k8s: K8sDouble) -> None:
    k8s.deployment("staging", "api", ["api:1"])
    target = Target(
        "cluster", "kubernetes", {"kubeconfig": str(k8s.kubeconfig), "namespace": "staging"}
    )
    ctx = ExecContext("s", timeout=10, target=target)
    result = k8s_plugin.run({"target": "cluster", "get": {"kind": "deployments"}}, ctx)
    assert result.fields["names"] == ["api"]


class LocalProcessExec:
    """A stand-in *container*: runs argv here. The double cannot upgrade to websockets,
    so exec is tested through the swappable transport; pod selection and results are ours."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    def exec(
        self, cluster: Any, pod: str, container: str | None, argv: list[str], timeout: float
    ) -> tuple[int, str, str]:
        self.calls.append((pod, argv))
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        return proc.returncode, proc.stdout, proc.stderr


def test_exec_picks_a_running_pod_and_reports_exit_code(k8s: K8sDouble) -> None:
    k8s.deployment(NS, "db", ["pg:15"], replicas=1)
    transport = LocalProcessExec()
    ctx = ExecContext("s", timeout=10, resources={"kubernetes.exec": transport})
    config = {
        "kubeconfig": str(k8s.kubeconfig),
        "namespace": NS,
        "exec": {"deployment": "db", "argv": ["sh", "-c", "echo accepting; exit 0"]},
    }
    result = k8s_plugin.run(config, ctx)
    assert result.fields["exit_code"] == 0 and result.output == "accepting\n"
    assert transport.calls[0][0] == "db-h1-0"


def test_default_exec_transport_explains_a_refused_websocket(k8s: K8sDouble) -> None:
    k8s.deployment(NS, "db", ["pg:15"], replicas=1)
    result = run(k8s, {"exec": {"pod": "db-h1-0", "argv": ["pg_isready"]}})
    assert result.error is not None and "did not accept the websocket upgrade" in result.error


@pytest.mark.parametrize(
    ("op", "summary"),
    [
        (
            {"scale": {"deployment": "api", "replicas": 5}},
            "PATCH apis/apps/v1 namespaces/production/deployments/api/scale (spec.replicas=5)",
        ),
        (
            {"rollout_pause": {"deployment": "api"}},
            "PATCH apis/apps/v1 namespaces/production/deployments/api (spec.paused=true)",
        ),
        (
            {"get": {"kind": "pods", "selector": "app=api"}},
            "GET api/v1 namespaces/production/pods (selector=app=api)",
        ),
    ],
)
def test_plan_shows_the_exact_api_call(op: dict[str, Any], summary: str) -> None:
    planned = k8s_plugin.plan({"namespace": NS, **op}, PlanContext("s"))
    assert planned.summary == summary


def test_reads_are_checks_and_changes_are_actions() -> None:
    spec = k8s_plugin.SPEC
    assert spec.is_read_only({"get": {"kind": "pods"}})
    assert spec.is_read_only({"rollout_status": {"deployment": "a"}})
    assert not spec.is_read_only({"scale": {"deployment": "a", "replicas": 1}})
    assert not spec.is_read_only({"exec": {"pod": "a", "argv": ["x"]}})
