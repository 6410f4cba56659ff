"""`high-error-rate-prometheus` against a real Prometheus scraping the real demo service.

It passes `validate --strict`; a dry-run runs every PromQL check for real (they are
guaranteed read-only) and changes nothing; and the whole runbook runs end to end: the demo
is wedged so Prometheus sees a real error ratio, the runbook alerts, the responder's
`restart` restarts the very process Prometheus scrapes (`runbook-demo restart`, behind the
confirmation), the verify check sees the target up, and the run resolves once the ratio is
back under 10%. Prometheus and the demo come from tests/support/prometheus.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.cli import ROOT, RunCli
from support.helpers import logs_in
from support.prometheus import PrometheusServer, series_value

from runbook.log.journal import verify_log

RUNBOOK = ROOT / "runbooks" / "high-error-rate-prometheus.yaml"
RATIO_5S = (
    '(sum(rate(http_requests_total{job="demo", status=~"5.."}[5s])) or vector(0))'
    ' / sum(rate(http_requests_total{job="demo"}[5s]))'
)


def records(log_dir: Path) -> list[dict[str, Any]]:
    [log] = logs_in(log_dir)
    return [json.loads(line) for line in log.read_text().splitlines()]


def finished(log_dir: Path) -> dict[str, str]:
    return {
        r["data"]["step"]: r["data"]["status"]
        for r in records(log_dir)
        if r["type"] == "step.finished"
    }


def demo_params(prometheus: PrometheusServer) -> list[str]:
    values = {
        "prometheus_url": prometheus.url,
        "job": "demo",
        "service": "demo",
        "platform": "demo",
        "window": "5s",
    }
    return [arg for key, value in values.items() for arg in ("-p", f"{key}={value}")]


def test_validates_strictly(run_cli: RunCli) -> None:
    result = run_cli("validate", "--strict", str(RUNBOOK))
    assert result.code == 0, result.text


@pytest.mark.slow
def test_dry_run_reads_the_real_prometheus_and_changes_nothing(
    prometheus: PrometheusServer, run_cli: RunCli, tmp_path: Path
) -> None:
    prometheus.wait_for(RATIO_5S, lambda r: len(r) == 1 and 0 <= (series_value(r) or 0) < 0.1)
    prometheus.wait_for('min(up{job="demo"})', lambda r: series_value(r) == 1)
    pid = prometheus.demo.service.pid()
    result = run_cli(
        "run", str(RUNBOOK), "--dry-run", *demo_params(prometheus), "--log-dir", "logs"
    )
    assert result.code == 0, result.text
    steps = finished(tmp_path / "logs")
    assert steps["error-rate"] == steps["error-rate-recovered"] == "passed", steps
    ran = {r["data"]["step"] for r in records(tmp_path / "logs") if r["type"] == "step.result"}
    queries = {"failing-series", "latency-p95", "targets-up", "recent-restarts", "error-trend"}
    assert queries | {"error-rate", "error-rate-recovered", "latency-normal"} <= ran  # for real
    assert not ran & {"initial-alert", "decide", "restart-demo", "status-update"}
    assert prometheus.demo.service.pid() == pid


@pytest.mark.slow
def test_a_wedged_demo_is_detected_restarted_and_seen_to_recover(
    prometheus: PrometheusServer, run_cli: RunCli, tmp_path: Path
) -> None:
    prometheus.demo.wedge()
    prometheus.wait_for(RATIO_5S, lambda r: (series_value(r) or 0) > 0.5)
    wedged_pid = prometheus.demo.service.pid()
    result = run_cli(
        "run",
        str(RUNBOOK),
        *demo_params(prometheus),
        "--yes",
        "--answer",
        "decide=restart",
        "--log-dir",
        "logs",
        env={"RUNBOOK_DEMO_DIR": str(prometheus.demo.service.root)},
        timeout=300,
    )
    assert result.code == 0, result.text
    # the detect check's operands, straight from Prometheus
    assert "< 0.1 (value, params.error_threshold)" in result.out
    assert '{job="demo", path="/health", status="503"}' in result.out  # failing-series
    steps = finished(tmp_path / "logs")
    assert steps["error-rate"] == "failed" and steps["failing-series"] == "failed"
    assert steps["restart-demo"] == "passed" and steps["restart-demo.verify-1"] == "passed"
    assert steps["error-rate-recovered"] == "passed" and steps["resolution-notice"] == "passed"
    assert prometheus.demo.service.pid() not in (None, wedged_pid)  # really restarted
    results = {
        r["data"]["step"]: r["data"]["fields"]
        for r in records(tmp_path / "logs")
        if r["type"] == "step.result"
    }
    assert results["error-rate"]["value"] > 0.1
    [failing] = results["failing-series"]["series"]
    assert failing["labels"]["path"] == "/health" and failing["labels"]["status"] == "503"
    assert "INCIDENT: high error rate on demo" in result.out
    [log] = logs_in(tmp_path / "logs")
    assert verify_log(log).ok
