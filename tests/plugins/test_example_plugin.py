"""The example plugin in docs/examples/plugin is installed and used like a real one.

The distribution is installed from its own pyproject.toml the way pip lays it
out (the module next to a `*.dist-info` with its entry points) into a temporary
directory on PYTHONPATH: the current venv is never modified, and no build
backend has to be fetched. The executor then runs through the real CLI against
a real TCP listener on 127.0.0.1.
"""

from __future__ import annotations

import shutil
import socket
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli import ROOT, RunCli

EXAMPLE = ROOT / "docs" / "examples" / "plugin"

RUNBOOK = """\
apiVersion: runbook/v1
kind: Runbook
metadata: {name: db-reachable, title: Database port reachable, severity: P2, owners: [t@x.io]}
params:
  db_host: {type: string, default: 127.0.0.1, pattern: "^[A-Za-z0-9.-]+$"}
  db_port: {type: int, required: true, min: 1, max: 65535, example: 5432}
steps:
  - id: db-port
    phase: detect
    check: {tcp_port: {host: "{{ params.db_host }}", port: "{{ params.db_port }}", timeout: 2}}
    expect: ["open", "elapsed < 1.0"]
    timeout: 5s
"""


def install_example(target: Path) -> Path:
    """Lay the example distribution out as `pip install --target` does."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))
    meta, modules = project["project"], project["tool"]["setuptools"]["py-modules"]
    target.mkdir(parents=True, exist_ok=True)
    for module in modules:
        shutil.copy(EXAMPLE / f"{module}.py", target / f"{module}.py")
    info = target / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n"
    )
    entry_points = meta["entry-points"]["runbook"]
    lines = ["[runbook]", *(f"{name} = {value}" for name, value in entry_points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return target


@pytest.fixture
def plugin_env(tmp_path: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(install_example(tmp_path / "site"))}


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield int(server.getsockname()[1])


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once it is closed


@pytest.fixture
def db_runbook(tmp_path: Path) -> Path:
    path = tmp_path / "db-reachable.yaml"
    path.write_text(RUNBOOK, encoding="utf-8")
    return path


def test_pyproject_declares_the_runbook_entry_point() -> None:
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["entry-points"]["runbook"] == {"tcp_port": "runbook_tcp_port"}
    assert any(d.startswith("runbook-as-code") for d in project["project"]["dependencies"])


def test_runbook_plugins_lists_tcp_port_with_its_distribution(
    run_cli: RunCli, plugin_env: dict[str, str]
) -> None:
    result = run_cli("plugins", env=plugin_env)
    assert result.code == 0, result.text
    line = next(li for li in result.out.splitlines() if li.startswith("tcp_port"))
    assert "runbook-tcp-port" in line and "1.0.0" in line and "TCP port" in line


def test_schema_of_the_example_executor_is_served_to_editors(
    run_cli: RunCli, plugin_env: dict[str, str]
) -> None:
    result = run_cli("schema", "--executor", "tcp_port", env=plugin_env)
    assert result.code == 0, result.text
    assert '"port"' in result.out and "TCP port, 1-65535." in result.out


def test_plan_is_pure_and_shows_the_connection(
    run_cli: RunCli, plugin_env: dict[str, str], db_runbook: Path
) -> None:
    result = run_cli("plan", str(db_runbook), "-p", "db_port=5432", env=plugin_env)
    assert result.code == 0, result.text
    assert "tcp connect 127.0.0.1:5432 (timeout 2s)" in result.out


def test_run_passes_against_a_real_listener(
    run_cli: RunCli, plugin_env: dict[str, str], db_runbook: Path, listener: int, tmp_path: Path
) -> None:
    result = run_cli("run", str(db_runbook), "-p", f"db_port={listener}", env=plugin_env)
    assert result.code == 0, result.text
    assert "db-port  check passed" in result.out
    logs = sorted((tmp_path / "logs").glob("*-db-reachable-*.jsonl"))
    assert logs and "runbook-tcp-port 1.0.0" in logs[0].read_text()
    assert run_cli("log", "verify", str(logs[0])).code == 0


def test_run_fails_with_operands_when_nothing_listens(
    run_cli: RunCli, plugin_env: dict[str, str], db_runbook: Path
) -> None:
    result = run_cli("run", str(db_runbook), "-p", f"db_port={closed_port()}", env=plugin_env)
    assert result.code == 1, result.text
    assert "db-port  check failed" in result.out
    assert "(open)" in result.out


def test_out_of_range_port_is_invalid_before_anything_runs(
    run_cli: RunCli, plugin_env: dict[str, str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(RUNBOOK.replace('"{{ params.db_port }}"', "70000"), encoding="utf-8")
    result = run_cli("validate", str(bad), env=plugin_env)
    assert result.code == 2
    assert "bad.yaml:10:" in result.text and "port" in result.text
