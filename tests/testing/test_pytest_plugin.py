"""`pytest runbooks/` and the `runbook_scenario` fixture, driven through pytest itself.

The collection tests run a real pytest session (pytester) over a temporary
directory of runbooks, so what is checked is what a CI job prints. The fixture
tests run the shipped service-outage runbook against scripted executor results.
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from runbook.log.journal import verify_log
from runbook.testing.scenario import Scenario, ScenarioError

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]

RUNBOOK = """\
apiVersion: runbook/v1
kind: Runbook
metadata: {name: tiny, title: Tiny, severity: P2}
params:
  url: {type: string, required: true, example: "http://127.0.0.1:9/health"}
  unit: {type: string, default: web}
steps:
  - id: health
    phase: detect
    check: {http: {url: "{{ params.url }}"}}
    on_failure: continue
  - id: restart
    phase: mitigate
    when: "not steps.health.passed"
    action: {shell: {argv: [systemctl, restart, "{{ params.unit }}"]}}
"""

SCENARIOS = """\
scenarios:
  - name: healthy
    expect: {status: passed, ran: [health], skipped: [restart]}
  - name: down
    params: {unit: api}
    yes: true
    stubs: {health: {status: 503}}
    expect:
      ran: [health, restart]
      calls: {restart: {argv: [systemctl, restart, api]}}
"""


def write(base: Path, relative: str, text: str) -> Path:
    path = base / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def project(pytester: pytest.Pytester) -> Path:
    """A directory holding one valid runbook and its scenarios, as a repository would."""
    write(pytester.path, "runbooks/tiny.yaml", RUNBOOK)
    write(pytester.path, "runbooks/scenarios/tiny.yaml", SCENARIOS)
    return pytester.path


def run_pytest(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """A separate pytest process, as CI runs it (in-process runs would re-import our modules)."""
    return pytester.runpytest_subprocess(*(args or ("runbooks",)), "-p", "no:cacheprovider")


# -- collection -----------------------------------------------------------------------------
def test_valid_runbook_is_validated_planned_and_its_scenarios_run(
    pytester: pytest.Pytester, project: Path
) -> None:
    result = run_pytest(pytester, "runbooks", "-v")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "*runbooks/tiny.yaml::validate PASSED*",
            "*runbooks/tiny.yaml::plan PASSED*",
            "*runbooks/tiny.yaml::scenario?healthy? PASSED*",
            "*runbooks/tiny.yaml::scenario?down? PASSED*",
        ]
    )


def test_invalid_runbook_fails_with_file_line_and_message_not_traceback(
    pytester: pytest.Pytester, project: Path
) -> None:
    write(project, "runbooks/broken.yaml", RUNBOOK.replace("check: {http", "check: {htp"))
    result = run_pytest(pytester)
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(["runbooks/broken.yaml:10:*unknown executor 'htp'*did you mean*"])
    assert "Traceback" not in result.stdout.str()
    assert "def runtest" not in result.stdout.str()


def test_required_param_without_example_asks_for_one_at_its_line(
    pytester: pytest.Pytester, project: Path
) -> None:
    text = RUNBOOK.replace(', example: "http://127.0.0.1:9/health"', "")
    write(project, "runbooks/tiny.yaml", text)
    result = run_pytest(pytester)
    result.stdout.fnmatch_lines(
        ["runbooks/tiny.yaml:5:3: required param 'url' has no `example:`; add one*"]
    )
    assert "Traceback" not in result.stdout.str()


def test_failed_scenario_shows_the_expectation_and_the_path_taken(
    pytester: pytest.Pytester, project: Path
) -> None:
    write(
        project, "runbooks/scenarios/tiny.yaml", SCENARIOS.replace("restart, api]", "restart, db]")
    )
    result = run_pytest(pytester)
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "runbooks/scenarios/tiny.yaml:10:*: scenario 'down': expected step 'restart' to "
            "call with argv = ?'systemctl', 'restart', 'db'?, got ?'systemctl', 'restart', 'api'?",
            "runbooks/scenarios/tiny.yaml:4: scenario 'down': run passed, exit 0*"
            "ran: health -> restart*",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_scenario_naming_an_unknown_step_is_a_located_error(
    pytester: pytest.Pytester, project: Path
) -> None:
    write(
        project,
        "runbooks/scenarios/tiny.yaml",
        SCENARIOS.replace("skipped: [restart]", "skipped: [restrat]"),
    )
    result = run_pytest(pytester)
    result.stdout.fnmatch_lines(
        [
            "runbooks/scenarios/tiny.yaml:3:*'restrat' is not a step of the runbook; "
            "did you mean 'restart'?"
        ]
    )
    result.assert_outcomes(passed=2, failed=1)


def test_scenario_file_without_its_runbook_fails(pytester: pytest.Pytester, project: Path) -> None:
    write(project, "runbooks/scenarios/ghost.yaml", SCENARIOS)
    result = run_pytest(pytester)
    result.stdout.fnmatch_lines(["runbooks/scenarios/ghost.yaml:1:1: no runbook 'ghost'*"])


def test_yaml_outside_runbook_directories_is_not_collected(
    pytester: pytest.Pytester, project: Path
) -> None:
    write(project, "tests/data/not-a-runbook.yaml", "just: data\n")
    result = run_pytest(pytester, ".")
    result.assert_outcomes(passed=4)


def test_shipped_library_passes(pytester: pytest.Pytester) -> None:
    shutil.copytree(ROOT / "runbooks", pytester.path / "runbooks")
    result = run_pytest(pytester)
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 3 and "failed" not in outcomes, result.stdout.str()


# -- the runbook_scenario fixture -----------------------------------------------------------
ScenarioFactory = Callable[[str | Path], Scenario]
STABLE = ["initial-alert", "status-update", "resolution-notice"]


def test_healthy_service_is_not_restarted_and_nobody_is_notified(
    runbook_scenario: ScenarioFactory,
) -> None:
    scenario = runbook_scenario(ROOT / "runbooks/service-outage.yaml")
    scenario.stub("health", status=200, json={"status": "ok"})
    result = scenario.run(params={"platform": "demo"})
    assert result.exit_code == 0 and result.status == "passed"
    assert result.statuses["health"] == "passed"
    for step in ["restart", "restart-demo", *STABLE]:
        assert step not in result.ran
    assert verify_log(result.log_path).ok


def test_outage_alerts_restarts_verifies_and_resolves(runbook_scenario: ScenarioFactory) -> None:
    scenario = runbook_scenario(ROOT / "runbooks/service-outage.yaml")
    scenario.stub("health", status=503, json={"status": "error"})
    result = scenario.run(params={"platform": "demo", "service": "checkout"}, yes=True)
    assert result.status == "passed", result.describe()
    ran = result.ran
    assert ran.index("initial-alert") < ran.index("restart-demo") < ran.index("resolution-notice")
    assert result.call("restart-demo")["argv"] == ["runbook-demo", "restart", "checkout"]
    assert result.statuses["restart-demo.verify-1"] == "passed"


def test_unstubbed_steps_pass_with_results_built_from_their_expectations(
    runbook_scenario: ScenarioFactory,
) -> None:
    result = runbook_scenario(ROOT / "runbooks/service-outage.yaml").run({"platform": "demo"})
    # health expects status 200, json.status 'ok' and elapsed < 2.0: all satisfied by default
    assert result.statuses["health"] == "passed"
    assert result.statuses["demo-status"] == "passed"  # shell default: exit_code == 0


def test_a_stub_per_attempt_lets_a_retry_succeed(runbook_scenario: ScenarioFactory) -> None:
    scenario = runbook_scenario(ROOT / "runbooks/service-outage.yaml")
    scenario.stub("health", [{"status": 503}, {"status": 200, "json": {"status": "ok"}}])
    result = scenario.run({"platform": "demo"})
    assert result.attempts("health") == 2
    assert "initial-alert" in result.skipped


def test_an_error_stub_is_an_attempt_that_could_not_be_done(
    runbook_scenario: ScenarioFactory,
) -> None:
    scenario = runbook_scenario(ROOT / "runbooks/service-outage.yaml")
    scenario.stub("health", error="connection refused")
    result = scenario.run({"platform": "demo"}, yes=True)
    assert result.statuses["health"] == "error"
    assert "initial-alert" in result.ran


def test_unattended_restart_without_yes_is_declined(runbook_scenario: ScenarioFactory) -> None:
    scenario = runbook_scenario(ROOT / "runbooks/service-outage.yaml")
    scenario.stub("health", status=503)
    result = scenario.run({"platform": "demo"})
    assert (result.exit_code, result.status) == (3, "declined")
    assert result.statuses["restart-demo"] == "declined"


def test_stubbing_an_unknown_step_names_the_closest(runbook_scenario: ScenarioFactory) -> None:
    scenario = runbook_scenario(ROOT / "runbooks/service-outage.yaml")
    with pytest.raises(ScenarioError, match="did you mean 'health'"):
        scenario.stub("helth", status=200)


def test_bad_scenario_params_are_reported_like_the_cli(runbook_scenario: ScenarioFactory) -> None:
    scenario = runbook_scenario(ROOT / "runbooks/service-outage.yaml")
    with pytest.raises(ScenarioError, match="platform"):
        scenario.run({"platform": "windows"})
