"""validate --strict: warnings for valid but unwise runbooks, each with file:line."""

from __future__ import annotations

CLEAN = """\
apiVersion: runbook/v1
kind: Runbook
metadata: {name: clean, title: Clean, severity: P2}
params:
  svc: {type: string, default: api, pattern: "^[a-z]+$"}
steps:
  - id: health
    phase: detect
    check: {http: {url: "http://127.0.0.1:9/health", timeout: 2}}
    expect: ["status == 200"]
  - id: restart
    phase: mitigate
    action: {shell: {argv: [systemctl, restart, "{{ params.svc }}"]}}
    timeout: 30s
    confirm: "Restart {{ params.svc }}?"
    verify: [{check: {http: {url: "http://127.0.0.1:9/health"}}, expect: ["status == 200"]}]
"""

UNWISE = """\
apiVersion: runbook/v1
kind: Runbook
metadata: {name: unwise, title: Unwise, severity: P2}
params:
  svc: {type: string, default: api, pattern: "^[a-z]+$"}
steps:
  - id: look
    phase: detect
    check: {shell: {argv: [systemctl, status, api]}}
  - id: restart
    phase: mitigate
    action: {shell: {command: "systemctl restart '{{ params.svc }}'"}}
  - id: tell
    phase: mitigate
    action: {notify: {message: "INCIDENT: [Title] is down, commander <name>"}}
    title: Tell #incidents about it
"""


def test_clean_runbook_passes_strict(run_cli, write_runbook):
    result = run_cli("validate", "--strict", str(write_runbook(CLEAN)))
    assert result.code == 0, result.err


def test_unwise_runbook_gets_each_warning_with_its_line(run_cli, write_runbook):
    path = write_runbook(UNWISE, "unwise.yaml")
    plain = run_cli("validate", str(path))
    assert plain.code == 0
    strict = run_cli("validate", "--strict", str(path))
    assert strict.code == 2
    err = strict.err
    assert "unwise.yaml:7: warning[expect]: steps.look" in err
    assert "unwise.yaml:7: warning[timeout]" in err
    assert "unwise.yaml:10: warning[confirm]" in err
    assert "unwise.yaml:10: warning[verify]" in err
    assert "warning[quoting]" in err and "warning[shell]" in err
    assert "'[Title]' is never filled in" in err and "'<name>'" in err
    assert "unwise.yaml:16: warning[comment]: the text of `title:` ends at ' #'" in err


RISKY_WHEN = """\
apiVersion: runbook/v1
kind: Runbook
metadata: {name: risky, title: Risky, severity: P2}
steps:
  - id: health
    phase: detect
    check: {http: {url: "http://127.0.0.1:9/health", timeout: 2}}
    expect: ["status == 200"]
    on_failure: continue
  - id: decide
    phase: mitigate
    when: "not steps.health.passed"
    check: {manual: {prompt: "Roll back?", choices: [roll back, keep]}}
  - id: rollback
    phase: mitigate
    when: "steps.decide.answer == 'roll back'"
    action: {shell: {argv: ["true"]}}
    timeout: 30s
    confirm: "Roll back?"
    verify: [{check: {http: {url: "http://127.0.0.1:9/health"}}, expect: ["status == 200"]}]
  - id: guarded
    phase: mitigate
    when: "steps.decide.passed and steps.decide.answer == 'keep'"
    check: {manual: {prompt: "Why keep it?"}}
  - id: recovered
    phase: resolve
    check: {http: {url: "http://127.0.0.1:9/health", timeout: 2}}
    expect: ["status == 200"]
  - id: page
    phase: post-incident
    always: true
    when: "not steps.recovered.passed"
    action: {notify: {message: "still down"}}
  - id: page-guarded
    phase: post-incident
    always: true
    when: "run.status != 'passed' or not steps.recovered.passed"
    action: {notify: {message: "still down, or the run did not finish"}}
"""


def test_a_when_reading_what_a_skipped_step_never_produced_is_a_warning(run_cli, write_runbook):
    """docs/migration.md's manual-decision pattern: at run time the answer may be undefined."""
    strict = run_cli("validate", "--strict", str(write_runbook(RISKY_WHEN, "risky.yaml")))
    assert strict.code == 2
    warnings = [line for line in strict.err.splitlines() if "warning[when]" in line]
    assert len(warnings) == 2, strict.err
    rollback, page = warnings
    assert "risky.yaml:14: warning[when]: steps.rollback: `when` reads" in rollback
    assert "`steps.decide.answer`, which is not there when step 'decide' was skipped" in rollback
    assert "guard it: `steps.decide.passed and ...`" in rollback
    assert "risky.yaml:29: warning[when]: steps.page:" in page
    assert "the run stopped before step 'recovered' ('decide' aborts on failure)" in page
    assert "start the condition with `run.status != 'passed' or`" in page
    assert "steps.guarded" not in strict.err  # guarded by `steps.decide.passed and`
    assert "steps.page-guarded" not in strict.err  # only read when the run went to its end


def test_a_when_reading_a_value_registered_by_a_step_that_may_error_is_a_warning(
    run_cli, write_runbook
):
    text = CLEAN.replace(
        '    expect: ["status == 200"]\n',
        '    expect: ["status == 200"]\n    register: {code: status}\n    on_failure: continue\n',
        1,
    ).replace("    phase: mitigate\n", '    phase: mitigate\n    when: "vars.code == 503"\n', 1)
    strict = run_cli("validate", "--strict", str(write_runbook(text, "vars.yaml")))
    assert strict.code == 2
    assert (
        "warning[when]: steps.restart: `when` reads `vars.code`, which is not there when "
        "step 'health' (which registers it) could not run (status error)"
    ) in strict.err


def test_resolve_checks_that_all_have_a_when_are_a_warning(run_cli, write_runbook):
    text = RISKY_WHEN.replace(
        "  - id: recovered\n    phase: resolve\n",
        '  - id: recovered\n    phase: resolve\n    when: "not steps.health.passed"\n',
    )
    strict = run_cli("validate", "--strict", str(write_runbook(text, "resolve.yaml")))
    assert (
        "warning[resolve]: steps.recovered: every resolve-phase check has a `when:`" in strict.err
    )
