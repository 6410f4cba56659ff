"""The shipped platform runbooks, end to end: `python -m runbook run` in a subprocess
against the Kubernetes double, `moto_server` and a real PostgreSQL with a replica."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.cli import ROOT, RunCli
from support.helpers import logs_in
from support.http_servers import LocalHTTPServer, Reply, http_server
from support.k8s_double import DEPLOY, K8sDouble
from support.pg_cluster import PASSWORD, PgCluster
from support.platform_fixtures import AWS_ENV, rds_instance

pytestmark = pytest.mark.slow


def records(log_dir: Path) -> list[dict[str, object]]:
    [log] = logs_in(log_dir)
    return [json.loads(line) for line in log.read_text().splitlines()]


def assert_log_complete(run_cli: RunCli, log_dir: Path) -> list[dict[str, object]]:
    [log] = logs_in(log_dir)
    assert run_cli("log", "verify", str(log)).code == 0
    recs = records(log_dir)
    assert recs[-1]["type"] == "run.finished"
    return recs


@pytest.fixture
def web() -> LocalHTTPServer:
    with http_server() as server:
        yield server


def test_rollback_pauses_undoes_and_verifies(
    k8s: K8sDouble, web: LocalHTTPServer, run_cli: RunCli, tmp_path: Path
) -> None:
    k8s.deployment("production", "api", ["api:1", "api:2", "api:3"])
    web.route("/health", json={"status": "ok"})
    result = run_cli(
        "run",
        str(ROOT / "runbooks/rollback.yaml"),
        "--yes",
        "-p",
        "deployment=api",
        "-p",
        f"health_url={web.url_for('/health')}",
        env={"KUBECONFIG": str(k8s.kubeconfig)},
    )
    assert result.code == 0, result.text
    dep = k8s.obj(DEPLOY, "production", "api")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "api:2"
    assert not dep["spec"].get("paused")  # false is not serialized, as by a real API server
    assert_log_complete(run_cli, tmp_path / "logs")


def test_performance_degradation_scales_up_and_records_previous_count(
    k8s: K8sDouble, web: LocalHTTPServer, run_cli: RunCli, tmp_path: Path
) -> None:
    k8s.deployment("production", "api-gateway", ["gw:1"], replicas=2)
    web.route("/health", Reply(delay=0.3, json={"status": "ok"}), Reply(json={"status": "ok"}))
    result = run_cli(
        "run",
        "performance-degradation",
        "--yes",
        "-p",
        "max_latency=0.2",
        "-p",
        f"health_url={web.url_for('/health')}",
        env={"KUBECONFIG": str(k8s.kubeconfig), "RUNBOOK_PATH": str(ROOT / "runbooks")},
    )
    assert result.code == 0, result.text
    assert k8s.obj(DEPLOY, "production", "api-gateway")["spec"]["replicas"] == 5
    recs = assert_log_complete(run_cli, tmp_path / "logs")
    scaled = [r for r in recs if r["type"] == "step.result" and r["data"]["step"] == "scale-up"]
    assert scaled[0]["data"]["fields"]["previous_replicas"] == 2
    top = [r for r in recs if r["type"] == "step.result" and r["data"]["step"] == "top"]
    assert top[0]["data"]["fields"]["available"] is False


def db_args(pg: PgCluster, instance: str) -> list[str]:
    return [
        "run",
        str(ROOT / "runbooks/database-connection-failure.yaml"),
        "-p",
        f"db_instance={instance}",
        "-p",
        "db_host=127.0.0.1",
        "-p",
        f"db_port={pg.primary_port}",
        "-p",
        "db_user=runbook",
        "-p",
        "db_name=app",
    ]


def test_database_runbook_against_moto_server_and_real_postgres(
    pg: PgCluster,
    moto_url: str,
    run_cli: RunCli,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    rds_instance(moto_url, "app-db")
    env = {**AWS_ENV, "AWS_ENDPOINT_URL": moto_url, "RUNBOOK_PARAM_DB_PASSWORD": PASSWORD}
    result = run_cli(*db_args(pg, "app-db"), env=env)
    assert result.code == 0, result.text
    recs = assert_log_complete(run_cli, tmp_path / "logs")
    passed = {
        r["data"]["step"]
        for r in recs
        if r["type"] == "step.finished" and r["data"]["status"] == "passed"
    }
    assert {"rds-status", "pg-ready", "connections", "activity", "replication-lag"} <= passed
    assert (
        PASSWORD not in result.text
        and PASSWORD
        not in (tmp_path / "logs").joinpath(logs_in(tmp_path / "logs")[0].name).read_text()
    )


def test_database_runbook_bad_password_and_unknown_instance_fail_cleanly(
    pg: PgCluster, moto_url: str, run_cli: RunCli, tmp_path: Path
) -> None:
    bad = "not-the-password-42"
    env = {**AWS_ENV, "AWS_ENDPOINT_URL": moto_url, "RUNBOOK_PARAM_DB_PASSWORD": bad}
    result = run_cli(*db_args(pg, "ghost-db"), env=env)  # reboot needs a terminal: declined
    assert result.code in (1, 3), result.text
    assert "DB instance 'ghost-db' not found in us-east-1" in result.text
    assert "Traceback" not in result.text and bad not in result.text
    log_text = logs_in(tmp_path / "logs")[0].read_text()
    assert bad not in log_text and "password authentication failed" in log_text
    assert_log_complete(run_cli, tmp_path / "logs")


def test_missing_sdk_names_the_pip_command(
    k8s: K8sDouble, run_cli: RunCli, tmp_path: Path, write_runbook
) -> None:
    blocker = tmp_path / "blocked" / "kubernetes"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('blocked for the test')\n")
    path = write_runbook("""
        apiVersion: runbook/v1
        kind: Runbook
        metadata: {name: k8s-missing, title: t, severity: P3}
        steps:
          - id: pods
            phase: triage
            check: {kubernetes: {get: {kind: pods}}}
    """)
    result = run_cli(
        "run",
        str(path),
        env={"PYTHONPATH": str(tmp_path / "blocked"), "KUBECONFIG": str(k8s.kubeconfig)},
    )
    assert result.code == 1
    assert "pip install 'runbook-as-code[k8s]'" in result.text
    assert_log_complete(run_cli, tmp_path / "logs")
