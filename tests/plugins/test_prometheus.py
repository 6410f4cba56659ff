"""The prometheus executor against a real Prometheus scraping the demo service, and against
scripted HTTP servers for the answers a healthy Prometheus never gives (NaN in a vector,
a matrix from the instant endpoint, HTML from a proxy, a server dripping its answer)."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import jsonschema
import pytest
from support.helpers import logs_in
from support.http_servers import LocalHTTPServer, Reply, closed_port, http_server
from support.prometheus import DemoService, PrometheusServer, series_value

from runbook.contract import ExecContext, ExecutorSpec, PlanContext, StepResult
from runbook.expr.expression import compile_expression
from runbook.log.journal import read_log
from runbook.registry import PluginRegistry
from runbook.run.state import result_namespace


@pytest.fixture(scope="module")
def prom() -> ExecutorSpec:
    return PluginRegistry.from_entry_points().executor("prometheus")


@pytest.fixture(scope="module")
def shared_server() -> Iterator[LocalHTTPServer]:
    with http_server() as server:
        yield server


@pytest.fixture
def server(shared_server: LocalHTTPServer) -> LocalHTTPServer:
    shared_server.reset()
    return shared_server


def run(prom: ExecutorSpec, config: Mapping[str, Any], **ctx: Any) -> StepResult:
    return prom.run(config, ExecContext(step_id="query", **ctx))


def judge(result: StepResult, expr: str) -> tuple[bool, str]:
    """An `expect:` expression over the result, as the runner judges it."""
    check = compile_expression(expr).check(result_namespace(result, {"params": {}}))
    return check.passed, check.message


def vector(*series: tuple[Mapping[str, str], str]) -> dict[str, Any]:
    """A Prometheus instant-query answer with these (labels, value) series."""
    result = [{"metric": dict(labels), "value": [1700000000.5, value]} for labels, value in series]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


# -- a real Prometheus --------------------------------------------------------------------------


def test_an_instant_query_gives_the_value_and_labels_of_its_one_series(
    prom: ExecutorSpec, prometheus: PrometheusServer
) -> None:
    query = 'http_requests_total{job="demo", path="/health", status="200"}'
    result = run(prom, {"url": prometheus.url, "query": query})
    assert result.ok, result.error
    fields = result.fields
    assert fields["result_type"] == "vector" and fields["count"] == 1
    assert fields["empty"] is False and fields["finite"] is True
    assert isinstance(fields["value"], float) and fields["value"] > 0
    assert fields["labels"] == {
        "__name__": "http_requests_total",
        "instance": f"127.0.0.1:{prometheus.demo.port}",
        "job": "demo",
        "path": "/health",
        "status": "200",
    }
    assert fields["values"] == [fields["value"]]
    assert fields["series"][0]["timestamp"] == pytest.approx(time.time(), abs=60)
    assert fields["url"].startswith(f"{prometheus.url}/api/v1/query?query=http_requests_total")
    assert result.output.startswith('http_requests_total{instance="127.0.0.1:')
    assert judge(result, "value > 0 and labels.status == '200'")[0] is True


def test_several_series_have_no_single_value(
    prom: ExecutorSpec, prometheus: PrometheusServer
) -> None:
    result = run(prom, {"url": prometheus.url, "query": 'http_requests_total{job="demo"}'})
    assert result.ok, result.error
    fields = result.fields
    statuses = {(s["labels"]["path"], s["labels"]["status"]) for s in fields["series"]}
    assert {("/health", "200"), ("/health", "503"), ("/__ok", "200")} <= statuses
    assert fields["count"] == len(fields["series"]) == len(fields["values"]) >= 4
    assert fields["value"] is None and fields["labels"] is None
    passed, message = judge(result, "value < 0.10")
    assert not passed and "None < 0.1" in message
    assert judge(result, "max(values) > 0 and min(values) == 0")[0] is True


def test_a_range_query_gives_statistics_per_series(
    prom: ExecutorSpec, prometheus: PrometheusServer
) -> None:
    config = {
        "url": prometheus.url,
        "query": 'up{job="demo"}',
        "range": {"start": "-20s", "step": "1s"},
    }
    prometheus.wait_for(
        'count_over_time(up{job="demo"}[20s])', lambda r: (series_value(r) or 0) >= 3
    )
    started = time.time()
    result = run(prom, config)
    assert result.ok, result.error
    fields = result.fields
    assert fields["result_type"] == "matrix" and fields["count"] == 1
    [series] = fields["series"]
    assert series["labels"]["job"] == "demo"
    assert series["samples"] >= 2 and series["nan"] == 0
    assert fields["value"] == fields["last"] == series["last"] == 1.0
    assert fields["max"] == 1.0 and fields["min"] in (0.0, 1.0)  # 0: a scrape during a restart
    assert fields["min"] <= fields["avg"] <= fields["max"]
    sent = parse_qs(fields["url"].split("?", 1)[1])
    assert float(sent["start"][0]) == pytest.approx(started - 20, abs=5)
    assert float(sent["end"][0]) == pytest.approx(started, abs=5)
    assert sent["step"] == ["1"] and sent["query"] == ['up{job="demo"}']
    assert result.output.startswith('up{instance="127.0.0.1:')
    assert f"last=1.0 min={fields['min']!r} max=1.0" in result.output
    assert judge(result, "max <= 1 and last == 1")[0] is True


def test_a_range_vector_selector_is_a_matrix_from_the_instant_endpoint(
    prom: ExecutorSpec, prometheus: PrometheusServer
) -> None:
    result = run(prom, {"url": prometheus.url, "query": 'up{job="demo"}[5s]'})
    assert result.ok, result.error
    assert result.fields["result_type"] == "matrix"
    assert result.fields["max"] == 1.0 and result.fields["series"][0]["samples"] >= 1


def test_the_error_ratio_of_a_wedged_service_fails_value_below_ten_percent(
    prom: ExecutorSpec, prometheus: PrometheusServer
) -> None:
    ratio = (
        'sum(rate(http_errors_total{job="demo"}[10s])) '
        '/ sum(rate(http_requests_total{job="demo"}[10s]))'
    )
    healthy = run(prom, {"url": prometheus.url, "query": ratio})
    assert healthy.ok, healthy.error
    assert judge(healthy, "value < 0.10")[0] is True
    assert healthy.fields["labels"] == {} and healthy.output.startswith("{} 0.0")

    prometheus.demo.wedge()
    prometheus.wait_for(ratio, lambda r: (series_value(r) or 0) > 0.5)
    wedged = run(prom, {"url": prometheus.url, "query": ratio})
    passed, message = judge(wedged, "value < 0.10")
    assert not passed
    assert message.startswith("assert ") and message.endswith(" < 0.1 (value)"), message
    assert wedged.fields["value"] > 0.5


def test_bad_promql_is_an_error_with_prometheus_message(
    prom: ExecutorSpec, prometheus: PrometheusServer
) -> None:
    result = run(prom, {"url": prometheus.url, "query": "sum(rate(x[1m]"})
    assert not result.ok
    assert result.error == (
        'Prometheus answered HTTP 400 (bad_data): invalid parameter "query": '
        "1:15: parse error: unclosed left parenthesis"
    )


def test_a_range_over_too_many_points_is_prometheus_own_refusal(
    prom: ExecutorSpec, prometheus: PrometheusServer
) -> None:
    config = {"url": prometheus.url, "query": "up", "range": {"start": 0, "step": 1}}
    result = run(prom, config)
    assert not result.ok
    assert result.error is not None and "exceeded maximum resolution" in result.error


def test_an_empty_answer_is_its_own_state_not_zero(
    prom: ExecutorSpec, prometheus: PrometheusServer
) -> None:
    result = run(prom, {"url": prometheus.url, "query": "no_such_metric_total"})
    assert result.ok, result.error
    fields = result.fields
    assert fields["empty"] is True and fields["count"] == 0
    assert fields["value"] is None and fields["values"] == [] and fields["series"] == []
    assert result.output == "no series: the query matched nothing (empty result)\n"
    passed, message = judge(result, "value < 0.10")
    assert not passed and "cannot evaluate None < 0.1" in message
    assert judge(result, "empty or value < 0.10")[0] is True
    assert prom.default_expect == ("count > 0",)
    assert judge(result, "count > 0")[0] is False


def test_nan_and_infinity_stay_visible(prom: ExecutorSpec, prometheus: PrometheusServer) -> None:
    nan = run(prom, {"url": prometheus.url, "query": "0/0"})
    assert nan.ok, nan.error
    assert nan.fields["result_type"] == "scalar" and math.isnan(nan.fields["value"])
    assert nan.fields["finite"] is False and nan.output == "scalar NaN\n"
    assert judge(nan, "value < 0.10") == (False, "assert nan < 0.1 (value)")
    inf = run(prom, {"url": prometheus.url, "query": "-1/0"})
    assert inf.fields["value"] == -math.inf and inf.output == "scalar -Inf\n"


def test_a_string_answer_is_its_text(prom: ExecutorSpec, prometheus: PrometheusServer) -> None:
    result = run(prom, {"url": prometheus.url, "query": '"hello"'})
    assert result.ok and result.fields["result_type"] == "string"
    assert result.fields["value"] == "hello" and result.fields["finite"] is True


def test_the_query_reaches_prometheus_intact_whatever_its_characters(
    prom: ExecutorSpec, prometheus: PrometheusServer
) -> None:
    # `;` would end the query for Go (golang.org/issue/25192), `+` would become a space.
    query = r'label_replace(vector(1) + 1, "x", "a;b+c d&e=f#g\"h", "", "")'
    result = run(prom, {"url": prometheus.url, "query": query})
    assert result.ok, result.error
    assert result.fields["labels"] == {"x": 'a;b+c d&e=f#g"h'} and result.fields["value"] == 2.0
    assert result.fields["query"] == query


def test_an_unreachable_server_is_an_error_naming_the_request(prom: ExecutorSpec) -> None:
    port = closed_port()
    result = run(prom, {"url": f"http://127.0.0.1:{port}", "query": "up"})
    assert not result.ok and not result.timed_out
    assert (
        result.error
        == f"connection refused: GET http://127.0.0.1:{port}/api/v1/query?query=up&timeout=10"
    )


def test_the_prometheus_fixture_takes_rules_targets_and_alertmanagers(
    prom: ExecutorSpec, prometheus: PrometheusServer, tmp_path: Path
) -> None:
    """What alerting tests build on: a rule file, another scrape target, an Alertmanager."""
    prometheus.set_rules(
        "groups: [{name: t, rules: [{record: 'demo:up:max', expr: 'max(up{job=\"demo\"})'}]}]"
    )
    prometheus.wait_for("demo:up:max", lambda r: series_value(r) == 1)
    other = DemoService(tmp_path / "other", name="other")
    other.start()
    try:
        prometheus.add_target("other", other.port)
        result = run(prom, {"url": prometheus.url, "query": 'up{job="other"}'})
        assert result.fields["value"] == 1.0 and result.fields["labels"]["job"] == "other"
    finally:
        other.stop()
    manager = f"http://127.0.0.1:{closed_port()}"
    prometheus.set_alertmanagers([manager])
    config = httpx.get(f"{prometheus.url}/api/v1/status/config", timeout=10).json()
    assert manager.split("//")[1] in config["data"]["yaml"]


# -- the plan and the dry-run -----------------------------------------------------------------


def test_the_plan_is_the_exact_request_with_times_as_written(prom: ExecutorSpec) -> None:
    config = {
        "url": "http://prometheus:9090/",
        "query": 'sum(rate(http_errors_total{job="api"}[5m]))',
        "range": {"start": "-30m", "step": "1m"},
        "headers": {"X-Scope-OrgID": "ops"},
        "timeout": 5,
    }
    planned = prom.plan(config, PlanContext("q"))
    assert planned.summary == (
        "GET http://prometheus:9090/api/v1/query_range?query=sum(rate(http_errors_total"
        "%7Bjob%3D%22api%22%7D%5B5m%5D))&start=-30m&end=now&step=1m&timeout=5"
    )
    assert planned.detail == {
        "method": "GET",
        "url": "http://prometheus:9090/api/v1/query_range",
        "params": {
            "query": 'sum(rate(http_errors_total{job="api"}[5m]))',
            "start": "-30m",
            "end": "now",
            "step": "1m",
            "timeout": "5",
        },
        "headers": {"X-Scope-OrgID": "ops"},
        "timeout": 5.0,
        "verify": True,
    }
    json.dumps(planned.detail)  # goes into plan files and their digest


def test_every_query_is_read_only_and_guaranteed_side_effect_free(prom: ExecutorSpec) -> None:
    for config in (
        {"url": "http://p:9090", "query": "up"},
        {"url": "http://p:9090", "query": "up", "time": "-5m"},
        {"url": "http://p:9090", "query": "up", "range": {"start": "-1h", "step": 60}},
    ):
        assert prom.is_read_only(config) and prom.is_side_effect_free(config)


def test_a_dry_run_runs_the_query_and_plan_only_shows_it(
    prometheus: PrometheusServer, run_cli: Any, write_runbook: Any, tmp_path: Path
) -> None:
    path = write_runbook(
        f"""
        apiVersion: runbook/v1
        kind: Runbook
        metadata: {{name: prom-dry, title: Prom dry run, severity: P2}}
        steps:
          - id: demo-up
            phase: detect
            check:
              prometheus: {{url: "{prometheus.url}", query: 'up{{job="demo"}} == 1'}}
            expect: ["value == 1"]
        """
    )
    planned = run_cli("plan", str(path))
    assert planned.code == 0, planned.text
    url = f"{prometheus.url}/api/v1/query?query=up%7Bjob%3D%22demo%22%7D%20%3D%3D%201&timeout=10"
    assert f"GET {url}" in planned.out
    dry = run_cli("run", str(path), "--dry-run", "--log-dir", "dry")
    assert dry.code == 0, dry.text
    results = [r["data"] for r in _records(tmp_path / "dry") if r["type"] == "step.result"]
    assert [r["fields"]["value"] for r in results] == [1.0]
    skipped = run_cli("run", str(path), "--dry-run", "--no-checks", "--log-dir", "none")
    assert skipped.code == 0, skipped.text
    types = {r["type"] for r in _records(tmp_path / "none")}
    assert "step.planned" in types and "step.result" not in types


# -- the CLI end to end -----------------------------------------------------------------------


def _records(directory: Path) -> list[dict[str, Any]]:
    [log] = logs_in(directory)
    return read_log(log)


def test_the_cli_runs_a_prometheus_check_end_to_end(
    prometheus: PrometheusServer, run_cli: Any, write_runbook: Any, tmp_path: Path
) -> None:
    ratio = (
        'sum(rate(http_errors_total{job="demo"}[10s])) '
        '/ sum(rate(http_requests_total{job="demo"}[10s]))'
    )
    path = write_runbook(
        f"""
        apiVersion: runbook/v1
        kind: Runbook
        metadata: {{name: prom-e2e, title: Error rate, severity: P1}}
        params:
          prometheus_url: {{type: string}}
        steps:
          - id: error-rate
            phase: detect
            check:
              prometheus:
                url: "{{{{ params.prometheus_url }}}}"
                query: '{ratio}'
            expect: ["value < 0.10"]
        """
    )
    prometheus.demo.wedge()
    prometheus.wait_for(ratio, lambda r: (series_value(r) or 0) > 0.2)
    result = run_cli("run", str(path), "-p", f"prometheus_url={prometheus.url}")
    assert result.code == 1, result.text
    assert " < 0.1 (value)" in result.text
    records = _records(tmp_path / "logs")
    [attempt] = [r["data"] for r in records if r["type"] == "step.attempt"]
    [outcome] = [r["data"] for r in records if r["type"] == "step.result"]
    [expectation] = [r["data"] for r in records if r["type"] == "step.expectation"]
    assert attempt["call"]["url"] == f"{prometheus.url}/api/v1/query"
    assert attempt["call"]["params"]["query"] == ratio
    assert outcome["ok"] is True and outcome["fields"]["value"] > 0.2
    assert outcome["fields"]["labels"] == {}
    assert expectation["passed"] is False and expectation["expr"] == "value < 0.10"


def test_a_bearer_token_from_a_secret_param_is_sent_and_masked(
    server: LocalHTTPServer, run_cli: Any, write_runbook: Any, tmp_path: Path
) -> None:
    server.route("/api/v1/query", json=vector(({}, "0.01")))
    path = write_runbook(
        f"""
        apiVersion: runbook/v1
        kind: Runbook
        metadata: {{name: prom-auth, title: Token, severity: P2}}
        params:
          prom_token: {{type: string, secret: true}}
        steps:
          - id: ratio
            phase: detect
            check:
              prometheus:
                url: "{server.url}"
                query: errors
                headers: {{Authorization: "Bearer {{{{ params.prom_token }}}}"}}
            expect: ["value < 0.10"]
        """
    )
    token = "s3cr3t-t0ken-42"
    result = run_cli("run", str(path), "--dry-run", env={"RUNBOOK_PARAM_PROM_TOKEN": token})
    assert result.code == 0, result.text
    [outcome] = [r["data"] for r in _records(tmp_path / "logs") if r["type"] == "step.result"]
    assert outcome["ok"], outcome["error"]  # the dry-run ran the query for real
    (seen,) = server.requests
    assert seen.headers["authorization"] == f"Bearer {token}"
    [log] = logs_in(tmp_path / "logs")
    text = log.read_text()
    assert token not in text and token not in result.text
    assert '"Authorization":"Bearer ***"' in text


# -- answers a healthy Prometheus does not give ---------------------------------------------


def test_nan_and_infinities_in_a_vector_are_floats(
    prom: ExecutorSpec, server: LocalHTTPServer
) -> None:
    answer = vector(
        ({"s": "a"}, "NaN"), ({"s": "b"}, "+Inf"), ({"s": "c"}, "-Inf"), ({"s": "d"}, "1e-3")
    )
    server.route("/api/v1/query", json=answer)
    result = run(prom, {"url": server.url, "query": "x"})
    assert result.ok, result.error
    values = result.fields["values"]
    assert math.isnan(values[0]) and values[1:] == [math.inf, -math.inf, 0.001]
    assert result.fields["finite"] is False and result.fields["value"] is None
    assert result.output.splitlines() == [
        '{s="a"} NaN',
        '{s="b"} +Inf',
        '{s="c"} -Inf',
        '{s="d"} 0.001',
    ]


def test_a_range_series_with_nan_samples_counts_them_apart(
    prom: ExecutorSpec, server: LocalHTTPServer
) -> None:
    points = [[1.0, "NaN"], [2.0, "0.5"], [3.0, "0.1"], [4.0, "NaN"]]
    matrix = {"resultType": "matrix", "result": [{"metric": {"job": "x"}, "values": points}]}
    server.route("/api/v1/query_range", json={"status": "success", "data": matrix})
    config = {"url": server.url, "query": "x", "range": {"start": 1, "end": 4, "step": 1}}
    result = run(prom, config)
    assert result.ok, result.error
    [series] = result.fields["series"]
    assert series["samples"] == 4 and series["nan"] == 2
    assert (series["min"], series["max"], series["avg"]) == (0.1, 0.5, pytest.approx(0.3))
    assert series["first"] != series["first"] and math.isnan(result.fields["value"])
    assert result.fields["finite"] is False
    (seen,) = server.requests
    assert seen.path == "/api/v1/query_range"
    assert parse_qs(seen.query) == {
        "query": ["x"],
        "start": ["1"],
        "end": ["4"],
        "step": ["1"],
        "timeout": ["10"],
    }


def test_a_series_of_only_nan_has_nan_statistics(
    prom: ExecutorSpec, server: LocalHTTPServer
) -> None:
    matrix = {"resultType": "matrix", "result": [{"metric": {}, "values": [[1, "NaN"]]}]}
    server.route("/api/v1/query", json={"status": "success", "data": matrix})
    result = run(prom, {"url": server.url, "query": "x"})
    assert result.ok and all(math.isnan(result.fields[k]) for k in ("min", "max", "avg"))


def test_warnings_are_kept(prom: ExecutorSpec, server: LocalHTTPServer) -> None:
    answer = {**vector(({}, "1")), "warnings": ["partial response: store\nunavailable"]}
    server.route("/api/v1/query", json=answer)
    result = run(prom, {"url": server.url, "query": "x"})
    assert result.fields["warnings"] == ["partial response: store unavailable"]
    assert result.output.endswith("warning: partial response: store unavailable\n")


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (
            Reply(422, json={"status": "error", "errorType": "execution", "error": "boom"}),
            "Prometheus answered HTTP 422 (execution): boom",
        ),
        (
            Reply(
                503, json={"status": "error", "errorType": "timeout", "error": "query timed out"}
            ),
            "Prometheus answered HTTP 503 (timeout): query timed out",
        ),
        (
            Reply(404, body="<html>Not Found</html>", headers={"content-type": "text/html"}),
            "not a Prometheus API answer (HTTP 404, text/html: Expecting value: line 1 column 1 "
            "(char 0)); is `url` Prometheus' base URL?",
        ),
        (
            Reply(401, json={"message": "Unauthorized"}),
            'not a Prometheus API answer (HTTP 401: {"message": "Unauthorized"})',
        ),
        (
            Reply(200, json={"status": "success", "data": {"resultType": "vector", "result": {}}}),
            "malformed Prometheus answer: `result` is not a list",
        ),
        (
            Reply(200, json={"status": "success", "data": {"resultType": "table", "result": []}}),
            "malformed Prometheus answer: resultType 'table'",
        ),
        (
            Reply(200, json=vector(({}, "many"))),
            "malformed Prometheus answer: sample [1700000000.5, 'many']",
        ),
        (
            Reply(
                200,
                json={
                    "status": "success",
                    "data": {
                        "resultType": "vector",
                        "result": [{"metric": {}, "histogram": [1, {"count": "3", "sum": "1"}]}],
                    },
                },
            ),
            "the answer holds native histogram samples: query a number out of them "
            "(histogram_quantile, histogram_count, histogram_sum)",
        ),
        (
            Reply(200, body=b"[" * 2_000_000),
            "the answer is larger than 1 MiB: aggregate the query (sum by (...), topk) so it "
            "returns fewer series",
        ),
    ],
)
def test_odd_answers_are_errors_that_say_what_was_wrong(
    prom: ExecutorSpec, server: LocalHTTPServer, reply: Reply, error: str
) -> None:
    server.route("/api/v1/query", reply)
    result = run(prom, {"url": server.url, "query": "x"})
    assert not result.ok
    assert result.error == error


def test_a_dripping_server_is_cut_at_the_total_timeout(
    prom: ExecutorSpec, server: LocalHTTPServer
) -> None:
    server.route("/api/v1/query", Reply(json=vector(({}, "1")), drip=1.0))
    started = time.monotonic()
    result = run(prom, {"url": server.url, "query": "up", "timeout": 1})
    assert not result.ok and result.timed_out
    assert result.error == f"timed out after 1.0s: GET {server.url}/api/v1/query?query=up&timeout=1"
    assert time.monotonic() - started < 5  # per read, httpx alone would wait ~100 bytes * 1s


def test_the_attempt_timeout_bounds_a_silent_server(
    prom: ExecutorSpec, server: LocalHTTPServer
) -> None:
    server.route("/api/v1/query", Reply(json=vector(({}, "1")), delay=30))
    started = time.monotonic()
    result = run(prom, {"url": server.url, "query": "up"}, timeout=0.5)
    assert result.timed_out and time.monotonic() - started < 5


def test_cancel_cuts_a_query_under_way(prom: ExecutorSpec, server: LocalHTTPServer) -> None:
    server.route("/api/v1/query", Reply(json=vector(({}, "1")), drip=1.0))
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    result = run(prom, {"url": server.url, "query": "up", "timeout": 30}, cancel=cancel)
    assert result.error is not None and result.error.startswith("cancelled: GET ")


def test_headers_reach_the_server_and_redirects_are_not_followed(
    prom: ExecutorSpec, server: LocalHTTPServer
) -> None:
    server.route("/api/v1/query", Reply(302, headers={"location": "/login"}))
    headers = {"Authorization": "Bearer t0k", "X-Scope-OrgID": "ops"}
    result = run(prom, {"url": server.url, "query": "up", "headers": headers})
    assert result.error is not None and result.error.startswith(
        "not a Prometheus API answer (HTTP 302"
    )
    (seen,) = server.requests
    assert seen.headers["authorization"] == "Bearer t0k" and seen.headers["x-scope-orgid"] == "ops"


def test_a_route_prefix_in_the_base_url_is_kept(
    prom: ExecutorSpec, server: LocalHTTPServer
) -> None:
    server.route("/prometheus/api/v1/query", json=vector(({}, "1")))
    result = run(prom, {"url": server.url + "/prometheus/", "query": "up"})
    assert result.ok and result.fields["value"] == 1.0


@pytest.mark.parametrize(
    ("url", "error"),
    [
        (
            "http://p:9090/?x=1",
            "`url` is Prometheus' base URL (http://prometheus:9090): no query or fragment",
        ),
        (
            "http://p:9090/#top",
            "`url` is Prometheus' base URL (http://prometheus:9090): no query or fragment",
        ),
        ("http://p:9090/api/v1/query", "`url` is Prometheus' base URL: leave out '/api/v1/query'"),
        ("ftp://p:9090", "unsupported URL (scheme 'ftp': use http:// or https://)"),
    ],
)
def test_only_a_base_url_is_queried(prom: ExecutorSpec, url: str, error: str) -> None:
    result = run(prom, {"url": url, "query": "up"})
    assert not result.ok and result.error == error


@pytest.mark.parametrize(
    ("config", "error"),
    [
        (
            {"time": "yesterday"},
            "`time` is 'yesterday': use now, -30m (before now), an RFC 3339 time",
        ),
        ({"range": {"start": "-1x", "step": 1}}, "`range.start` is '-1x': use now, -30m"),
        ({"range": {"start": "-1h", "step": "0"}}, "`range.step` is '0': use seconds"),
        ({"timeout": "soon"}, "`timeout` is 'soon', not a number of seconds"),
    ],
)
def test_a_rendered_value_prometheus_cannot_read_is_refused_before_sending(
    prom: ExecutorSpec, server: LocalHTTPServer, config: dict[str, Any], error: str
) -> None:
    result = run(prom, {"url": server.url, "query": "up", **config})
    assert not result.ok and (result.error or "").startswith(error), result.error
    assert server.requests == []


def test_absolute_times_are_sent_as_written(prom: ExecutorSpec, server: LocalHTTPServer) -> None:
    server.route("/api/v1/query", json=vector(({}, "1")))
    run(prom, {"url": server.url, "query": "up", "time": "2026-12-01T10:00:00Z"})
    run(prom, {"url": server.url, "query": "up", "time": 1700000000.5})
    assert [parse_qs(r.query)["time"] for r in server.requests] == [
        ["2026-12-01T10:00:00Z"],
        ["1700000000.5"],
    ]


# -- the schema --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "valid"),
    [
        ({"url": "http://p:9090", "query": "up"}, True),
        ({"url": "http://p:9090", "query": "up", "time": "-5m"}, True),
        ({"url": "http://p:9090", "query": "up", "time": "now"}, True),
        ({"url": "http://p:9090", "query": "up", "time": "2026-12-01T10:00:00.5+02:00"}, True),
        ({"url": "http://p:9090", "query": "up", "time": 1700000000}, True),
        ({"url": "http://p:9090", "query": "up", "time": "-5 minutes"}, False),
        (
            {"url": "http://p:9090", "query": "up", "range": {"start": "-1h30m", "step": "30s"}},
            True,
        ),
        ({"url": "http://p:9090", "query": "up", "range": {"start": "-1h", "step": 15}}, True),
        ({"url": "http://p:9090", "query": "up", "range": {"start": "-1h"}}, False),
        (
            {"url": "http://p:9090", "query": "up", "range": {"start": "-1h", "step": "30m1h"}},
            False,
        ),
        ({"url": "http://p:9090", "query": "up", "range": {"start": "-1h", "step": 0}}, False),
        (
            {
                "url": "http://p:9090",
                "query": "up",
                "time": "-1m",
                "range": {"start": "-1h", "step": 1},
            },
            False,
        ),
        ({"url": "http://p:9090", "query": ""}, False),
        ({"url": "http://p:9090"}, False),
        ({"url": "http://p:9090", "query": "up", "method": "POST"}, False),
        ({"url": "http://p:9090", "query": "up", "timeout": "{{ params.t }}"}, True),
    ],
)
def test_schema(prom: ExecutorSpec, config: dict[str, Any], valid: bool) -> None:
    assert jsonschema.Draft202012Validator(prom.schema).is_valid(config) is valid


def test_schema_is_closed_and_documented(prom: ExecutorSpec) -> None:
    jsonschema.Draft202012Validator.check_schema(prom.schema)
    properties = prom.schema["properties"]
    assert all(spec.get("description") for spec in properties.values())
    assert all(spec.get("description") for spec in properties["range"]["properties"].values())
