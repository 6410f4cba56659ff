"""Bad input: one clear line naming what and where, exit 2, nothing half-written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
apiVersion: runbook/v1
kind: Runbook
metadata: {name: bad-input, title: Bad input, severity: P2}
params:
  service: {type: string, required: true, pattern: "^[a-z-]+$", example: api}
  replicas: {type: int, default: 3, min: 1, max: 20}
  mode: {type: enum, values: [systemd, demo], default: systemd}
steps:
  - {id: a, phase: detect, check: {shell: {argv: [echo, "{{ params.service }}"]}}}
"""


def _no_logs(tmp_path: Path) -> bool:
    logs = tmp_path / "logs"
    return not logs.exists() or not any(logs.iterdir())


def test_unknown_runbook_name_lists_close_names(run_cli, tmp_path):
    result = run_cli("run", "service-outag")
    assert result.code == 2
    assert "service-outage" in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert _no_logs(tmp_path)


def test_missing_required_param_names_it(run_cli, write_runbook, tmp_path):
    result = run_cli("run", str(write_runbook(GOOD)))
    assert result.code == 2
    assert "service" in result.err and "-p service=" in result.err
    assert _no_logs(tmp_path)


def test_param_failing_pattern_enum_and_range(run_cli, write_runbook, tmp_path):
    rb = str(write_runbook(GOOD))
    r = run_cli("run", rb, "-p", "service=api; rm -rf /")
    assert r.code == 2 and "pattern" in r.err
    r = run_cli("run", rb, "-p", "service=api", "-p", "mode=sytemd")
    assert r.code == 2 and "systemd, demo" in r.err and "did you mean 'systemd'" in r.err
    r = run_cli("run", rb, "-p", "service=api", "-p", "replicas=50")
    assert r.code == 2 and "maximum" in r.err
    r = run_cli("run", rb, "-p", "service=api", "-p", "replicas=three")
    assert r.code == 2 and "not a valid int" in r.err
    assert _no_logs(tmp_path)


def test_unknown_param_key_suggests(run_cli, write_runbook):
    r = run_cli("run", str(write_runbook(GOOD)), "-p", "service=api", "-p", "replica=2")
    assert r.code == 2
    assert "unknown param 'replica'" in r.err and "did you mean 'replicas'" in r.err


def test_malformed_yaml_reports_file_and_line(run_cli, write_runbook):
    path = write_runbook(GOOD + "  - {id: b, phase: detect\n", "broken.yaml")
    r = run_cli("validate", str(path))
    assert r.code == 2
    assert "broken.yaml:" in r.err


def test_wrong_type_reports_path_and_line(run_cli, write_runbook):
    path = write_runbook(GOOD.replace("check: {shell", "timeout: five, check: {shell"), "t.yaml")
    r = run_cli("validate", str(path))
    assert r.code == 2
    assert "t.yaml:9:" in r.err and "timeout" in r.err


def test_misspelled_key_gets_did_you_mean_with_line(run_cli, write_runbook):
    path = write_runbook(
        """
        apiVersion: runbook/v1
        kind: Runbook
        metadata: {name: typo, title: Typo, severity: P2}
        steps:
          - id: health
            phase: detect
            check: {http: {url: "http://127.0.0.1:9/health"}}
            retires: {attempts: 3}
        """,
        "typo.yaml",
    )
    r = run_cli("validate", str(path))
    assert r.code == 2
    assert "typo.yaml:8:" in r.err and "retries" in r.err


def test_unknown_executor_lists_installed_ones_and_suggests(run_cli, write_runbook):
    path = write_runbook(GOOD.replace("check: {shell:", "check: {kubernets:"), "k.yaml")
    r = run_cli("validate", str(path))
    assert r.code == 2
    assert "k.yaml:9:" in r.err
    assert "did you mean 'kubernetes'" in r.err and "shell" in r.err and "http" in r.err


def test_unwritable_log_dir_is_a_clear_error(run_cli, write_runbook, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    r = run_cli(
        "run", str(write_runbook(GOOD)), "-p", "service=api", "--log-dir", str(blocker / "logs")
    )
    assert r.code == 2
    assert str(blocker) in r.err


def test_validate_ok_and_schema_commands(run_cli, write_runbook):
    r = run_cli("validate", str(write_runbook(GOOD)))
    assert r.code == 0 and "ok" in r.out
    schema = run_cli("schema")
    assert schema.code == 0 and '"$schema"' in schema.out
    one = run_cli("schema", "--executor", "http")
    assert one.code == 0 and '"url"' in one.out
    assert run_cli("schema", "--executor", "nope").code == 2


def test_help_and_validate_do_not_import_sdks():
    code = (
        "import sys, runbook.cli.main\n"
        "try:\n    runbook.cli.main.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "bad = [m for m in ('boto3', 'botocore', 'kubernetes', 'paramiko', 'jinja2', 'httpx') "
        "if m in sys.modules]\n"
        "print('SDK:' + ','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "SDK:"
    code = (
        "import sys, runbook.cli.main\n"
        f"rc = runbook.cli.main.main(['validate', r'{ROOT / 'runbooks' / 'service-outage.yaml'}'])"
        "\n"
        "bad = [m for m in ('boto3', 'botocore', 'kubernetes', 'paramiko', 'jinja2', 'httpx') "
        "if m in sys.modules]\n"
        "print('SDK:', rc, ','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "SDK: 0"


def test_help_lists_every_verb_and_exit_codes(run_cli):
    r = run_cli("--help")
    for verb in (
        "list",
        "show",
        "validate",
        "plan",
        "run",
        "log",
        "report",
        "new",
        "schema",
        "plugins",
    ):
        assert verb in r.out
    assert "130" in r.out
