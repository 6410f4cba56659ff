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
