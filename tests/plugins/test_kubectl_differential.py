"""kubectl is the oracle: real `/usr/bin/kubectl` and the kubernetes executor, each on the
same API double state, must give the same answer and leave the same cluster state.

Each case seeds the double, asks kubectl (a subprocess with its own HOME, so no discovery
cache is shared), records its exit code, words and the resulting state; then seeds the
same state again and asks the executor. Where we deliberately differ from kubectl the
difference is asserted as such and listed in docs/peers.md ("kubernetes vs kubectl").
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from runbook_plugins import kubernetes as k8s_plugin
from support.http_servers import closed_port
from support.k8s_double import DEPLOY, RS, K8sDouble, controller_uid, prune

from runbook.contract import ExecContext, StepResult

KUBECTL = shutil.which("kubectl")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed (Debian: kubectl)"),
]
NS = "production"
RESTARTED = "kubectl.kubernetes.io/restartedAt"


@dataclass(frozen=True)
class Answer:
    """One tool's answer: did it succeed, its words, how long it took."""

    ok: bool
    text: str
    elapsed: float
    out: str = ""


class Kubectl:
    def __init__(self, k8s: K8sDouble, home: Path) -> None:
        self.k8s = k8s
        self.env = {
            "HOME": str(home),
            "PATH": os.environ["PATH"],
            "KUBECONFIG": str(k8s.kubeconfig),
        }

    def __call__(
        self, *args: str, timeout: float = 30, env: dict[str, str] | None = None
    ) -> Answer:
        start = time.monotonic()
        proc = subprocess.run(
            [str(KUBECTL), "-n", NS, *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        text = proc.stdout.strip() if proc.returncode == 0 else proc.stderr.strip()
        text = re.sub(r"^(error: |Error from server \(\w+\): )", "", text)
        return Answer(proc.returncode == 0, text, time.monotonic() - start, proc.stdout)


@pytest.fixture
def kubectl(k8s: K8sDouble, tmp_path: Path) -> Iterator[Kubectl]:
    home = tmp_path / "home"
    home.mkdir()
    yield Kubectl(k8s, home)


def ours(k8s: K8sDouble, op: dict[str, Any], **extra: Any) -> tuple[Answer, StepResult]:
    config = {"kubeconfig": str(k8s.kubeconfig), "namespace": NS, **op, **extra}
    start = time.monotonic()
    result = k8s_plugin.run(config, ExecContext("diff", timeout=30))
    text = result.output if result.ok else str(result.error)
    return Answer(result.ok, text, time.monotonic() - start), result


def state(k8s: K8sDouble, name: str = "api") -> dict[str, Any]:
    """What an operator would compare: the deployment's template, replicas, paused flag,
    annotations and generation, and its own ReplicaSets by revision (names of new
    ReplicaSets hash the template, and a restart's timestamp differs between the runs)."""
    dep = k8s.obj(DEPLOY, NS, name)
    assert dep is not None
    template = copy.deepcopy(dep["spec"]["template"])
    restarted = ((template.get("metadata") or {}).get("annotations") or {}).pop(RESTARTED, None)
    owned = [r for r in k8s.objs(RS, NS) if controller_uid(r) == dep["metadata"]["uid"]]
    return {
        "template": prune(template),
        "restarted": restarted is not None,
        "replicas": dep["spec"]["replicas"],
        "paused": bool(dep["spec"].get("paused")),
        "annotations": dep["metadata"].get("annotations"),
        "generation": dep["metadata"]["generation"],
        "replica_sets": sorted(
            (
                int(r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]),
                r["spec"]["template"]["spec"]["containers"][0]["image"],
                r["spec"]["replicas"],
            )
            for r in owned
        ),
    }


def compare(
    k8s: K8sDouble,
    kubectl: Kubectl,
    seed: Callable[[], None],
    kubectl_args: list[str],
    op: dict[str, Any],
    settle: bool,
) -> tuple[Answer, Answer, StepResult, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Seed, ask kubectl, snapshot; reseed, ask the executor, snapshot."""
    seed()
    before = state(k8s)
    theirs = kubectl(*kubectl_args)
    if settle:
        k8s.wait_rolled_out(NS, "api")
    after_kubectl = state(k8s)
    k8s.reset()
    seed()
    mine, result = ours(k8s, op)
    if settle:
        k8s.wait_rolled_out(NS, "api")
    after_ours = state(k8s)
    return theirs, mine, result, before, after_kubectl, after_ours


# -- rollout history -------------------------------------------------------------------------
def history_rows(text: str) -> list[tuple[int, str]]:
    rows = []
    for line in text.splitlines():
        match = re.match(r"^(\d+)\s+(.*?)\s*$", line)
        if match:
            rows.append((int(match.group(1)), match.group(2)))
    return rows


def test_history_is_kubectl_s_even_with_a_same_name_leftover(
    k8s: K8sDouble, kubectl: Kubectl
) -> None:
    k8s.deployment(NS, "api", ["api:1", "api:2", "api:3"], change_causes=["first", "", "third"])
    k8s.leftover_replica_set(NS, "api", revision=9, image="api:ghost")
    theirs = kubectl("rollout", "history", "deployment/api")
    mine, result = ours(k8s, {"rollout_history": {"deployment": "api"}})
    assert theirs.ok and mine.ok
    expected = [(1, "first"), (2, "<none>"), (3, "third")]
    assert history_rows(theirs.text) == expected
    assert [
        (r["revision"], r["change_cause"] or "<none>") for r in result.fields["revisions"]
    ] == expected
    missing_theirs = kubectl("rollout", "history", "deployment/api", "--revision=9")
    missing_mine, _ = ours(k8s, {"rollout_history": {"deployment": "api", "revision": 9}})
    assert not missing_theirs.ok and not missing_mine.ok
    assert missing_theirs.text == "unable to find the specified revision"
    assert missing_mine.text.startswith("unable to find the specified revision 9")


# -- rollout undo ----------------------------------------------------------------------------
UNDO_CASES = {
    # name: (images, seed options, leftovers, kubectl flags, our args, verdict, shared words)
    "previous": (["api:1", "api:2", "api:3"], {}, [], [], {}, "rolled back", "rolled back"),
    "to-revision": (
        ["api:1", "api:2", "api:3"],
        {},
        [],
        ["--to-revision=1"],
        {"to_revision": 1},
        "rolled back",
        "rolled back",
    ),
    "current-template": (
        ["api:1", "api:2"],
        {},
        [],
        ["--to-revision=2"],
        {"to_revision": 2},
        "skipped",
        "skipped rollback (current template already matches revision 2)",
    ),
    "unknown-revision": (
        ["api:1", "api:2"],
        {},
        [],
        ["--to-revision=9"],
        {"to_revision": 9},
        "error",
        "unable to find specified revision 9 in history",
    ),
    "paused": (
        ["api:1", "api:2"],
        {"paused": True},
        [],
        [],
        {},
        "error",
        "you cannot rollback a paused deployment; resume it first",
    ),
    "same-name-leftover": (
        ["api:1", "api:2"],
        {},
        [(5, "api:ghost"), (1, "api:ghost-1")],
        [],
        {},
        "rolled back",
        "rolled back",
    ),
    "leftover-revision-is-not-ours": (
        ["api:1", "api:2"],
        {},
        [(5, "api:ghost")],
        ["--to-revision=5"],
        {"to_revision": 5},
        "error",
        "unable to find specified revision 5 in history",
    ),
    "no-history": (
        ["api:1"],
        {},
        [],
        [],
        {},
        "error",
        'no rollout history found for deployment "api"',
    ),
}


@pytest.mark.parametrize("case", list(UNDO_CASES))
def test_undo_answers_and_leaves_the_cluster_as_kubectl_does(
    k8s: K8sDouble, kubectl: Kubectl, case: str
) -> None:
    images, options, leftovers, flags, args, verdict, words = UNDO_CASES[case]

    def seed() -> None:
        k8s.deployment(NS, "api", images, replicas=2, **options)
        for number, image in leftovers:
            k8s.leftover_replica_set(NS, "api", revision=number, image=image)

    theirs, mine, result, before, after_kubectl, after_ours = compare(
        k8s,
        kubectl,
        seed,
        ["rollout", "undo", "deployment/api", *flags],
        {"rollout_undo": {"deployment": "api", **args}},
        settle=verdict == "rolled back",
    )
    assert after_ours == after_kubectl
    assert words in theirs.text and words in mine.text, (theirs, mine)
    if verdict == "error":
        assert not theirs.ok and not mine.ok
        assert after_ours == before
    else:
        assert theirs.ok and mine.ok
        assert result.fields["skipped"] is (verdict == "skipped")
        assert result.fields["rolled_back"] is (verdict == "rolled back")
        assert (after_ours == before) is (verdict == "skipped")


# -- rollout restart, pause, resume ----------------------------------------------------------
@pytest.mark.parametrize("paused", [False, True], ids=["running", "paused"])
def test_restart_answers_and_rolls_out_as_kubectl_does(
    k8s: K8sDouble, kubectl: Kubectl, paused: bool
) -> None:
    theirs, mine, _, before, after_kubectl, after_ours = compare(
        k8s,
        kubectl,
        lambda: k8s.deployment(NS, "api", ["api:1", "api:2"], replicas=2, paused=paused),
        ["rollout", "restart", "deployment/api"],
        {"rollout_restart": {"deployment": "api"}},
        settle=not paused,
    )
    assert after_ours == after_kubectl
    if paused:
        assert not theirs.ok and not mine.ok
        assert (
            theirs.text
            == mine.text
            == (
                'deployments.apps "api" can\'t restart paused deployment (run rollout resume first)'
            )
        )
        assert after_ours == before
    else:
        assert theirs.ok and mine.ok and theirs.text == mine.text == "deployment.apps/api restarted"
        assert after_ours["restarted"] and after_ours["replica_sets"][-1][0] == 3


@pytest.mark.parametrize(
    ("verb", "paused"),
    [("pause", False), ("pause", True), ("resume", True), ("resume", False)],
)
def test_pause_and_resume_answer_as_kubectl_does(
    k8s: K8sDouble, kubectl: Kubectl, verb: str, paused: bool
) -> None:
    theirs, mine, _, before, after_kubectl, after_ours = compare(
        k8s,
        kubectl,
        lambda: k8s.deployment(NS, "api", ["api:1"], replicas=1, paused=paused),
        ["rollout", verb, "deployment/api"],
        {f"rollout_{verb}": {"deployment": "api"}},
        settle=False,
    )
    assert after_ours == after_kubectl
    assert theirs.ok is mine.ok
    assert theirs.text == mine.text
    assert (after_ours == before) is (not mine.ok)


# -- rollout status --------------------------------------------------------------------------
def test_status_of_a_finished_rollout(k8s: K8sDouble, kubectl: Kubectl) -> None:
    k8s.deployment(NS, "api", ["api:1"], replicas=2)
    theirs = kubectl("rollout", "status", "deployment/api", "--timeout=10s")
    mine, result = ours(k8s, {"rollout_status": {"deployment": "api", "timeout": 10}})
    assert theirs.ok and mine.ok and result.fields["complete"]
    assert theirs.text == mine.text == 'deployment "api" successfully rolled out'


def watched_from_the_start(k8s: K8sDouble, start: Callable[[], Any]) -> Any:
    """Run `start()` in a thread while the controller is frozen, and let the rollout go
    only once the client watches: it then sees every step, however slow it is to start."""
    k8s.freeze()
    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.setdefault("result", start()))
    thread.start()
    end = time.monotonic() + 20
    while not any("watch=" in path for _, path in k8s.api.requests):
        assert time.monotonic() < end, "the client never watched"
        time.sleep(0.02)
    k8s.freeze(False)
    thread.join(30)
    return box["result"]


def test_status_follows_a_rollout_over_time(k8s: K8sDouble, kubectl: Kubectl) -> None:
    k8s.set_tick(0.1)
    k8s.deployment(NS, "api", ["api:1"], replicas=3)
    k8s.set_image(NS, "api", "api:2")
    theirs = watched_from_the_start(
        k8s, lambda: kubectl("rollout", "status", "deployment/api", "--timeout=20s")
    )
    assert theirs.ok and theirs.text.splitlines()[0] == (
        "Waiting for deployment spec update to be observed..."
    )
    k8s.wait_rolled_out(NS, "api")
    k8s.api.requests.clear()
    k8s.set_image(NS, "api", "api:3")
    seen: list[str] = []
    config = {"kubeconfig": str(k8s.kubeconfig), "namespace": NS}
    result = watched_from_the_start(
        k8s,
        lambda: k8s_plugin.run(
            {**config, "rollout_status": {"deployment": "api", "timeout": 20}},
            ExecContext("s", timeout=30, progress=seen.append),
        ),
    )
    assert result.fields["complete"] and result.output == theirs.text.splitlines()[-1]
    # the same readings, in kubectl's words, sentence for sentence
    assert seen[0] == theirs.text.splitlines()[0]
    forms = {re.sub(r"\d+", "N", line) for line in theirs.text.splitlines()[:-1]}
    assert {re.sub(r"\d+", "N", m) for m in seen} <= forms, (seen, forms)
    assert len(forms) >= 3, forms  # observed, new replicas updated, old ones terminating...


def test_status_fails_at_once_past_the_progress_deadline(k8s: K8sDouble, kubectl: Kubectl) -> None:
    k8s.deployment(NS, "api", ["api:1"], replicas=2, progress_deadline=1)
    k8s.fail_image("api:broken", reason="OOMKilled", exit_code=137)
    k8s.set_image(NS, "api", "api:broken")
    k8s.wait(
        NS,
        "api",
        lambda d: any(
            c["reason"] == "ProgressDeadlineExceeded" for c in d["status"].get("conditions", [])
        ),
    )
    theirs = kubectl("rollout", "status", "deployment/api", "--timeout=60s")
    mine, result = ours(k8s, {"rollout_status": {"deployment": "api", "timeout": 60}})
    assert not theirs.ok and theirs.elapsed < 5
    assert theirs.text == 'deployment "api" exceeded its progress deadline'
    # ours: a failed check (not an error: the cluster answered), at once, in kubectl's words
    assert mine.ok and result.fields["complete"] is False and result.fields["healthy"] is False
    assert result.fields["deadline_exceeded"] is True and mine.elapsed < 5
    assert mine.text == theirs.text


def test_status_of_a_paused_rollout_waits_like_kubectl(k8s: K8sDouble, kubectl: Kubectl) -> None:
    k8s.deployment(NS, "api", ["api:1"], replicas=2, paused=True)
    k8s.set_image(NS, "api", "api:2")
    theirs = kubectl("rollout", "status", "deployment/api", "--timeout=1s")
    mine, result = ours(k8s, {"rollout_status": {"deployment": "api", "timeout": 1}})
    assert not theirs.ok and theirs.text == "timed out waiting for the condition"
    assert "0 out of 2 new replicas have been updated" in theirs.out
    assert result.fields["complete"] is False
    assert 'Waiting for deployment "api" rollout to finish: 0 out of 2 new replicas' in mine.text


def test_status_of_a_missing_deployment(k8s: K8sDouble, kubectl: Kubectl) -> None:
    k8s.deployment(NS, "api", ["api:1"], replicas=1)  # the namespace exists
    theirs = kubectl("rollout", "status", "deployment/nope", "--timeout=5s")
    mine, _ = ours(k8s, {"rollout_status": {"deployment": "nope"}})
    assert not theirs.ok and not mine.ok
    assert theirs.text == 'deployments.apps "nope" not found'
    assert mine.text.startswith("deployment 'nope' not found in namespace 'production'")
    assert theirs.text in mine.text


# -- scale -----------------------------------------------------------------------------------
@pytest.mark.parametrize("paused", [False, True], ids=["running", "paused"])
def test_scale_leaves_the_cluster_as_kubectl_does(
    k8s: K8sDouble, kubectl: Kubectl, paused: bool
) -> None:
    theirs, mine, result, _, after_kubectl, after_ours = compare(
        k8s,
        kubectl,
        lambda: k8s.deployment(NS, "api", ["api:1", "api:2"], replicas=2, paused=paused),
        ["scale", "deployment/api", "--replicas=5"],
        {"scale": {"deployment": "api", "replicas": 5}},
        settle=True,
    )
    assert theirs.ok and mine.ok and theirs.text == "deployment.apps/api scaled"
    assert result.fields["previous_replicas"] == 2
    assert after_ours == after_kubectl and after_ours["replicas"] == 5


# -- top -------------------------------------------------------------------------------------
def test_top_reads_the_metrics_kubectl_reads(k8s: K8sDouble, kubectl: Kubectl) -> None:
    k8s.deployment(NS, "api", ["api:1"], replicas=2)
    none_theirs = kubectl("top", "pod")
    none_mine, result = ours(k8s, {"top": {}})
    assert not none_theirs.ok and none_theirs.text == "Metrics API not available"
    # deliberate: for us a missing metrics-server is an answer (available: false), not an error
    assert none_mine.ok and result.fields["available"] is False
    k8s.metrics(NS, "api-h1-0", "250m", "128Mi")
    k8s.metrics(NS, "api-h1-1", "1", "1Gi")
    theirs = kubectl("top", "pod")
    _, result = ours(k8s, {"top": {}})
    rows = {line.split()[0]: line.split()[1:] for line in theirs.text.splitlines()[1:]}
    assert rows == {
        p["name"]: [f"{p['cpu_millicores']}m", f"{p['memory_bytes'] // 2**20}Mi"]
        for p in result.fields["pods"]
    }
    assert rows == {"api-h1-0": ["250m", "128Mi"], "api-h1-1": ["1000m", "1024Mi"]}


# -- logs and describe -----------------------------------------------------------------------
def test_previous_logs_are_kubectl_s(k8s: K8sDouble, kubectl: Kubectl) -> None:
    k8s.deployment(NS, "api", ["api:1"], replicas=2, crashloop=1, crash_reason="OOMKilled")
    k8s.logs(NS, "api-h1-0", "api", "booting\n")
    k8s.logs(NS, "api-h1-0", "api", "warming cache\nout of memory\n", previous=True)
    for pod in ("api-h1-0", "api-h1-1"):
        theirs = kubectl("logs", pod, "--previous")
        mine, _ = ours(k8s, {"logs": {"pod": pod, "previous": True}})
        assert theirs.ok is mine.ok, pod
        if theirs.ok:
            assert theirs.text == mine.text == "warming cache\nout of memory"
        else:
            assert theirs.text in mine.text


def test_logs_read_the_container_kubectl_picks(k8s: K8sDouble, kubectl: Kubectl) -> None:
    proxy = [{"name": "proxy", "image": "envoy:1"}]
    default = {"kubectl.kubernetes.io/default-container": "api"}
    k8s.deployment(NS, "api", ["api:1"], replicas=1, sidecars=proxy, pod_annotations=default)
    k8s.deployment(NS, "web", ["web:1"], replicas=1, sidecars=proxy)
    for pod, container in (("api-h1-0", "api"), ("api-h1-0", "proxy"), ("web-h1-0", "proxy")):
        k8s.logs(NS, pod, container, f"{container} of {pod}\n")
    for pod in ("api-h1-0", "web-h1-0"):
        theirs = kubectl("logs", pod)
        mine, _ = ours(k8s, {"logs": {"pod": pod}})
        assert theirs.ok and mine.ok
        assert theirs.out.strip() == mine.text, pod


def describe_field(text: str, container: str, key: str, after: str | None = None) -> str:
    """A `Key: value` line of `kubectl describe pod`, in a container's block (after a
    sub-heading such as `Last State:` when given)."""
    block = text.split(f"\n  {container}:\n", 1)[1].split("\nConditions:")[0]
    if after is not None:
        block = block.split(after, 1)[1]
    match = re.search(rf"^\s+{re.escape(key)}:\s+(.*)$", block, re.M)
    assert match is not None, (key, block)
    return match.group(1).strip()


def test_describe_reads_what_kubectl_describe_shows(k8s: K8sDouble, kubectl: Kubectl) -> None:
    container = {
        "resources": {"limits": {"memory": "128Mi", "cpu": "500m"}, "requests": {"cpu": "100m"}},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "failureThreshold": 5},
        "readinessProbe": {"tcpSocket": {"port": 5432}, "periodSeconds": 3},
    }
    k8s.deployment(
        NS,
        "api",
        ["api:7"],
        replicas=1,
        crashloop=1,
        restarts=2,
        container=container,
        crash_reason="OOMKilled",
        crash_exit_code=137,
    )
    k8s.event(NS, "api-h1-0", "BackOff", "Back-off restarting failed container api")
    theirs = kubectl("describe", "pod", "api-h1-0")
    mine, result = ours(k8s, {"describe": {"pod": "api-h1-0"}})
    assert theirs.ok and mine.ok
    [pod] = result.fields["pods"]
    [c] = pod["containers"]
    text = theirs.text
    assert describe_field(text, "api", "Image") == c["image"] == "api:7"
    assert describe_field(text, "api", "Restart Count") == str(c["restarts"]) == "9"
    assert describe_field(text, "api", "Reason", after="Last State:") == c["last_reason"]
    assert describe_field(text, "api", "Exit Code", after="Last State:") == "137"
    assert c["last_exit_code"] == 137 and result.fields["oom_killed"] is True
    assert describe_field(text, "api", "Reason", after="State:") == c["reason"]
    assert describe_field(text, "api", "memory", after="Limits:") == c["limits"]["memory"]
    assert describe_field(text, "api", "cpu", after="Limits:") == c["limits"]["cpu"]
    assert describe_field(text, "api", "cpu", after="Requests:") == c["requests"]["cpu"]
    assert describe_field(text, "api", "Liveness") == c["liveness"]
    assert describe_field(text, "api", "Readiness") == c["readiness"]
    assert describe_field(text, "api", "Ready") == str(c["ready"])
    assert "Back-off restarting failed container api" in text
    assert [e["message"] for e in pod["events"]] == ["Back-off restarting failed container api"]
    assert f"Controlled By:  {pod['controlled_by']}" in text


# -- exec ------------------------------------------------------------------------------------
def test_exec_answers_as_kubectl_exec(k8s: K8sDouble, kubectl: Kubectl) -> None:
    k8s.deployment(NS, "db", ["pg:15"], replicas=1)

    def container(ns: str, pod: str, name: str, argv: list[str]) -> tuple[int, str, str]:
        return (3, "", "no response\n") if "down" in argv else (0, "accepting\n", "")

    k8s.on_exec(container)
    for argv, code in ((["pg_isready"], 0), (["pg_isready", "down"], 3)):
        theirs = subprocess.run(
            [str(KUBECTL), "-n", NS, "exec", "db-h1-0", "--", *argv],
            env=kubectl.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        _, result = ours(k8s, {"exec": {"pod": "db-h1-0", "argv": argv}})
        assert theirs.returncode == result.fields["exit_code"] == code
        assert theirs.stdout == result.fields["stdout"]
        assert theirs.stderr.startswith(result.fields["stderr"])


# -- where the cluster comes from ------------------------------------------------------------
def test_kubeconfig_list_is_merged_as_kubectl_merges_it(
    k8s: K8sDouble, kubectl: Kubectl, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """current-context from the first file that sets it, each name from the first file that
    defines it; a missing file is skipped. (The Python client's own merger lets the *last*
    current-context win.)"""
    k8s.deployment(NS, "api", ["api:1"])
    nowhere = f"http://127.0.0.1:{closed_port()}"
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    config = {"apiVersion": "v1", "kind": "Config"}
    a.write_text(
        yaml.safe_dump(
            {
                **config,
                "current-context": "live",
                "clusters": [{"name": "shared", "cluster": {"server": k8s.url}}],
            }
        )
    )
    b.write_text(
        yaml.safe_dump(
            {
                **config,
                "current-context": "decoy",
                "clusters": [
                    {"name": "shared", "cluster": {"server": nowhere}},
                    {"name": "dead", "cluster": {"server": nowhere}},
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {
                        "name": "live",
                        "context": {"cluster": "shared", "user": "u", "namespace": NS},
                    },
                    {"name": "decoy", "context": {"cluster": "dead", "user": "u"}},
                ],
            }
        )
    )
    listing = os.pathsep.join([str(tmp_path / "missing.yaml"), str(a), str(b)])
    env = {"KUBECONFIG": listing}
    assert kubectl("config", "current-context", env=env).text == "live"
    theirs = subprocess.run(
        [str(KUBECTL), "get", "deployments", "-o", "name"],
        env={**kubectl.env, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert theirs.returncode == 0 and theirs.stdout.strip() == "deployment.apps/api"
    monkeypatch.setenv("KUBECONFIG", listing)
    result = k8s_plugin.run({"get": {"kind": "deployments"}}, ExecContext("s", timeout=10))
    assert result.ok, result.error
    assert result.fields["names"] == ["api"] and result.call["namespace"] == NS
