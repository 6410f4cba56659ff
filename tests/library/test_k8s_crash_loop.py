"""The shipped k8s-crash-loop runbook, end to end: `python -m runbook` in a subprocess
against the Kubernetes API double (previous logs, describe, history, exec as a check, a
rollback or a restart rolled out over time by the double's controller)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.cli import ROOT, RunCli
from support.helpers import logs_in
from support.k8s_double import DEPLOY, K8sDouble

pytestmark = pytest.mark.slow
RUNBOOK = str(ROOT / "runbooks" / "k8s-crash-loop.yaml")
NS = "production"
LIMITS = {
    "resources": {"limits": {"memory": "256Mi"}, "requests": {"memory": "128Mi"}},
    "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
}


def records(log_dir: Path) -> list[dict[str, Any]]:
    [log] = logs_in(log_dir)
    return [json.loads(line) for line in log.read_text().splitlines()]


def results(recs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["data"]["step"]: r["data"] for r in recs if r["type"] == "step.result"}


def finished(recs: list[dict[str, Any]]) -> dict[str, str]:
    """Each step's status; a skipped step has a `step.skipped` record instead."""
    status = {r["data"]["step"]: "skipped" for r in recs if r["type"] == "step.skipped"}
    status.update(
        {r["data"]["step"]: r["data"]["status"] for r in recs if r["type"] == "step.finished"}
    )
    return status


def oom_after_release(k8s: K8sDouble) -> None:
    """Release api:2 is OOMKilled on start: both its pods crash-loop."""
    k8s.deployment(
        NS,
        "api",
        ["api:1", "api:2"],
        replicas=2,
        crashloop=2,
        container=LIMITS,
        crash_reason="OOMKilled",
        crash_exit_code=137,
    )
    k8s.logs(NS, "api-h2-0", "api", "starting\n")
    k8s.logs(NS, "api-h2-0", "api", "loading model\nfatal: out of memory\n", previous=True)
    k8s.logs(NS, "api-h2-1", "api", "loading model\n", previous=True)
    k8s.event(NS, "api-h2-0", "BackOff", "Back-off restarting failed container api")


def test_the_runbook_validates_strictly(run_cli: RunCli) -> None:
    result = run_cli("validate", "--strict", RUNBOOK)
    assert result.code == 0, result.text
    assert "warning" not in result.text


def test_dry_run_reads_the_crash_for_real_and_runs_no_exec(
    k8s: K8sDouble, run_cli: RunCli, tmp_path: Path
) -> None:
    oom_after_release(k8s)
    before = k8s.obj(DEPLOY, NS, "api")
    result = run_cli("run", RUNBOOK, "--dry-run", env={"KUBECONFIG": str(k8s.kubeconfig)})
    assert result.code == 0, result.text
    recs = records(tmp_path / "logs")
    found = results(recs)
    assert found["pods"]["fields"]["crash_looping"] == ["api-h2-0", "api-h2-1"]
    describe = found["describe"]["fields"]
    assert describe["oom_killed"] is True and describe["last_reasons"] == ["OOMKilled"]
    assert describe["pods"][0]["containers"][0]["limits"] == {"memory": "256Mi"}
    assert found["previous-logs"]["fields"]["matches"] == 1
    assert "fatal: out of memory" in found["previous-logs"]["fields"]["text"]
    assert found["history"]["fields"]["numbers"] == [1, 2]
    # exec may be a check, but a dry-run never runs it: nothing reached pods/exec
    assert "in-pod-health" not in found
    assert not [path for _, path in k8s.api.requests if "/exec" in path]
    after = k8s.obj(DEPLOY, NS, "api")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_oom_after_a_release_is_rolled_back_and_recovers(
    k8s: K8sDouble, run_cli: RunCli, tmp_path: Path
) -> None:
    oom_after_release(k8s)
    result = run_cli(
        "run",
        RUNBOOK,
        "--yes",
        "--answer",
        "decide=rollback",
        env={"KUBECONFIG": str(k8s.kubeconfig)},
    )
    assert result.code == 0, result.text
    recs = records(tmp_path / "logs")
    status = finished(recs)
    assert status["pods"] == "failed" and status["describe"] == "failed"
    assert status["in-pod-health"] == "error"  # no container runs anywhere: nothing to exec
    assert status["rollback"] == "passed" and status["recovered"] == "passed"
    assert status["restart"] == "skipped"
    found = results(recs)
    assert found["rollback"]["fields"]["to_revision"] == 1
    dep = k8s.obj(DEPLOY, NS, "api")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "api:1"
    assert found["recovered"]["fields"]["ready"] == 2
    assert run_cli("log", "verify", str(logs_in(tmp_path / "logs")[0])).code == 0


def test_a_dependency_outage_is_checked_from_inside_a_pod_then_restarted(
    k8s: K8sDouble, run_cli: RunCli, tmp_path: Path
) -> None:
    k8s.deployment(NS, "api", ["api:1"], replicas=2, crashloop=1)
    seen: list[tuple[str, list[str]]] = []

    def container(ns: str, pod: str, name: str, argv: list[str]) -> tuple[int, str, str]:
        seen.append((pod, argv))
        return 0, '{"status": "ok", "database": "reachable again"}\n', ""

    k8s.on_exec(container)
    result = run_cli(
        "run",
        RUNBOOK,
        "--yes",
        "--answer",
        "decide=restart",
        env={"KUBECONFIG": str(k8s.kubeconfig)},
    )
    assert result.code == 0, result.text
    # the exec went to the pod whose container runs, with the runbook's argv
    assert seen == [
        ("api-h1-1", ["wget", "-q", "-O", "-", "-T", "5", "http://127.0.0.1:8080/healthz"])
    ]
    status = finished(records(tmp_path / "logs"))
    assert status["in-pod-health"] == "passed" and status["restart"] == "passed"
    assert status["rollback"] == "skipped" and status["recovered"] == "passed"
    dep = k8s.obj(DEPLOY, NS, "api")
    assert "kubectl.kubernetes.io/restartedAt" in dep["spec"]["template"]["metadata"]["annotations"]
