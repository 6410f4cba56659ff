"""The demo service: a tiny HTTP API on 127.0.0.1 that can be wedged.

It answers `/health` (JSON with a database check), `/__ok` and `/metrics`, and
logs every request. SIGUSR1 wedges it the way a leaked connection pool does:
from then on `/health` returns 503 and the log fills with errors, until the
process is restarted. That is exactly the failure a service-outage runbook
exists for, reproduced with the standard library and prometheus-client.
`/metrics` answers JSON counters (seed 004's `curl -s /metrics | jq '.errors'`),
and a Prometheus scrape (which asks for `text/plain` or OpenMetrics) the
exposition format: `http_requests_total` and `http_errors_total` by path and
status, the `http_request_duration_seconds` histogram by path (scrapes of
`/metrics` itself are not counted there, so they do not dilute an error ratio),
and the `process_*` metrics (a restart shows in `process_start_time_seconds`).
"""

from __future__ import annotations

import json
import signal
import sys
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
)
from prometheus_client import generate_latest as exposition

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)  # process_start_time_seconds: restarts show as changes()
REQUESTS = Counter(
    "http_requests_total",
    "Requests answered, by path and status.",
    ["path", "status"],
    registry=REGISTRY,
)
ERRORS = Counter(
    "http_errors_total",
    "Requests answered with a 5xx status, by path and status.",
    ["path", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time to answer a request, by path.",
    ["path"],
    registry=REGISTRY,
)
PATHS = ("/health", "/__ok")
"""Paths labelled by name; anything else but /metrics is `other` (a scan cannot add series)."""
for _path in PATHS:  # these series exist from the start, so a rate over no errors is 0
    LATENCY.labels(_path)
    for _status in ("200", "503"):
        REQUESTS.labels(_path, _status)
    ERRORS.labels(_path, "503")


class DemoState:
    wedged = False
    started = time.time()
    requests = 0
    errors = 0


def log(level: str, message: str) -> None:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    print(f"{stamp} {level} {message}", flush=True)


class Handler(BaseHTTPRequestHandler):
    server_version = "runbook-demo/1"
    status = 0  # of the answer sent, for the metrics

    def _send(self, status: int, body: dict[str, Any]) -> None:
        self._reply(status, json.dumps(body).encode(), "application/json")

    def _reply(self, status: int, data: bytes, content_type: str) -> None:
        self.status = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        DemoState.requests += 1
        started = time.perf_counter()
        if self.path in ("/health", "/api/health"):
            self._health()
        elif self.path == "/__ok":
            self._send(503 if DemoState.wedged else 200, {"ok": not DemoState.wedged})
        elif self.path == "/metrics":
            self._metrics()
            return
        else:
            self._send(404, {"error": "not found"})
        path = "/health" if self.path == "/api/health" else self.path
        _count(path if path in PATHS else "other", self.status, time.perf_counter() - started)

    def _metrics(self) -> None:
        accept = self.headers.get("Accept", "")
        if "text/plain" in accept or "openmetrics" in accept:  # a Prometheus scrape
            self._reply(200, exposition(REGISTRY), CONTENT_TYPE_LATEST)
            return
        self._send(
            200,
            {
                "requests": DemoState.requests,
                "errors": DemoState.errors,
                "uptime": round(time.time() - DemoState.started, 1),
            },
        )

    def _health(self) -> None:
        if DemoState.wedged:
            DemoState.errors += 1
            log("ERROR", "health check failed: database connection pool exhausted (0/20 free)")
            self._send(503, {"status": "error", "checks": {"database": "timeout", "cache": "ok"}})
        else:
            self._send(200, {"status": "ok", "checks": {"database": "ok", "cache": "ok"}})

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        log("INFO", f"{self.address_string()} {format % args}")


def _count(path: str, status: int, seconds: float) -> None:
    REQUESTS.labels(path, str(status)).inc()
    if status >= 500:
        ERRORS.labels(path, str(status)).inc()
    LATENCY.labels(path).observe(seconds)


def _wedge(signum: int, frame: object) -> None:
    DemoState.wedged = True
    log("ERROR", "database connection pool exhausted; requests are timing out")


def main(port: int) -> None:
    signal.signal(signal.SIGUSR1, _wedge)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    log("INFO", f"demo-api listening on http://127.0.0.1:{port}")
    server.serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]))
