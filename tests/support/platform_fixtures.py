"""Session fixtures for the platform executors: the Kubernetes double, moto_server and a
real PostgreSQL primary + streaming replica. Each starts once per test session (they
take 0.1-1.5 s) and hands tests a clean state; all are torn down by PID/handle."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.http_servers import closed_port
from support.k8s_double import K8sDouble, k8s_double
from support.pg_cluster import PgCluster, available, pg_cluster

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def k8s_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[K8sDouble]:
    with k8s_double(tmp_path_factory.mktemp("k8s")) as double:
        yield double


@pytest.fixture
def k8s(k8s_session: K8sDouble) -> K8sDouble:
    """The API double, emptied: seed what the test needs."""
    k8s_session.reset()
    return k8s_session


@pytest.fixture(scope="session")
def pg() -> Iterator[PgCluster]:
    reason = available()
    if reason:
        pytest.skip(reason)
    with pg_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """`moto_server` on 127.0.0.1 (its own process, like a real endpoint)."""
    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("moto_server not installed (pip install 'moto[server]')")
    port = closed_port()
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **AWS_ENV},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_port(port, proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    import socket

    until = time.monotonic() + 20
    while time.monotonic() < until:
        if proc.poll() is not None:
            raise RuntimeError("moto_server exited")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("moto_server did not listen within 20s")


def rds_instance(endpoint_url: str | None, name: str, multi_az: bool = True) -> None:
    """Create a PostgreSQL DB instance in moto (in-process or server)."""
    import boto3

    client = boto3.client("rds", region_name="us-east-1", endpoint_url=endpoint_url)
    client.create_db_instance(
        DBInstanceIdentifier=name,
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        MultiAZ=multi_az,
        AllocatedStorage=20,
        MasterUsername="admin1",
        MasterUserPassword="adminpass1",
    )
