"""Real HTTP servers on 127.0.0.1 for tests, scripted per route, recording every request.

Our own code is never mocked; the http and notify executors (and the runner,
the kubernetes double, webhooks...) talk to these over real sockets. A server
is cheap to start, so use one per test, or one per module/session with
`reset()` between tests:

    with http_server() as server:
        server.route("/health", json={"status": "ok"})
        server.route("/flaky", Reply(status=503), Reply(status=200))  # then 200 for ever
        server.route("POST /hook", status=204)
        server.route("/slow", delay=5)
        server.route("/drip", drip=1.0)  # status line and headers at one byte a second
        ...  # use server.url_for("/health")
        assert server.requests[0].json() == ...

Replies to one route are served in order and the last one repeats. An unknown
path answers 404 and is still recorded. `tls=` serves HTTPS (see
`self_signed_cert`); `closed_port()` gives a port where nothing listens.
"""

from __future__ import annotations

import json as jsonlib
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

_NO_JSON = object()


@dataclass(frozen=True)
class Reply:
    """One scripted response. `json` wins over `body`; `delay` sleeps before answering;
    `drip` sends the status line and headers one byte at a time, `drip` seconds apart
    (a server that is slow on every read but never silent for long)."""

    status: int = 200
    json: Any = _NO_JSON
    body: bytes | str = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drip: float = 0.0

    def payload(self) -> tuple[bytes, dict[str, str]]:
        headers = {k.lower(): v for k, v in self.headers.items()}
        if self.json is not _NO_JSON:
            headers.setdefault("content-type", "application/json")
            return jsonlib.dumps(self.json).encode(), headers
        body = self.body.encode() if isinstance(self.body, str) else self.body
        if body:
            headers.setdefault("content-type", "text/plain; charset=utf-8")
        return body, headers


def redirect(location: str, status: int = 302) -> Reply:
    return Reply(status=status, headers={"location": location})


@dataclass(frozen=True)
class Received:
    """A request as the server saw it (header names lower-cased; `path` decoded, `raw_path`
    exactly as sent)."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes
    raw_path: str = ""

    def json(self) -> Any:
        return jsonlib.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class LocalHTTPServer:
    """A ThreadingHTTPServer on 127.0.0.1 with scripted routes and a request record."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self._lock = threading.Lock()
        self._routes: dict[str, list[Reply]] = {}
        self._served: dict[str, int] = {}
        self.requests: list[Received] = []
        self.closing = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), _handler_for(self))
        if tls is not None:
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        self.port: int = self._httpd.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def url_for(self, path: str) -> str:
        return self.url + path

    def route(self, key: str, *replies: Reply, **reply: Any) -> None:
        """Script `key` ("/path" for any method, or "METHOD /path").

        Pass Reply objects to serve in order, or Reply's fields as keywords.
        """
        script = list(replies) or [Reply(**reply)]
        with self._lock:
            self._routes[key] = script
            self._served[key] = 0

    def reset(self) -> None:
        """Forget routes and recorded requests (for a server shared between tests)."""
        with self._lock:
            self._routes.clear()
            self._served.clear()
            self.requests.clear()

    def close(self) -> None:
        self.closing.set()  # wakes handlers sleeping on a `delay`
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> LocalHTTPServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _record_and_pick(self, received: Received) -> Reply | None:
        with self._lock:
            self.requests.append(received)
            for key in (f"{received.method} {received.path}", received.path):
                script = self._routes.get(key)
                if script is not None:
                    index = min(self._served[key], len(script) - 1)
                    self._served[key] += 1
                    return script[index]
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a handler sleeping on a long `delay` must not block close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up (timeouts, TLS rejections) are what tests provoke


def _handler_for(server: LocalHTTPServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            headers = {k.lower(): v for k, v in self.headers.items()}
            path = unquote(parts.path)  # routes are written as readable paths
            received = Received(self.command, path, parts.query, headers, body, parts.path)
            reply = server._record_and_pick(received) or Reply(404, json={"error": "no route"})
            if reply.delay and server.closing.wait(reply.delay):
                self.close_connection = True
                return
            self._answer(reply)

        def _answer(self, reply: Reply) -> None:
            payload, headers = reply.payload()
            if reply.drip:
                self._drip(reply, payload, headers)
                return
            self.send_response(reply.status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def _drip(self, reply: Reply, payload: bytes, headers: dict[str, str]) -> None:
            lines = [f"HTTP/1.1 {reply.status} {self.responses[reply.status][0]}"]
            lines += [f"{name}: {value}" for name, value in headers.items()]
            lines += [f"content-length: {len(payload)}", "", ""]
            for byte in "\r\n".join(lines).encode():
                self.wfile.write(bytes([byte]))
                if server.closing.wait(reply.drip):
                    self.close_connection = True
                    return
            self.wfile.write(payload)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _serve

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            pass

    return Handler


@contextmanager
def http_server(tls: ssl.SSLContext | None = None) -> Iterator[LocalHTTPServer]:
    """Start a LocalHTTPServer for the duration of the `with` block."""
    server = LocalHTTPServer(tls=tls)
    try:
        yield server
    finally:
        server.close()


def closed_port() -> int:
    """A loopback port nobody listens on: bound, then released."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def self_signed_cert(directory: Path) -> ssl.SSLContext | None:
    """A server TLS context with a fresh self-signed cert for 127.0.0.1, or None without openssl.

    A client that verifies certificates must reject it; that is the point.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context
