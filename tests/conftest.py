"""Shared fixtures: run the real `runbook` CLI in a subprocess, write runbooks.

Helpers and types live in `tests/support/`; tests import them from there, never from here.

Tests drive the product the way a user does — a real process, real files,
real exit codes — so nothing of our own is patched.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from support.cli import CliResult, RunCli

# Session fixtures for the platform executors (Kubernetes double, moto_server, PostgreSQL)
# and a real Prometheus scraping the demo service.
pytest_plugins = ["support.platform_fixtures", "support.prometheus"]


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")}
    env["RUNBOOK_LOG_DIR"] = str(tmp_path / "logs")
    env["RUNBOOK_OPERATOR"] = "tester"
    env["NO_COLOR"] = "1"
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


@pytest.fixture
def run_cli(tmp_path: Path, cli_env: dict[str, str]) -> RunCli:
    """Run `python -m runbook ARGS` in tmp_path; returns code/stdout/stderr."""

    def run(
        *args: str,
        input: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60,
        cwd: Path | None = None,
    ) -> CliResult:
        proc = subprocess.run(
            [sys.executable, "-m", "runbook", *args],
            cwd=cwd or tmp_path,
            env={**cli_env, **(env or {})},
            input=input or "",
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture
def write_runbook(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a runbook (dedented YAML) into tmp_path and return its path."""

    def write(text: str, name: str = "rb.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    return write
