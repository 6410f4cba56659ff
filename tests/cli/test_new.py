"""`runbook new`: scaffolds a runbook that validates strictly; refuses bad names and overwrites."""

from __future__ import annotations


def test_new_scaffold_validates_strictly_and_plans(run_cli, tmp_path):
    created = run_cli("new", "api-latency", "--severity", "P1")
    assert created.code == 0, created.err
    path = tmp_path / "runbooks" / "api-latency.yaml"
    assert "severity: P1" in path.read_text()
    assert run_cli("validate", "--strict", str(path)).code == 0
    plan = run_cli("plan", "api-latency", "-p", "health_url=http://127.0.0.1:9/health")
    assert plan.code == 0 and "systemctl restart api" in plan.out


def test_new_refuses_to_overwrite_without_force(run_cli, tmp_path):
    assert run_cli("new", "twice").code == 0
    path = tmp_path / "runbooks" / "twice.yaml"
    path.write_text(path.read_text() + "# my edits\n")
    again = run_cli("new", "twice")
    assert again.code == 2 and "--force" in again.err
    assert "# my edits" in path.read_text()
    assert run_cli("new", "twice", "--force").code == 0
    assert "# my edits" not in path.read_text()


def test_new_rejects_invalid_names(run_cli, tmp_path):
    for bad in ("Bad_Name", "-lead", "a b", "../escape"):
        result = run_cli("new", bad)
        assert result.code == 2, bad
    assert not (tmp_path / "runbooks").exists()


def test_new_from_a_shipped_runbook_renames_it(run_cli, tmp_path):
    assert run_cli("new", "my-outage", "--from", "service-outage", "--severity", "P1").code == 0
    text = (tmp_path / "runbooks" / "my-outage.yaml").read_text()
    assert "name: my-outage" in text and "severity: P1" in text
    assert run_cli("validate", str(tmp_path / "runbooks" / "my-outage.yaml")).code == 0


def test_new_scaffolds_scenario_tests_that_pass(run_cli, tmp_path, cli_env):
    import subprocess
    import sys

    assert run_cli("new", "api-latency").code == 0
    scenarios = tmp_path / "runbooks" / "scenarios" / "api-latency.yaml"
    assert "down-then-restarted" in scenarios.read_text()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "runbooks/"],
        cwd=tmp_path,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "5 passed" in proc.stdout


def test_new_from_copies_the_source_scenarios(run_cli, tmp_path):
    assert run_cli("new", "my-outage", "--from", "service-outage").code == 0
    copied = tmp_path / "runbooks" / "scenarios" / "my-outage.yaml"
    assert copied.is_file() and "outage-demo-restart" in copied.read_text()
