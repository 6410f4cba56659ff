"""The demo service: a tiny HTTP API on 127.0.0.1 that can be wedged.

It answers `/health` (JSON with a database check), `/__ok` and `/metrics`, and
logs every request. SIGUSR1 wedges it the way a leaked connection pool does:
from then on `/health` returns 503 and the log fills with errors, until the
process is restarted. That is exactly the failure a service-outage runbook
exists for, reproduced with nothing but the standard library.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        DemoState.requests += 1
        if self.path in ("/health", "/api/health"):
            self._health()
        elif self.path == "/__ok":
            self._send(503 if DemoState.wedged else 200, {"ok": not DemoState.wedged})
        elif self.path == "/metrics":
            self._send(
                200,
                {
                    "requests": DemoState.requests,
                    "errors": DemoState.errors,
                    "uptime": round(time.time() - DemoState.started, 1),
                },
            )
        else:
            self._send(404, {"error": "not found"})

    def _health(self) -> None:
        if DemoState.wedged:
            DemoState.errors += 1
            log("ERROR", "health check failed: database connection pool exhausted (0/20 free)")
            self._send(503, {"status": "error", "checks": {"database": "timeout", "cache": "ok"}})
        else:
            self._send(200, {"status": "ok", "checks": {"database": "ok", "cache": "ok"}})

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        log("INFO", f"{self.address_string()} {format % args}")


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
