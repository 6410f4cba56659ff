"""A real Prometheus (Debian's `prometheus`) on 127.0.0.1, scraping the real demo service.

Started once per test session with its own config file and data directory in a
temporary directory, a 1 s scrape and rule-evaluation interval, and
`--web.enable-lifecycle` so a changed config is applied with `POST /-/reload`
(which answers only once the reload is done, or with its error). It scrapes the
demo service (`runbook_demo.service`, the one `runbook-demo` supervises) as job
`demo`, kept busy by a traffic thread (~10 requests/s to `/health`): without
traffic an error ratio is 0/0, NaN. Torn down by PID (SIGTERM) at the end.

Fixtures (registered in tests/conftest.py):

    prometheus_session  the PrometheusServer, started once (skips when not installed)
    prometheus          the same server, its demo healthy again and rules/targets
                        back to the session's start: use this one in tests

Reuse it for alerting tests: `prometheus.set_rules(text)` loads a rule file,
`prometheus.set_alertmanagers([url])` points it at an Alertmanager,
`prometheus.add_target(job, port)` scrapes another endpoint, `prometheus.demo.wedge()`
makes `/health` answer 503 (the error ratio then climbs to 1.0), and
`prometheus.wait_for(promql, predicate)` waits for data. Measured here: /-/ready in
~0.5 s, the first `up == 1` ~6 s after start (Prometheus applies target changes at most
every 5 s), a target added by reload ~2.5 s later.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from runbook_demo.supervisor import Service

from support.http_servers import closed_port

BIN = Path(os.environ.get("PROMETHEUS_BIN", "/usr/bin/prometheus"))
SCRAPE_INTERVAL = "1s"
TRAFFIC_PER_SECOND = 10.0


def available() -> str | None:
    """Why Prometheus cannot be started here, or None when it can."""
    if not BIN.exists():
        return f"{BIN} not found (Debian package `prometheus`: run .ci/setup-system)"
    return None


class DemoService:
    """The demo service in its own process on a fixed port, with steady traffic to /health.

    `wedge()` makes it answer 503 (SIGUSR1, like `runbook-demo wedge`); `restart()`
    brings up a healthy one on the same port, so Prometheus keeps scraping it.
    """

    def __init__(self, root: Path, name: str = "demo", port: int | None = None) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.service = Service(name, root)
        self.port = port or closed_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.wedged = False
        self._stop = threading.Event()
        self._traffic: threading.Thread | None = None

    def start(self) -> None:
        if self.service.start(self.port) != 0:
            raise RuntimeError(f"demo service did not listen on {self.url}: {self.log_tail()}")
        self.wedged = False

    def stop(self) -> None:
        self.service.stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    def wedge(self) -> None:
        pid = self.service.pid()
        if pid is None:
            raise RuntimeError("demo service is not running")
        os.kill(pid, signal.SIGUSR1)
        self.wedged = True

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.service.log.read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def start_traffic(self, per_second: float = TRAFFIC_PER_SECOND) -> None:
        """Send GET /health `per_second` times a second until `stop_traffic()`."""
        if self._traffic is not None:
            return
        self._stop.clear()

        def loop() -> None:
            with httpx.Client(timeout=2.0) as client:
                while not self._stop.wait(1.0 / per_second):
                    # while it restarts, the next request finds the new process
                    with contextlib.suppress(httpx.HTTPError):
                        client.get(f"{self.url}/health")

        self._traffic = threading.Thread(target=loop, name="demo-traffic", daemon=True)
        self._traffic.start()

    def stop_traffic(self) -> None:
        self._stop.set()
        if self._traffic is not None:
            self._traffic.join(timeout=5)
            self._traffic = None


class PrometheusServer:
    """A Prometheus process with a config this object writes; see the module docstring."""

    def __init__(self, root: Path, demo: DemoService) -> None:
        self.root = root
        self.demo = demo
        self.port = closed_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_file = root / "prometheus.yml"
        self.data_dir = root / "data"
        self.log_file = root / "prometheus.log"
        self.targets: dict[str, list[str]] = {"demo": [f"127.0.0.1:{demo.port}"]}
        self.rule_files: list[Path] = []
        self.alertmanagers: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self._initial: tuple[dict[str, list[str]], list[Path], list[str]] | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, timeout: float = 60) -> None:
        self._write_config()
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(BIN),
                    f"--config.file={self.config_file}",
                    f"--storage.tsdb.path={self.data_dir}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--web.enable-lifecycle",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._initial = (
            {job: list(hosts) for job, hosts in self.targets.items()},
            list(self.rule_files),
            list(self.alertmanagers),
        )
        self.wait_for('up{job="demo"}', lambda r: bool(r) and r[0]["value"][1] == "1", timeout)

    def stop(self) -> None:
        """SIGTERM by PID; Prometheus exits within a second or two (SIGKILL after 15 s)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def reset(self) -> None:
        """Back to the session's start: the demo healthy, the first targets, no rules."""
        if self.demo.wedged or self.demo.service.pid() is None:
            restarted = time.time()
            self.demo.restart()
            # a scrape that failed during the restart marks the demo's series stale: until the
            # next good one, a query for them answers nothing
            self.wait_scraped("demo", since=restarted)
        assert self._initial is not None
        targets, rules, managers = self._initial
        if (targets, rules, managers) != (self.targets, self.rule_files, self.alertmanagers):
            self.targets = {job: list(hosts) for job, hosts in targets.items()}
            self.rule_files, self.alertmanagers = list(rules), list(managers)
            self.reload()

    # -- configuration ----------------------------------------------------------------------
    def add_target(self, job: str, port: int) -> None:
        """Scrape 127.0.0.1:`port` as `job` from now on and wait until it is `up`."""
        self.targets.setdefault(job, []).append(f"127.0.0.1:{port}")
        since = time.time()
        self.reload()
        self.wait_scraped(job, since)

    def set_rules(self, text: str, name: str = "rules.yml") -> Path:
        """Load one rule file (YAML text, Prometheus' `groups:` format); replaces a file of
        the same name. Returns its path; the rules are evaluated once it returns."""
        path = self.root / name
        path.write_text(text)
        if path not in self.rule_files:
            self.rule_files.append(path)
        self.reload()
        return path

    def set_alertmanagers(self, urls: Sequence[str]) -> None:
        """Send alerts to these Alertmanagers (`http://127.0.0.1:PORT`)."""
        self.alertmanagers = list(urls)
        self.reload()

    def reload(self) -> None:
        """Rewrite the config and apply it; raises with Prometheus' reason when it refuses."""
        self._write_config()
        reply = httpx.post(f"{self.url}/-/reload", timeout=30)
        if reply.status_code != 200:
            raise RuntimeError(f"Prometheus refused the config: {reply.text.strip()}")

    def _write_config(self) -> None:
        config: dict[str, Any] = {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
            "rule_files": [str(path) for path in self.rule_files],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": hosts}]}
                for job, hosts in self.targets.items()
            ],
        }
        if self.alertmanagers:
            hosts = [url.split("://", 1)[-1].rstrip("/") for url in self.alertmanagers]
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": hosts}]}]}
        # JSON is YAML: no YAML writer needed, and no quoting surprises.
        self.config_file.write_text(json.dumps(config, indent=2))

    # -- reading ------------------------------------------------------------------------------
    def query(self, promql: str) -> dict[str, Any]:
        """The `data` of an instant query, straight from the API (for test set-up only)."""
        reply = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        body = reply.json()
        if body.get("status") != "success":
            raise RuntimeError(f"query {promql!r} failed: {body}")
        data: dict[str, Any] = body["data"]
        return data

    def wait_for(
        self,
        promql: str,
        predicate: Callable[[list[dict[str, Any]]], bool],
        timeout: float = 30,
    ) -> list[dict[str, Any]]:
        """Poll `promql` until `predicate(result)` holds; returns that result."""
        until = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"Prometheus exited: {self.log_tail()}")
            try:
                result = self.query(promql)["result"]
            except (httpx.HTTPError, ValueError):
                result = []
            if predicate(result):
                return result
            if time.monotonic() > until:
                raise TimeoutError(f"{promql!r} did not hold in {timeout}s (last: {result})")
            time.sleep(0.2)

    def wait_scraped(self, job: str, since: float, timeout: float = 30) -> None:
        """Wait until every target of `job` was scraped, successfully, after `since` (Unix
        time): its series are then fresh, whatever happened to the target before."""
        until = time.monotonic() + timeout
        while True:
            up = self.query(f'up{{job="{job}"}}')["result"]
            stamps = self.query(f'timestamp(up{{job="{job}"}})')["result"]
            fresh = bool(stamps) and min(float(s["value"][1]) for s in stamps) > since
            if fresh and up and all(s["value"][1] == "1" for s in up):
                return
            if time.monotonic() > until:
                raise TimeoutError(f"job {job!r} was not scraped since {since} in {timeout}s")
            time.sleep(0.2)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"


def series_value(result: Sequence[Mapping[str, Any]]) -> float | None:
    """The value of a one-series instant result, else None (for `wait_for` predicates)."""
    return float(result[0]["value"][1]) if len(result) == 1 else None


@contextmanager
def prometheus_server(root: Path | None = None) -> Iterator[PrometheusServer]:
    """A demo service with traffic and a Prometheus scraping it, for the `with` block."""
    root = root or Path(tempfile.mkdtemp(prefix="runbook-prometheus-"))
    demo = DemoService(root / "demo")
    server = PrometheusServer(root, demo)
    demo.start()
    demo.start_traffic()
    try:
        server.start()
        yield server
    finally:
        server.stop()
        demo.stop_traffic()
        demo.stop()


@pytest.fixture(scope="session")
def prometheus_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """Prometheus scraping the demo, started once per session (skipped when not installed)."""
    reason = available()
    if reason:
        pytest.skip(reason)
    with prometheus_server(tmp_path_factory.mktemp("prometheus")) as server:
        yield server


@pytest.fixture
def prometheus(prometheus_session: PrometheusServer) -> PrometheusServer:
    """The session's Prometheus, its demo healthy and its config as it started."""
    prometheus_session.reset()
    return prometheus_session
