"""`runbook new`: start a runbook that already validates and already has a test.

The scaffold is a working runbook (health check, triage, a gated and verified
restart, the communication templates) rather than an empty form, because the
fastest way to write a runbook is to edit one that runs. `--from` copies any
runbook the resolver can find (e.g. a shipped one) under the new name.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from runbook.errors import InvalidInput

NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")

BASIC = """\
# yaml-language-server: $schema=../runbook.schema.json
# Editor help: run `runbook schema > runbook.schema.json` in the directory above this one.
apiVersion: runbook/v1
kind: Runbook
metadata:
  name: {name}
  title: {title}
  severity: {severity}
  owners: [oncall@example.com]
  tags: []
  description: |
    What this runbook is for, and the symptom that should make a responder run it.

params:
  service:
    type: string
    default: api
    pattern: "^[a-z0-9][a-z0-9@._-]*$"
    description: The affected service.
  health_url:
    type: string
    required: true
    pattern: "^https?://[^\\\\s]+$"
    example: "http://127.0.0.1:8000/health"
    description: Health endpoint that answers 200 when all is well.

steps:
  - id: health
    title: Health endpoint answers 200
    phase: detect
    check:
      http: {{url: "{{{{ params.health_url }}}}", timeout: 5}}
    expect: ["status == 200"]
    retries: {{attempts: 2, delay: 2s}}
    on_failure: continue

  - id: status
    title: Service status
    phase: triage
    when: "not steps.health.passed"
    check:
      shell: {{argv: [systemctl, status, "{{{{ params.service }}}}", --no-pager]}}
    expect: ["exit_code == 0"]
    timeout: 10s
    on_failure: continue

  - id: restart
    title: Restart the service
    phase: mitigate
    when: "not steps.health.passed"
    action:
      shell: {{argv: [systemctl, restart, "{{{{ params.service }}}}"]}}
    timeout: 2m
    confirm: "Restart {{{{ params.service }}}}?"
    verify:
      - check: {{http: {{url: "{{{{ params.health_url }}}}", timeout: 5}}}}
        expect: ["status == 200"]
        retries: {{attempts: 10, delay: 2s}}

  - id: resolved
    title: Resolution notice
    phase: resolve
    when: "not steps.health.passed"
    action:
      notify:
        message: |
          RESOLVED: {{{{ params.service }}}} ({severity})
          Resolution: restarted, health check passing
"""


BASIC_SCENARIOS = """\
# Scenario tests for runbooks/{name}.yaml, run by `pytest runbooks/` (see docs/testing.md).
# Each scenario scripts the executors' results per step id and asserts the branch taken.
scenarios:
  - name: healthy
    description: The health check passes, so nothing is restarted.
    stubs:
      health: {{status: 200}}
    expect:
      status: passed
      exit_code: 0
      ran: [health]
      not_ran: [status, restart, resolved]

  - name: down-then-restarted
    description: The health check fails; the service is restarted, verified, and resolved.
    yes: true
    stubs:
      health: {{status: 503}}
    expect:
      status: passed
      exit_code: 0
      ran: [health, status, restart, restart.verify-1, resolved]
      steps: {{health: failed, restart: passed}}
      calls:
        restart: {{argv: [systemctl, restart, api]}}

  - name: restart-declined
    description: Without --yes and without a terminal, the restart is refused (exit 3).
    stubs:
      health: {{status: 503}}
    expect:
      status: declined
      exit_code: 3
      not_ran: [resolved]
"""


def scenario_path(runbook_path: Path) -> Path:
    """Where `pytest runbooks/` looks for a runbook's scenarios."""
    return runbook_path.parent / "scenarios" / runbook_path.name


def render_scenarios_from(source: Path, name: str) -> str | None:
    """The source runbook's scenarios, if it has any (they name steps, not the runbook)."""
    path = scenario_path(source)
    if not path.is_file():
        return None
    return path.read_text(encoding="utf-8").replace(source.stem, name)


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise InvalidInput(
            f"invalid runbook name {name!r}: use lowercase letters, digits and '-', "
            "starting with a letter or digit (e.g. 'api-latency')"
        )
    return name


def render_basic(name: str, severity: str) -> str:
    title = name.replace("-", " ").capitalize()
    return BASIC.format(name=name, title=title, severity=severity)


def render_from(source: Path, name: str, severity: str | None) -> str:
    """Copy a runbook under a new name (and severity, when given)."""
    text = source.read_text(encoding="utf-8")
    text, count = re.subn(r"(?m)^(\s+name:\s*)\S+", rf"\g<1>{name}", text, count=1)
    if count == 0:
        raise InvalidInput(f"{source}: no metadata.name to replace")
    if severity:
        text = re.sub(r"(?m)^(\s+severity:\s*)P[0-3]", rf"\g<1>{severity}", text, count=1)
    return text


def write_new(path: Path, text: str, force: bool) -> None:
    """Write atomically; refuse to overwrite unless forced."""
    if path.exists() and not force:
        raise InvalidInput(f"{path} already exists; use --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
