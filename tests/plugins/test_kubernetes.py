"""The kubernetes executor against the API double: the real client, real HTTP, a controller
that rolls out over time. What kubectl itself answers on the same state is in
test_kubectl_differential.py."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from runbook_plugins import kubernetes as k8s_plugin
from support.http_servers import closed_port
from support.k8s_double import DEPLOY, K8sDouble

from runbook.contract import ExecContext, PlanContext, StepResult
from runbook.load.model import Target

NS = "production"
LIMITS = {
    "resources": {"limits": {"memory": "128Mi", "cpu": "500m"}, "requests": {"memory": "64Mi"}},
    "livenessProbe": {
        "httpGet": {"path": "/healthz", "port": 8080},
        "initialDelaySeconds": 5,
        "periodSeconds": 10,
    },
}


def run(double: K8sDouble, op: dict[str, Any], **extra: Any) -> StepResult:
    config = {"kubeconfig": str(double.kubeconfig), "namespace": NS, **op, **extra}
    return k8s_plugin.run(config, ExecContext("step", timeout=10))


def template_image(k8s: K8sDouble, name: str = "api") -> str:
    dep = k8s.obj(DEPLOY, NS, name)
    assert dep is not None
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


# -- reads -----------------------------------------------------------------------------------
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


def test_previous_logs_are_the_crashed_container_s(k8s: K8sDouble) -> None:
    k8s.deployment(NS, "api", ["api:1"], replicas=2, crashloop=1, crash_reason="OOMKilled")
    k8s.logs(NS, "api-h1-0", "api", "starting again\n")
    k8s.logs(NS, "api-h1-0", "api", "loading cache\nkilled\n", previous=True)
    one = run(k8s, {"logs": {"pod": "api-h1-0", "previous": True}})
    assert one.ok and one.output == "loading cache\nkilled"
    assert one.fields["previous"] is True
    # a container that never restarted has no previous instance: the API's own answer
    never = run(k8s, {"logs": {"pod": "api-h1-1", "previous": True}})
    assert never.error is not None
    assert 'previous terminated container "api" in pod "api-h1-1" not found' in never.error
    # across a deployment, such pods are named, not fatal
    both = run(k8s, {"logs": {"deployment": "api", "previous": True, "grep": "killed"}})
    assert both.ok and both.fields["pods"] == ["api-h1-0"]
    assert both.fields["no_previous"] == ["api-h1-1"]
    assert both.output == "[pod/api-h1-0] killed"


def test_logs_and_exec_default_to_the_container_kubectl_picks(k8s: K8sDouble) -> None:
    proxy = [{"name": "proxy", "image": "envoy:1"}]
    k8s.deployment(
        NS,
        "api",
        ["api:1"],
        replicas=1,
        sidecars=proxy,
        pod_annotations={"kubectl.kubernetes.io/default-container": "api"},
    )
    k8s.deployment(NS, "web", ["web:1"], replicas=1, sidecars=proxy)
    for pod, container in (("api-h1-0", "api"), ("api-h1-0", "proxy"), ("web-h1-0", "proxy")):
        k8s.logs(NS, pod, container, f"{container} says hi\n")
    assert run(k8s, {"logs": {"pod": "api-h1-0"}}).output == "api says hi"  # the annotation
    assert run(k8s, {"logs": {"pod": "web-h1-0"}}).output == "proxy says hi"  # the first
    named = run(k8s, {"logs": {"pod": "api-h1-0", "container": "proxy"}})
    assert named.output == "proxy says hi"
    seen: list[str] = []
    k8s.on_exec(lambda ns, pod, container, argv: (seen.append(container), (0, "", ""))[1])
    assert run(k8s, {"exec": {"deployment": "api", "argv": ["true"]}}).fields["container"] == "api"
    assert run(k8s, {"exec": {"pod": "web-h1-0", "argv": ["true"]}}).fields["container"] == "proxy"
    assert seen == ["api", "proxy"]


def test_describe_shows_limits_probes_last_state_and_events(k8s: K8sDouble) -> None:
    k8s.deployment(
        NS,
        "api",
        ["api:1", "api:2"],
        replicas=2,
        crashloop=1,
        container=LIMITS,
        crash_reason="OOMKilled",
        crash_exit_code=137,
    )
    k8s.event(NS, "api-h2-0", "BackOff", "Back-off restarting failed container api")
    result = run(k8s, {"describe": {"deployment": "api"}})
    assert result.ok, result.error
    f = result.fields
    assert f["names"] == ["api-h2-0", "api-h2-1"] and f["oom_killed"] is True
    assert f["last_reasons"] == ["OOMKilled"] and f["crash_looping"] == ["api-h2-0"]
    assert f["restarts"] == 7 and f["images"] == ["api:2"] and f["healthy"] is False
    [crashing, fine] = f["pods"]
    [c] = crashing["containers"]
    assert (c["state"], c["reason"]) == ("Waiting", "CrashLoopBackOff")
    assert (c["last_state"], c["last_reason"], c["last_exit_code"]) == (
        "Terminated",
        "OOMKilled",
        137,
    )
    assert c["limits"] == {"memory": "128Mi", "cpu": "500m"} and c["requests"]["memory"] == "64Mi"
    assert c["liveness"] == (
        "http-get http://:8080/healthz delay=5s timeout=1s period=10s #success=1 #failure=3"
    )
    assert crashing["controlled_by"] == "ReplicaSet/api-h2"
    assert [e["reason"] for e in crashing["events"]] == ["BackOff"] and not fine["events"]
    assert [w["reason"] for w in f["warnings"]] == ["BackOff"]
    assert "Last State: Terminated (OOMKilled, exit code 137" in result.output
    one = run(k8s, {"describe": {"pod": "api-h2-1"}})
    assert one.fields["names"] == ["api-h2-1"] and one.fields["healthy"] is True


def test_top_says_metrics_server_is_missing_or_sums_usage(k8s: K8sDouble) -> None:
    missing = run(k8s, {"top": {}})
    assert missing.ok and missing.fields["available"] is False
    assert "metrics-server not available" in missing.output
    k8s.metrics(NS, "api-1", "250m", "128Mi")
    k8s.metrics(NS, "api-2", "0.5", "64Mi")
    present = run(k8s, {"top": {}})
    assert present.fields["cpu_millicores"] == 750
    assert present.fields["memory_bytes"] == 192 * 2**20


def test_history_lists_only_the_deployment_s_own_revisions(k8s: K8sDouble) -> None:
    k8s.deployment(
        NS, "api", ["api:1", "api:2", "api:3"], change_causes=["initial", "", "bump to 3"]
    )
    # left by a deleted deployment of the same name (another uid): never part of the history
    k8s.leftover_replica_set(NS, "api", revision=7, image="api:ghost")
    result = run(k8s, {"rollout_history": {"deployment": "api"}})
    assert result.ok, result.error
    assert result.fields["numbers"] == [1, 2, 3] and result.fields["current"] == 3
    assert [r["change_cause"] for r in result.fields["revisions"]] == ["initial", None, "bump to 3"]
    assert result.output.splitlines()[1:] == [
        "REVISION  CHANGE-CAUSE  IMAGES",
        "1         initial       api:1",
        "2         <none>        api:2",
        "3         bump to 3     api:3",
    ]
    one = run(k8s, {"rollout_history": {"deployment": "api", "revision": 2}})
    assert one.fields["revisions"] == [
        {"revision": 2, "change_cause": None, "images": ["api:2"], "replica_set": "api-h2"}
    ]
    missing = run(k8s, {"rollout_history": {"deployment": "api", "revision": 7}})
    assert missing.error is not None and "revisions: 1, 2, 3" in missing.error


# -- rollouts --------------------------------------------------------------------------------
def test_scale_records_the_previous_replica_count(k8s: K8sDouble) -> None:
    k8s.deployment(NS, "api", ["api:1"], replicas=2)
    result = run(k8s, {"scale": {"deployment": "api", "replicas": 5}})
    assert (result.fields["previous_replicas"], result.fields["replicas"]) == (2, 5)
    assert k8s.obj(DEPLOY, NS, "api")["spec"]["replicas"] == 5
    dep = k8s.wait_rolled_out(NS, "api")
    assert dep["status"]["availableReplicas"] == 5


def test_restart_patches_the_restarted_at_annotation_and_rolls_out(k8s: K8sDouble) -> None:
    k8s.deployment(NS, "api", ["api:1"], replicas=3)
    result = run(k8s, {"rollout_restart": {"deployment": "api"}})
    annotations = k8s.obj(DEPLOY, NS, "api")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["kubectl.kubernetes.io/restartedAt"] == result.fields["restarted_at"]
    seen: list[str] = []
    ctx = ExecContext("s", timeout=10, progress=seen.append)
    config = {"kubeconfig": str(k8s.kubeconfig), "namespace": NS}
    status = k8s_plugin.run({**config, "rollout_status": {"deployment": "api"}}, ctx)
    assert status.fields["complete"] and status.fields["revision"] == "2"
    assert status.output == 'deployment "api" successfully rolled out'
    # the rollout took steps, each reported as kubectl words it, and was followed by a watch
    assert any("new replicas have been updated" in m for m in seen), seen
    assert status.fields["waited"] < 5


def test_undo_restores_the_previous_or_a_given_revision(k8s: K8sDouble) -> None:
    k8s.deployment(NS, "api", ["api:1", "api:2", "api:3"], change_causes=["one", "two", "three"])
    undo = run(k8s, {"rollout_undo": {"deployment": "api"}})
    assert (undo.fields["from_revision"], undo.fields["to_revision"]) == (3, 2)
    assert undo.fields["rolled_back"] and not undo.fields["skipped"]
    assert template_image(k8s) == "api:2"
    # like kubectl, the restored ReplicaSet's annotations (change-cause) come with it
    notes = k8s.obj(DEPLOY, NS, "api")["metadata"]["annotations"]
    assert notes["kubernetes.io/change-cause"] == "two"
    k8s.wait_rolled_out(NS, "api")
    run(k8s, {"rollout_undo": {"deployment": "api", "to_revision": 1}})
    assert template_image(k8s) == "api:1"
    bad = run(k8s, {"rollout_undo": {"deployment": "api", "to_revision": 9}})
    assert bad.error is not None
    assert bad.error.startswith("unable to find specified revision 9 in history")
    # revisions 1 and 2 were rolled back to: their ReplicaSets now carry 4 and 5
    assert "(revisions of deployment 'api': 3, 4, 5)" in bad.error


def test_undo_never_restores_a_leftover_replica_set_of_the_same_name(k8s: K8sDouble) -> None:
    k8s.deployment(NS, "api", ["api:1", "api:2"])
    # revision 5 of a deleted "api": by name it would be "the previous revision" of nothing,
    # by number it would outrank the live ones; by uid it is not this deployment's at all
    k8s.leftover_replica_set(NS, "api", revision=5, image="api:ghost")
    k8s.leftover_replica_set(NS, "api", revision=1, image="api:ghost-1")
    undo = run(k8s, {"rollout_undo": {"deployment": "api"}})
    assert undo.ok, undo.error
    assert undo.fields["to_revision"] == 1 and template_image(k8s) == "api:1"
    ghost = run(k8s, {"rollout_undo": {"deployment": "api", "to_revision": 5}})
    assert ghost.error is not None and "unable to find specified revision 5" in ghost.error
    listed = run(k8s, {"get": {"kind": "replicasets", "deployment": "api"}})
    assert sorted(listed.fields["names"]) == ["api-h1", "api-h2"]


def test_undo_to_the_current_template_is_skipped(k8s: K8sDouble) -> None:
    k8s.deployment(NS, "api", ["api:1", "api:2"])
    before = k8s.obj(DEPLOY, NS, "api")
    same = run(k8s, {"rollout_undo": {"deployment": "api", "to_revision": 2}})
    assert same.ok and same.fields["skipped"] and not same.fields["rolled_back"]
    assert same.output == (
        "deployment.apps/api skipped rollback (current template already matches revision 2)"
    )
    after = k8s.obj(DEPLOY, NS, "api")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_undo_without_history_fails_like_kubectl(k8s: K8sDouble) -> None:
    k8s.deployment(NS, "api", ["api:1"])
    result = run(k8s, {"rollout_undo": {"deployment": "api"}})
    assert result.error == 'no rollout history found for deployment "api"'


def test_undo_and_restart_refuse_a_paused_deployment(k8s: K8sDouble) -> None:
    k8s.deployment(NS, "api", ["api:1", "api:2"], paused=True)
    before = k8s.obj(DEPLOY, NS, "api")
    undo = run(k8s, {"rollout_undo": {"deployment": "api"}})
    assert undo.error is not None
    assert undo.error.startswith("you cannot rollback a paused deployment; resume it first")
    restart = run(k8s, {"rollout_restart": {"deployment": "api"}})
    assert restart.error == (
        'deployments.apps "api" can\'t restart paused deployment (run rollout resume first)'
    )
    after = k8s.obj(DEPLOY, NS, "api")
    assert after["spec"] == before["spec"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"]


def test_pause_and_resume_flip_spec_paused_and_refuse_a_repeat(k8s: K8sDouble) -> None:
    k8s.deployment(NS, "api", ["api:1"])
    assert run(k8s, {"rollout_pause": {"deployment": "api"}}).fields["paused"] is True
    assert k8s.obj(DEPLOY, NS, "api")["spec"]["paused"] is True
    again = run(k8s, {"rollout_pause": {"deployment": "api"}})
    assert again.error == 'deployments.apps "api" is already paused'
    assert run(k8s, {"rollout_resume": {"deployment": "api"}}).fields["paused"] is False
    assert "paused" not in k8s.obj(DEPLOY, NS, "api")["spec"]
    again = run(k8s, {"rollout_resume": {"deployment": "api"}})
    assert again.error == 'deployments.apps "api" is not paused'


def test_rollout_status_gives_up_at_its_timeout(k8s: K8sDouble) -> None:
    k8s.deployment(NS, "api", ["api:1"], replicas=3, ready=1)
    result = run(k8s, {"rollout_status": {"deployment": "api", "timeout": 0.5, "interval": 0.1}})
    assert result.ok and result.fields["complete"] is False
    assert result.fields["deadline_exceeded"] is False
    assert (
        'Waiting for deployment "api" rollout to finish: 1 of 3 updated replicas are available'
        in result.output
    )
    assert "gave up after" in result.output


def test_rollout_status_fails_at_once_past_the_progress_deadline(k8s: K8sDouble) -> None:
    k8s.deployment(NS, "api", ["api:1"], replicas=2, progress_deadline=1)
    k8s.fail_image("api:broken")
    k8s.set_image(NS, "api", "api:broken")
    k8s.wait(
        NS,
        "api",
        lambda d: any(
            c.get("reason") == "ProgressDeadlineExceeded" for c in d["status"].get("conditions", [])
        ),
    )
    start = time.monotonic()
    result = run(k8s, {"rollout_status": {"deployment": "api", "timeout": 30}})
    assert time.monotonic() - start < 2, "must not keep polling until its timeout"
    assert result.ok and result.fields["complete"] is False
    assert result.fields["deadline_exceeded"] is True
    assert result.output == 'deployment "api" exceeded its progress deadline'


def test_rollout_status_notices_the_deadline_while_it_watches(k8s: K8sDouble) -> None:
    k8s.deployment(NS, "api", ["api:1"], replicas=2, progress_deadline=1)
    k8s.fail_image("api:broken")
    k8s.set_image(NS, "api", "api:broken")
    start = time.monotonic()
    result = run(k8s, {"rollout_status": {"deployment": "api", "timeout": 30, "interval": 5}})
    assert result.fields["deadline_exceeded"] is True
    assert time.monotonic() - start < 4  # the deadline (1 s) plus a tick, not 30 s


def test_rollout_status_of_a_paused_rollout_says_it_is_paused(k8s: K8sDouble) -> None:
    k8s.deployment(NS, "api", ["api:1"], replicas=2)
    run(k8s, {"rollout_pause": {"deployment": "api"}})
    k8s.set_image(NS, "api", "api:2")
    result = run(k8s, {"rollout_status": {"deployment": "api", "timeout": 0.6, "interval": 0.2}})
    assert result.fields["complete"] is False and result.fields["paused"] is True
    assert "0 out of 2 new replicas have been updated" in result.output
    assert "(the deployment is paused: resume it to roll out)" in result.output


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


def test_rollout_status_without_watch_permission_still_answers(k8s: K8sDouble) -> None:
    k8s.deployment(NS, "api", ["api:1"], replicas=2)
    k8s.deny("watch", "deployments")
    run(k8s, {"rollout_restart": {"deployment": "api"}})
    result = run(k8s, {"rollout_status": {"deployment": "api", "interval": 0.1}})
    assert result.fields["complete"] is True, result.output


# -- where the cluster comes from ------------------------------------------------------------
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


def split_kubeconfig(k8s: K8sDouble, tmp_path: Path) -> tuple[Path, Path]:
    """`a` names the current context (defined only in `b`) and a decoy cluster `double`
    pointing nowhere that `b` also defines: kubectl takes current-context and each name
    from the first file that sets it."""
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    nowhere = f"http://127.0.0.1:{closed_port()}"
    a.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "from-b",
                "clusters": [{"name": "elsewhere", "cluster": {"server": nowhere}}],
            }
        )
    )
    b.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "decoy",
                "clusters": [{"name": "double", "cluster": {"server": k8s.url}}],
                "users": [{"name": "tester", "user": {"token": "t"}}],
                "contexts": [
                    {
                        "name": "from-b",
                        "context": {"cluster": "double", "user": "tester", "namespace": NS},
                    },
                    {"name": "decoy", "context": {"cluster": "elsewhere", "user": "tester"}},
                ],
            }
        )
    )
    return a, b


def test_kubeconfig_files_in_kubeconfig_are_merged_like_kubectl(
    k8s: K8sDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    k8s.deployment(NS, "api", ["api:1"])
    a, b = split_kubeconfig(k8s, tmp_path)
    missing = tmp_path / "missing.yaml"
    monkeypatch.setenv("KUBECONFIG", f"{missing}:{a}:{b}")
    result = k8s_plugin.run({"get": {"kind": "deployments"}}, ExecContext("s", timeout=10))
    assert result.ok, result.error
    assert result.fields["names"] == ["api"] and result.call["namespace"] == NS
    monkeypatch.setenv("KUBECONFIG", f"{missing}:{tmp_path / 'also-missing'}")
    none = k8s_plugin.run({"get": {"kind": "pods"}}, ExecContext("s", timeout=10))
    assert none.error is not None
    assert none.error.startswith("no kubeconfig: none of the files in KUBECONFIG exist")


# -- exec ------------------------------------------------------------------------------------
class LocalProcessExec:
    """A stand-in *transport*: runs argv here, to test that the transport is swappable."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    def exec(
        self, cluster: Any, pod: str, container: str | None, argv: list[str], timeout: float
    ) -> tuple[int, str, str]:
        self.calls.append((pod, argv))
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        return proc.returncode, proc.stdout, proc.stderr


def test_exec_picks_a_pod_whose_container_runs_and_reports_exit_code(k8s: K8sDouble) -> None:
    k8s.deployment(NS, "db", ["pg:15"], replicas=2, crashloop=1)
    transport = LocalProcessExec()
    ctx = ExecContext("s", timeout=10, resources={"kubernetes.exec": transport})
    config = {
        "kubeconfig": str(k8s.kubeconfig),
        "namespace": NS,
        "exec": {"deployment": "db", "argv": ["sh", "-c", "echo accepting; exit 0"]},
    }
    result = k8s_plugin.run(config, ctx)
    assert result.fields["exit_code"] == 0 and result.output == "accepting\n"
    assert transport.calls[0][0] == "db-h1-1"  # db-h1-0 crash-loops: nothing runs there


def test_default_exec_speaks_the_api_servers_websocket(k8s: K8sDouble) -> None:
    k8s.deployment(NS, "db", ["pg:15"], replicas=1)
    seen: list[tuple[str, str, list[str]]] = []

    def container(ns: str, pod: str, name: str, argv: list[str]) -> tuple[int, str, str]:
        seen.append((pod, name, argv))
        return 2, '{"status": "degraded"}\n', "replica lag\n"

    k8s.on_exec(container)
    result = run(k8s, {"exec": {"deployment": "db", "argv": ["health", "--json"], "parse": "json"}})
    assert result.ok, result.error
    assert seen == [("db-h1-0", "db", ["health", "--json"])]
    f = result.fields
    assert (f["exit_code"], f["stdout"], f["stderr"]) == (
        2,
        '{"status": "degraded"}\n',
        "replica lag\n",
    )
    assert f["json"] == {"status": "degraded"} and f["healthy"] is False


def test_exec_parse_json_wants_json_after_success(k8s: K8sDouble) -> None:
    k8s.deployment(NS, "db", ["pg:15"], replicas=1)
    answers = {"ok": (0, "accepting connections\n", ""), "down": (2, "no response\n", "")}
    k8s.on_exec(lambda ns, pod, container, argv: answers[argv[0]])
    ok = run(k8s, {"exec": {"pod": "db-h1-0", "argv": ["ok"], "parse": "json"}})
    assert ok.error is not None
    assert ok.error.startswith("stdout is not JSON (`parse: json`): ")
    assert "'accepting connections'" in ok.error
    # after a failing exit status the status says what went wrong: json is None, no error
    down = run(k8s, {"exec": {"pod": "db-h1-0", "argv": ["down"], "parse": "json"}})
    assert down.ok and down.fields["json"] is None and down.fields["exit_code"] == 2


def test_default_exec_transport_explains_a_refused_websocket(k8s: K8sDouble) -> None:
    k8s.deployment(NS, "db", ["pg:15"], replicas=1)
    k8s.refuse_websocket()
    result = run(k8s, {"exec": {"pod": "db-h1-0", "argv": ["pg_isready"]}})
    assert result.error is not None and "did not accept the websocket upgrade" in result.error


# -- plans and guarantees --------------------------------------------------------------------
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
        (
            {"logs": {"pod": "api-1", "previous": True}},
            "GET api/v1 namespaces/production/pods/api-1/log (previous=True)",
        ),
        (
            {"describe": {"deployment": "api"}},
            "GET api/v1 namespaces/production/pods (deployment=api) (and their events)",
        ),
        (
            {"rollout_history": {"deployment": "api"}},
            "GET apis/apps/v1 namespaces/production/replicasets (owned by deployment api)",
        ),
    ],
)
def test_plan_shows_the_exact_api_call(op: dict[str, Any], summary: str) -> None:
    planned = k8s_plugin.plan({"namespace": NS, **op}, PlanContext("s"))
    assert planned.summary == summary


def test_reads_are_checks_and_changes_are_actions() -> None:
    spec = k8s_plugin.SPEC
    for read in (
        {"get": {"kind": "pods"}},
        {"rollout_status": {"deployment": "a"}},
        {"rollout_history": {"deployment": "a"}},
        {"describe": {"pod": "a"}},
        {"logs": {"pod": "a", "previous": True}},
    ):
        assert spec.is_read_only(read) and spec.is_side_effect_free(read), read
    assert not spec.is_read_only({"scale": {"deployment": "a", "replicas": 1}})
    # exec may be a check, but nothing guarantees the command only reads: a dry-run never
    # runs it
    exec_config = {"exec": {"pod": "a", "argv": ["cat", "/etc/hostname"]}}
    assert not spec.is_read_only(exec_config)
    assert not spec.is_side_effect_free(exec_config)
