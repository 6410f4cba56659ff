"""The http executor against real HTTP(S) servers on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from support.http_servers import (
    LocalHTTPServer,
    Reply,
    closed_port,
    http_server,
    redirect,
    self_signed_cert,
)

from runbook.contract import ExecContext, ExecutorSpec, PlanContext, StepResult
from runbook.errors import TemplateError
from runbook.expr.templating import Renderer
from runbook.load.model import Target
from runbook.registry import PluginRegistry


@pytest.fixture(scope="module")
def http() -> ExecutorSpec:
    return PluginRegistry.from_entry_points().executor("http")


@pytest.fixture(scope="module")
def shared_server() -> Iterator[LocalHTTPServer]:
    with http_server() as server:
        yield server


@pytest.fixture
def server(shared_server: LocalHTTPServer) -> LocalHTTPServer:
    """One server per module, clean routes and request record per test."""
    shared_server.reset()
    return shared_server


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHTTPServer]:
    context = self_signed_cert(tmp_path_factory.mktemp("tls"))
    if context is None:
        pytest.skip("openssl is needed to make a self-signed certificate")
    with http_server(tls=context) as server:
        server.route("/health", json={"status": "ok"})
        yield server


def run(http: ExecutorSpec, config: Mapping[str, Any], **ctx: Any) -> StepResult:
    return http.run(config, ExecContext(step_id="probe", **ctx))


# -- responses --------------------------------------------------------------------------------


def test_json_response_is_exposed_as_fields(http: ExecutorSpec, server: LocalHTTPServer) -> None:
    server.route("/health", json={"status": "ok", "replicas": 3}, headers={"X-Request-Id": "abc"})
    result = run(http, {"url": server.url_for("/health")})
    assert result.ok
    fields = result.fields
    assert fields["status"] == 200
    assert fields["reason"] == "OK"
    assert fields["json"] == {"status": "ok", "replicas": 3}
    assert fields["headers"]["x-request-id"] == "abc"
    assert fields["headers"]["content-type"] == "application/json"
    assert fields["url"] == server.url_for("/health")
    assert isinstance(fields["elapsed"], float) and 0 < fields["elapsed"] < 5
    assert fields["truncated"] is False
    assert result.output == fields["text"] == '{"status": "ok", "replicas": 3}'


def test_server_error_is_a_result_judged_by_expectations(
    http: ExecutorSpec, server: LocalHTTPServer
) -> None:
    server.route("/health", status=503, body="maintenance")
    result = run(http, {"url": server.url_for("/health")})
    assert result.ok and result.error is None
    assert result.fields["status"] == 503
    assert result.fields["reason"] == "Service Unavailable"
    assert result.fields["text"] == "maintenance"
    assert result.fields["json"] is None
    assert http.default_expect == ("200 <= status < 300",)


def test_redirect_is_not_followed_by_default(http: ExecutorSpec, server: LocalHTTPServer) -> None:
    server.route("/health", redirect("/login"))
    server.route("/login", body="please log in")
    result = run(http, {"url": server.url_for("/health")})
    assert result.fields["status"] == 302
    assert result.fields["headers"]["location"] == "/login"
    assert [r.path for r in server.requests] == ["/health"]


def test_redirect_is_followed_when_asked(http: ExecutorSpec, server: LocalHTTPServer) -> None:
    server.route("/health", redirect("/ready"))
    server.route("/ready", json={"ready": True})
    result = run(http, {"url": server.url_for("/health"), "follow_redirects": True})
    assert result.fields["status"] == 200
    assert result.fields["url"] == server.url_for("/ready")


def test_request_headers_and_params_reach_the_server(
    http: ExecutorSpec, server: LocalHTTPServer
) -> None:
    server.route("/search", json=[])
    run(
        http,
        {
            "url": server.url_for("/search"),
            "headers": {"Authorization": "Bearer t0k"},
            "params": {"q": "a b", "limit": "5"},
        },
    )
    received = server.requests[0]
    assert received.headers["authorization"] == "Bearer t0k"
    assert received.query == "q=a+b&limit=5"


def test_post_json_is_sent_and_recorded(http: ExecutorSpec, server: LocalHTTPServer) -> None:
    server.route("POST /deploys", status=201, json={"id": 7})
    result = run(
        http,
        {
            "url": server.url_for("/deploys"),
            "method": "POST",
            "json": {"service": "api", "replicas": 2},
        },
    )
    assert result.fields["status"] == 201
    assert result.fields["json"] == {"id": 7}
    received = server.requests[0]
    assert received.method == "POST"
    assert received.headers["content-type"] == "application/json"
    assert received.json() == {"service": "api", "replicas": 2}


def test_raw_body_is_sent_as_utf8(http: ExecutorSpec, server: LocalHTTPServer) -> None:
    server.route("PUT /note", status=204)
    run(http, {"url": server.url_for("/note"), "method": "PUT", "body": "déjà vu"})
    assert server.requests[0].body == "déjà vu".encode()


def test_head_request_has_no_body(http: ExecutorSpec, server: LocalHTTPServer) -> None:
    server.route("/health", body="ok")
    result = run(http, {"url": server.url_for("/health"), "method": "HEAD"})
    assert result.fields["status"] == 200
    assert result.fields["text"] == ""
    assert server.requests[0].method == "HEAD"


def test_scripted_replies_are_served_in_order(http: ExecutorSpec, server: LocalHTTPServer) -> None:
    server.route("/flaky", Reply(status=503), Reply(status=200))
    statuses = [run(http, {"url": server.url_for("/flaky")}).fields["status"] for _ in range(3)]
    assert statuses == [503, 200, 200]


def test_large_body_is_bounded(http: ExecutorSpec, server: LocalHTTPServer) -> None:
    server.route("/dump", body=b"x" * (1024 * 1024 + 500_000))
    result = run(http, {"url": server.url_for("/dump")})
    assert result.fields["truncated"] is True
    assert len(result.fields["text"]) == 1024 * 1024
    assert result.fields["json"] is None


# -- failures -----------------------------------------------------------------------------------


def test_closed_port_is_connection_refused(http: ExecutorSpec) -> None:
    url = f"http://127.0.0.1:{closed_port()}/health"
    result = run(http, {"url": url})
    assert not result.ok and not result.timed_out
    assert result.error == f"connection refused: GET {url}"
    assert result.call["url"] == url


def test_slow_server_times_out_with_the_configured_timeout(
    http: ExecutorSpec, server: LocalHTTPServer
) -> None:
    server.route("/slow", delay=5)
    started = time.monotonic()
    result = run(http, {"url": server.url_for("/slow"), "timeout": 0.3})
    assert time.monotonic() - started < 2
    assert not result.ok and result.timed_out
    assert result.error == f"timed out after 0.3s: GET {server.url_for('/slow')}"


def test_attempt_timeout_wins_when_shorter(http: ExecutorSpec, server: LocalHTTPServer) -> None:
    server.route("/slow", delay=5)
    result = run(http, {"url": server.url_for("/slow"), "timeout": 30}, timeout=0.2)
    assert result.timed_out
    assert result.error is not None and result.error.startswith("timed out after 0.2s: ")


def test_cancel_before_sending_sends_nothing(http: ExecutorSpec, server: LocalHTTPServer) -> None:
    cancel = threading.Event()
    cancel.set()
    result = run(http, {"url": server.url_for("/x"), "method": "DELETE"}, cancel=cancel)
    assert result.error == "cancelled"
    assert server.requests == []


def test_unsupported_scheme_is_a_clear_failure(http: ExecutorSpec) -> None:
    result = run(http, {"url": "ftp://127.0.0.1/file"})
    assert not result.ok
    assert result.error is not None
    assert result.error.startswith("unsupported URL (")
    assert result.error.endswith(": GET ftp://127.0.0.1/file")


def test_https_to_a_plain_http_server_fails_clearly(
    http: ExecutorSpec, server: LocalHTTPServer
) -> None:
    url = server.url_for("/health").replace("http://", "https://")
    result = run(http, {"url": url})
    assert not result.ok
    assert result.error is not None
    assert result.error.startswith("TLS error (")
    assert result.error.endswith(f": GET {url}")


def test_tls_certificate_is_verified_by_default(
    http: ExecutorSpec, tls_server: LocalHTTPServer
) -> None:
    url = tls_server.url_for("/health")
    result = run(http, {"url": url})
    assert not result.ok
    assert result.error == f"TLS certificate verify failed (self-signed certificate): GET {url}"


def test_verify_false_accepts_a_self_signed_certificate(
    http: ExecutorSpec, tls_server: LocalHTTPServer
) -> None:
    result = run(http, {"url": tls_server.url_for("/health"), "verify": False})
    assert result.ok and result.fields["json"] == {"status": "ok"}


def test_remote_target_is_refused(http: ExecutorSpec, server: LocalHTTPServer) -> None:
    result = run(http, {"url": server.url_for("/"), "target": "web"}, target=Target("web", "ssh"))
    assert result.error is not None
    assert result.error.startswith("transport 'ssh' is not available: ")
    assert server.requests == []


# -- plan, read-only, schema ---------------------------------------------------------------------


def test_plan_is_the_exact_request(http: ExecutorSpec) -> None:
    config = {
        "url": "https://api.example.com/health",
        "params": {"verbose": "1"},
        "headers": {"Accept": "application/json"},
        "timeout": 5,
    }
    planned = http.plan(config, PlanContext(step_id="probe"))
    assert planned.summary == "GET https://api.example.com/health?verbose=1"
    assert planned.detail == {
        "method": "GET",
        "url": "https://api.example.com/health",
        "headers": {"Accept": "application/json"},
        "params": {"verbose": "1"},
        "timeout": 5.0,
        "verify": True,
        "follow_redirects": False,
    }
    assert http.plan(config, PlanContext(step_id="probe")) == planned


def test_plan_shows_the_body_it_would_send(http: ExecutorSpec) -> None:
    planned = http.plan(
        {"url": "http://h/x", "method": "POST", "json": {"a": 1}}, PlanContext(step_id="p")
    )
    assert planned.summary == "POST http://h/x"
    assert planned.detail["json"] == {"a": 1}
    assert "body" not in planned.detail


@pytest.mark.parametrize(
    ("method", "read_only"),
    [
        (None, True),
        ("GET", True),
        ("get", True),
        ("HEAD", True),
        ("OPTIONS", True),
        ("POST", False),
        ("PUT", False),
        ("PATCH", False),
        ("DELETE", False),
    ],
)
def test_only_reading_methods_are_read_only(
    http: ExecutorSpec, method: str | None, read_only: bool
) -> None:
    config = {"url": "http://h/"} | ({"method": method} if method else {})
    assert http.is_read_only(config) is read_only


@pytest.mark.parametrize(
    ("config", "valid"),
    [
        ({"url": "http://h/"}, True),
        ({"url": "http://h/", "method": "POST", "json": None, "timeout": 1.5}, True),
        ({"url": "http://h/", "method": "FETCH"}, False),
        ({"url": "http://h/", "json": {}, "body": "x"}, False),
        ({"url": "http://h/", "timeout": 0}, False),
        ({"url": "http://h/", "timout": 1}, False),
        ({"method": "GET"}, False),
    ],
)
def test_schema(http: ExecutorSpec, config: dict[str, Any], valid: bool) -> None:
    assert jsonschema.Draft202012Validator(http.schema).is_valid(config) is valid


def test_schema_is_closed_and_documented(http: ExecutorSpec) -> None:
    jsonschema.Draft202012Validator.check_schema(http.schema)
    assert http.schema["additionalProperties"] is False
    for name, prop in http.schema["properties"].items():
        assert prop.get("description"), name
    assert set(http.result_fields) >= {"status", "headers", "json", "text", "url", "elapsed"}


def test_server_helper_records_unknown_paths_as_404(
    http: ExecutorSpec, server: LocalHTTPServer, tmp_path: Path
) -> None:
    result = run(http, {"url": server.url_for("/nowhere?x=1")})
    assert result.fields["status"] == 404
    assert server.requests[0].path == "/nowhere"
    assert server.requests[0].query == "x=1"


def test_params_merge_with_the_query_already_in_the_url(
    http: ExecutorSpec, server: LocalHTTPServer
) -> None:
    server.route("/q", json={})
    config = {"url": server.url_for("/q?keep=1&limit=10"), "params": {"limit": "5", "x": "a b"}}
    planned = http.plan(config, PlanContext(step_id="probe"))
    run(http, config)
    assert server.requests[0].query == "keep=1&limit=5&x=a+b"
    assert planned.summary == "GET " + server.url_for("/q?keep=1&limit=5&x=a+b")


@pytest.mark.parametrize(
    ("headers", "reason"),
    [({"X-Note": "déjà"}, "invalid request ('ascii' codec"), ({"X Bad": "1"}, "invalid request (")],
)
def test_unsendable_header_is_a_failure_not_a_crash(
    http: ExecutorSpec, server: LocalHTTPServer, headers: dict[str, str], reason: str
) -> None:
    result = run(http, {"url": server.url_for("/x"), "headers": headers})
    assert not result.ok
    assert result.error is not None and result.error.startswith(reason)
    assert server.requests == []


def test_paths_are_matched_decoded(http: ExecutorSpec, server: LocalHTTPServer) -> None:
    server.route("/a b", json=1)
    assert run(http, {"url": server.url_for("/a b")}).fields["json"] == 1


# -- rendered values in URLs and headers (safety issue 12) ---------------------------------------

TRAVERSAL = "../../admin/delete?all=1#"


def render_and_run(http: ExecutorSpec, config: Mapping[str, Any], **params: Any) -> StepResult:
    """What the runner does: render with the executor's url_fields, then run."""
    rendered = Renderer({"params": params}).render_value(dict(config), url_fields=http.url_fields)
    return run(http, rendered)


def test_a_rendered_value_stays_one_path_segment(
    http: ExecutorSpec, server: LocalHTTPServer
) -> None:
    server.route("/admin/delete", json={"deleted": "everything"})
    url = server.url_for("/api/{{ params.x }}/status")
    result = render_and_run(http, {"url": url}, x=TRAVERSAL)
    assert result.fields["status"] == 404
    (seen,) = server.requests
    assert seen.raw_path == "/api/..%2F..%2Fadmin%2Fdelete%3Fall%3D1%23/status"
    assert seen.query == ""
    assert "/admin/delete" not in [r.path for r in server.requests]


def test_the_traversal_is_encoded_end_to_end_by_runbook_run(
    server: LocalHTTPServer, run_cli: Any, write_runbook: Any
) -> None:
    server.route("/admin/delete", json={"deleted": "everything"})
    path = write_runbook(
        f"""
        apiVersion: runbook/v1
        kind: Runbook
        metadata: {{name: traversal, title: Traversal, severity: P3}}
        params:
          x: {{type: string}}
        steps:
          - id: status
            phase: detect
            check: {{http: {{url: "{server.url}/api/{{{{ params.x }}}}/status"}}}}
        """
    )
    r = run_cli("run", str(path), "-p", f"x={TRAVERSAL}", "--log-dir", "logs")
    assert r.code == 1, r.text  # the 404 of the encoded path, not the admin endpoint's 200
    assert [x.raw_path for x in server.requests] == [
        "/api/..%2F..%2Fadmin%2Fdelete%3Fall%3D1%23/status"
    ]


@pytest.mark.parametrize("value", ["..", ".", "../..", "a/../..", "%2e%2e", "?x=1", "#top"])
def test_no_value_reaches_another_path_query_or_fragment(
    http: ExecutorSpec, server: LocalHTTPServer, value: str
) -> None:
    url = server.url_for("/api/{{ params.x }}/status?keep=1")
    try:
        result = render_and_run(http, {"url": url}, x=value)
    except TemplateError as exc:  # a value that would be a whole '.' or '..' segment
        assert value in (".", "..")
        assert "'.' or '..' segment" in str(exc)
        assert server.requests == []
        return
    assert result.ok
    (seen,) = server.requests
    assert seen.raw_path.startswith("/api/") and seen.raw_path.endswith("/status")
    assert seen.raw_path.count("/") == 3  # /api/<one segment>/status
    assert seen.path == f"/api/{value}/status"  # the value arrives whole, decoded
    assert seen.query == "keep=1"


def test_a_value_in_the_query_is_one_query_value(
    http: ExecutorSpec, server: LocalHTTPServer
) -> None:
    url = server.url_for("/search?q={{ params.q }}&limit=5#{{ params.q }}")
    render_and_run(http, {"url": url}, q="a&limit=1000&admin=1#x y")
    (seen,) = server.requests
    assert seen.path == "/search"
    assert seen.query == "q=a%26limit%3D1000%26admin%3D1%23x%20y&limit=5"


@pytest.mark.parametrize("host", ["evil.example/admin?", "x@evil.example", "h#", "a b"])
def test_a_value_in_the_host_may_hold_only_host_characters(http: ExecutorSpec, host: str) -> None:
    with pytest.raises(TemplateError, match="host of a URL may hold only"):
        render_and_run(http, {"url": "http://{{ params.host }}/health"}, host=host)


def test_host_and_port_values_still_work(http: ExecutorSpec, server: LocalHTTPServer) -> None:
    server.route("/health", json={"status": "ok"})
    url = "http://{{ params.host }}:{{ params.port }}/health"
    result = render_and_run(http, {"url": url}, host="127.0.0.1", port=server.port)
    assert result.ok and result.fields["json"] == {"status": "ok"}


def test_a_whole_url_from_a_param_is_taken_as_written(
    http: ExecutorSpec, server: LocalHTTPServer
) -> None:
    server.route("/api/v1/health", json={"status": "ok"})
    whole = render_and_run(http, {"url": "{{ params.url }}"}, url=server.url_for("/api/v1/health"))
    assert whole.fields["json"] == {"status": "ok"}
    based = render_and_run(
        http,
        {"url": "{{ params.base }}/v1/{{ params.x }}"},
        base=server.url_for("/api"),
        x="health",
    )
    assert based.fields["json"] == {"status": "ok"}
    assert [r.raw_path for r in server.requests] == ["/api/v1/health"] * 2


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://127.0.0.1/file", "unsupported URL (scheme 'ftp'"),
        ("/relative/path", "unsupported URL (scheme 'missing'"),
        ("http:///no-host", "invalid URL (no host)"),
        ("http://127.0.0.1/a\r\nX-Injected: 1", "invalid URL (it holds a control character"),
    ],
)
def test_a_whole_url_from_a_param_must_be_an_http_url(
    http: ExecutorSpec, server: LocalHTTPServer, url: str, reason: str
) -> None:
    result = render_and_run(http, {"url": "{{ params.url }}"}, url=url)
    assert not result.ok and (result.error or "").startswith(reason)
    assert server.requests == []


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ params.x }}/health", "needs that value to be a whole URL"),
        ("{{ params.scheme }}://127.0.0.1/", "needs that value to be a whole URL"),
        ("ht{{ params.scheme }}://127.0.0.1/", "scheme of a URL must be literal"),
        ("{{ params.base }}/health", "holds '?' or '#'"),
    ],
)
def test_a_value_cannot_choose_the_scheme_or_cut_the_url(
    http: ExecutorSpec, template: str, message: str
) -> None:
    params = {"x": "127.0.0.1", "scheme": "tp", "base": "http://127.0.0.1/admin?"}
    with pytest.raises(TemplateError) as raised:
        render_and_run(http, {"url": template}, **params)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Note": "{{ params.v }}"},
        {"X-Note": "ok {{ params.v }}"},
    ],
)
def test_header_injection_is_refused_and_nothing_is_sent(
    http: ExecutorSpec, server: LocalHTTPServer, headers: dict[str, str]
) -> None:
    for value in ("x\r\nX-Injected: 1", "x\nX-Injected: 1", "x\rX-Injected: 1"):
        result = render_and_run(http, {"url": server.url_for("/x"), "headers": headers}, v=value)
        assert not result.ok
        assert (result.error or "").startswith("invalid request (header ")
        assert "holds a line break" in (result.error or "")
    assert server.requests == []


# -- the timeout is total: a server dripping its answer is cut off at the deadline -------------


def _records_of(directory: Path) -> list[dict[str, Any]]:
    from support.helpers import logs_in

    from runbook.log.journal import read_log

    [log] = logs_in(directory)
    return read_log(log)


def test_headers_dripping_a_byte_a_second_end_at_the_timeout(
    http: ExecutorSpec, server: LocalHTTPServer
) -> None:
    server.route("/drip", Reply(json={"status": "ok"}, drip=1.0))
    started = time.monotonic()
    result = run(http, {"url": server.url_for("/drip"), "timeout": 1})
    assert not result.ok and result.timed_out
    assert result.error == f"timed out after 1.0s: GET {server.url_for('/drip')}"
    assert time.monotonic() - started < 10  # per read, httpx alone would wait ~100 bytes * 1s


def test_a_fast_drip_within_the_timeout_is_an_answer(
    http: ExecutorSpec, server: LocalHTTPServer
) -> None:
    server.route("/drip", Reply(json={"status": "ok"}, drip=0.001))
    result = run(http, {"url": server.url_for("/drip"), "timeout": 10})
    assert result.ok, result.error
    assert result.fields["json"] == {"status": "ok"}


def test_cancel_cuts_a_request_that_is_under_way(
    http: ExecutorSpec, server: LocalHTTPServer
) -> None:
    server.route("/drip", Reply(json={"status": "ok"}, drip=1.0))
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    result = run(http, {"url": server.url_for("/drip"), "timeout": 30}, cancel=cancel)
    assert result.error == f"cancelled: GET {server.url_for('/drip')}"
    assert not result.timed_out and time.monotonic() - started < 10


def test_a_dripping_webhook_is_cut_at_the_notify_timeout(server: LocalHTTPServer) -> None:
    from runbook.registry import PluginRegistry

    notify = PluginRegistry.from_entry_points().executor("notify")
    server.route("/hook", Reply(status=200, drip=1.0))
    started = time.monotonic()
    result = notify.run(
        {"message": "hi", "webhook": server.url_for("/hook"), "timeout": 1, "stdout": False},
        ExecContext(step_id="tell"),
    )
    assert result.ok  # a notification failure is recorded, not fatal
    assert result.fields["webhook_error"] == f"timed out after 1.0s: POST {server.url}/…"
    assert time.monotonic() - started < 10


def test_an_http_check_on_a_dripping_server_times_out_through_the_cli(
    server: LocalHTTPServer, run_cli: Any, write_runbook: Any, tmp_path: Path
) -> None:
    server.route("/drip", Reply(json={"status": "ok"}, drip=1.0))
    url = server.url_for("/drip")
    path = write_runbook(
        f"""
        apiVersion: runbook/v1
        kind: Runbook
        metadata: {{name: drip, title: Drip, severity: P2}}
        steps:
          - id: health
            phase: detect
            check: {{http: {{url: "{url}", timeout: 2}}}}
        """
    )
    result = run_cli("run", str(path), timeout=60)  # before: over 100s, one read per byte
    assert result.code == 4, result.text
    records = _records_of(tmp_path / "logs")
    [attempt] = [r["data"] for r in records if r["type"] == "step.attempt"]
    [outcome] = [r["data"] for r in records if r["type"] == "step.result"]
    [finished] = [r["data"] for r in records if r["type"] == "step.finished"]
    assert outcome["timed_out"] is True
    assert outcome["error"] == f"timed out after 2.0s: GET {server.url_for('/drip')}"
    assert finished["status"] == "timeout"
    assert attempt["limit"] == "attempt timeout"  # the request's own 2s was the shorter


@pytest.mark.parametrize(
    ("step_keys", "bound"),
    [("timeout: 1s", "attempt timeout"), ("deadline: 1s", "step deadline")],
)
def test_the_log_names_the_bound_that_ended_the_attempt(
    server: LocalHTTPServer,
    run_cli: Any,
    write_runbook: Any,
    tmp_path: Path,
    step_keys: str,
    bound: str,
) -> None:
    server.route("/drip", Reply(json={"status": "ok"}, drip=1.0))
    url = server.url_for("/drip")
    path = write_runbook(
        f"""
        apiVersion: runbook/v1
        kind: Runbook
        metadata: {{name: drip, title: Drip, severity: P2}}
        steps:
          - id: health
            phase: detect
            {step_keys}
            check: {{http: {{url: "{url}", timeout: 30}}}}
        """
    )
    result = run_cli("run", str(path), timeout=60)
    assert result.code == 4, result.text
    records = _records_of(tmp_path / "logs")
    [attempt] = [r["data"] for r in records if r["type"] == "step.attempt"]
    [outcome] = [r["data"] for r in records if r["type"] == "step.result"]
    assert attempt["limit"] == bound
    assert outcome["timed_out"] is True
    assert outcome["error"].endswith(f"/drip ({bound})"), outcome["error"]


# -- the HTTP status beside the step's own status ------------------------------------------------


def test_status_code_is_the_http_status(http: ExecutorSpec, server: LocalHTTPServer) -> None:
    server.route("/down", status=502, body="Bad Gateway")
    result = run(http, {"url": server.url_for("/down")})
    assert result.fields["status_code"] == result.fields["status"] == 502
    assert result.fields["json"] is None  # an HTML error page is an answer, not JSON


def test_later_steps_read_the_http_status_as_status_code(
    server: LocalHTTPServer, run_cli: Any, write_runbook: Any
) -> None:
    """`steps.ID.status` is the step's outcome (passed/failed...); `status_code` the HTTP one."""
    server.route("/health", status=502, body="Bad Gateway")
    seen = (
        "{{ steps.health.status_code }} {{ vars.code }} {{ vars.legacy }} {{ steps.health.status }}"
    )
    path = write_runbook(
        f"""
        apiVersion: runbook/v1
        kind: Runbook
        metadata: {{name: codes, title: Codes, severity: P3}}
        steps:
          - id: health
            phase: detect
            check: {{http: {{url: "{server.url}/health"}}}}
            expect: ["status_code == 200"]
            register: {{code: status_code, legacy: status}}
            on_failure: continue
          - id: gateway
            phase: triage
            when: "steps.health.status == 'failed' and steps.health.status_code == 502"
            check: {{shell: {{argv: [echo, "{seen}"]}}}}
            expect: ["stdout == '502 502 502 failed\\\\n'"]
          - id: done
            phase: resolve
            check: {{shell: {{argv: ["true"]}}}}
        """
    )
    r = run_cli("run", str(path), "--log-dir", "logs")
    assert r.code == 0, r.text
    (log,) = (path.parent / "logs").glob("*.jsonl")
    records = [json.loads(line) for line in log.read_text().splitlines()]
    ended = {
        x["data"]["step"]: x["data"]["status"] for x in records if x["type"] == "step.finished"
    }
    assert ended == {"health": "failed", "gateway": "passed", "done": "passed"}
