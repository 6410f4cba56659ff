"""A saved plan binds everything that decides what runs (safety issue 12).

`runbook plan -o plan.json` then `runbook run --plan plan.json` must refuse (exit 2) with a
diff naming the step and field whenever a gate, a branch, a retry, a time limit, a verify
step, a target's hosts, a param (secret or not) or the runbook file itself changed, and run
when nothing did. The property tests build small random runbooks and check the same in
process: one changed control field always changes the digest and is named in the diff.
"""

from __future__ import annotations

import copy
import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runbook.plan.planner import Plan, build_plan
from runbook.plan.saved import differences
from runbook.session import Session

SECRET = "hunter2-Secret"

BASE: dict[str, Any] = {
    "apiVersion": "runbook/v1",
    "kind": "Runbook",
    "metadata": {"name": "flushy", "title": "Flush the cache", "severity": "P2"},
    "deadline": "10m",
    "params": {
        "svc": {"type": "string", "default": "api", "pattern": "^[a-z]+$"},
        "token": {"type": "string", "secret": True, "required": True},
    },
    "targets": {
        "here": {"transport": "local"},
        "web": {"transport": "ssh", "hosts": ["{{ inventory.web }}"], "user": "deploy"},
        "db": {"transport": "ssh", "hosts": ["127.0.0.2"], "user": "deploy"},
    },
    "steps": [
        {
            "id": "probe",
            "phase": "detect",
            "check": {"shell": {"argv": ["true"]}},
            "retries": {"attempts": 2, "delay": 0, "on": ["failed"]},
            "timeout": 5,
            "deadline": 30,
        },
        {
            "id": "flush",
            "phase": "mitigate",
            "when": "steps.probe.passed",
            "action": {"shell": {"argv": ["echo", "flush", "{{ params.svc }}"]}},
            "confirm": {"prompt": "Flush {{ params.svc }}?", "require": "prod-db"},
            "on_failure": "continue",
            "verify": [{"check": {"shell": {"argv": ["true"]}}, "timeout": 3}],
        },
    ],
}
INVENTORY = "[web]\nweb01 ansible_host=127.0.0.1\n"
RUN_ARGS = ("--yes", "--answer", "flush=prod-db")


def _step(doc: dict[str, Any], step_id: str) -> dict[str, Any]:
    return next(s for s in doc["steps"] if s["id"] == step_id)


def _reorder(doc: dict[str, Any]) -> None:
    doc["steps"].reverse()
    del _step(doc, "flush")["when"]  # a `when` may not look at a later step


# (edit to the runbook, extra run args, extra env, inventory text, what the diff must say)
EDITS: dict[str, tuple[Any, tuple[str, ...], dict[str, str], str, list[str]]] = {
    "confirm removed": (
        lambda d: _step(d, "flush").update(confirm="Really?"),
        (),
        {},
        INVENTORY,
        [
            "step 'flush': confirm.require: 'prod-db' -> (none)",
            "step 'flush': confirm.prompt: 'Flush api?' -> 'Really?'",
        ],
    ),
    "require changed": (
        lambda d: _step(d, "flush")["confirm"].update(require="prod-cache"),
        (),
        {},
        INVENTORY,
        ["step 'flush': confirm.require: 'prod-db' -> 'prod-cache'"],
    ),
    "on_failure": (
        lambda d: _step(d, "flush").update(on_failure="abort"),
        (),
        {},
        INVENTORY,
        ["step 'flush': on_failure: 'continue' -> 'abort'"],
    ),
    "retries": (
        lambda d: _step(d, "probe")["retries"].update(attempts=3),
        (),
        {},
        INVENTORY,
        ["step 'probe': retries.attempts: 2 -> 3"],
    ),
    "retry outcomes": (
        lambda d: _step(d, "probe")["retries"].update(on=["failed", "error"]),
        (),
        {},
        INVENTORY,
        ["step 'probe': retries.on: ['failed'] -> ['failed', 'error']"],
    ),
    "timeout": (
        lambda d: _step(d, "probe").update(timeout=6),
        (),
        {},
        INVENTORY,
        ["step 'probe': timeout: 5 -> 6"],
    ),
    "step deadline": (
        lambda d: _step(d, "probe").update(deadline="1m"),
        (),
        {},
        INVENTORY,
        ["step 'probe': deadline: 30 -> 60"],
    ),
    "run deadline": (
        lambda d: d.update(deadline="5m"),
        (),
        {},
        INVENTORY,
        ["run deadline: 600 -> 300"],
    ),
    "when": (
        lambda d: _step(d, "flush").update(when="not steps.probe.passed"),
        (),
        {},
        INVENTORY,
        ["step 'flush': when: 'steps.probe.passed' -> 'not steps.probe.passed'"],
    ),
    "verify": (
        lambda d: _step(d, "flush")["verify"][0].update(timeout=4),
        (),
        {},
        INVENTORY,
        ["step 'flush.verify-1': timeout: 3 -> 4"],
    ),
    "verify removed": (
        lambda d: _step(d, "flush").pop("verify"),
        (),
        {},
        INVENTORY,
        ["step 'flush.verify-1': removed"],
    ),
    "phase": (
        lambda d: _step(d, "flush").update(phase="resolve"),
        (),
        {},
        INVENTORY,
        ["step 'flush': phase: 'mitigate' -> 'resolve'"],
    ),
    "order": (
        _reorder,
        (),
        {},
        INVENTORY,
        ["step order: probe, flush -> flush, probe"],
    ),
    "target hosts in the runbook": (
        lambda d: d["targets"]["db"].update(hosts=["127.0.0.3"]),
        (),
        {},
        INVENTORY,
        ["target 'db': hosts: ['127.0.0.2'] -> ['127.0.0.3']"],
    ),
    "target hosts from the inventory": (
        None,
        (),
        {},
        INVENTORY + "web02 ansible_host=127.0.0.4\n",
        ["target 'web': resolved hosts:"],
    ),
    "host address in the inventory": (
        None,
        (),
        {},
        "[web]\nweb01 ansible_host=127.0.0.5\n",
        ["target 'web': resolved host_vars.web01.address: '127.0.0.1' -> '127.0.0.5'"],
    ),
    "param value": (
        None,
        ("-p", "svc=cache"),
        {},
        INVENTORY,
        ["param 'svc': 'api' -> 'cache'", "step 'flush': call.argv:"],
    ),
    "secret param value": (
        None,
        (),
        {"RUNBOOK_PARAM_TOKEN": "another-Secret"},
        INVENTORY,
        ["param 'token': secret value changed"],
    ),
    "runbook file": (
        "# reviewed by nobody\n",
        (),
        {},
        INVENTORY,
        ["runbook file: sha256 "],
    ),
}


def _write(path: Path, doc: dict[str, Any], tail: str = "") -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False) + tail, encoding="utf-8")
    return path


@pytest.fixture
def saved(run_cli, tmp_path):
    """The base runbook, an inventory and the plan saved for them."""
    rb = _write(tmp_path / "flushy.yaml", BASE)
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(INVENTORY, encoding="utf-8")
    plan = tmp_path / "plan.json"
    env = {"RUNBOOK_PARAM_TOKEN": SECRET}
    made = run_cli("plan", str(rb), "--inventory", str(inventory), "-o", str(plan), env=env)
    assert made.code == 0, made.text
    return rb, inventory, plan


def _run(run_cli, rb, inventory, plan, *args: str, env: dict[str, str] | None = None):
    return run_cli(
        "run",
        str(rb),
        "--inventory",
        str(inventory),
        "--plan",
        str(plan),
        *RUN_ARGS,
        *args,
        env={"RUNBOOK_PARAM_TOKEN": SECRET, **(env or {})},
    )


def test_an_unchanged_runbook_runs_with_its_plan(run_cli, saved):
    rb, inventory, plan = saved
    result = _run(run_cli, rb, inventory, plan)
    assert result.code == 0, result.text
    assert SECRET not in plan.read_text()


@pytest.mark.parametrize("name", list(EDITS))
def test_any_change_to_what_runs_refuses_the_plan_and_names_the_field(run_cli, saved, name):
    rb, inventory, plan = saved
    edit, args, env, inventory_text, expected = EDITS[name]
    if callable(edit):
        doc = copy.deepcopy(BASE)
        edit(doc)
        _write(rb, doc)
    elif isinstance(edit, str):
        _write(rb, BASE, edit)
    inventory.write_text(inventory_text, encoding="utf-8")
    result = _run(run_cli, rb, inventory, plan, *args, env=env)
    assert result.code == 2, result.text
    for text in expected:
        assert text in result.err, result.err
    assert not list((rb.parent / "logs").glob("*.jsonl")), "nothing may run on a mismatch"


def test_a_plan_made_without_the_inventory_does_not_match_a_run_with_one(run_cli, saved, tmp_path):
    rb, inventory, _ = saved
    plan = tmp_path / "no-inventory.json"
    env = {"RUNBOOK_PARAM_TOKEN": SECRET}
    assert run_cli("plan", str(rb), "-o", str(plan), env=env).code == 0
    result = _run(run_cli, rb, inventory, plan)
    assert result.code == 2
    assert "target 'web': resolved hosts:" in result.err


def test_the_plan_file_holds_no_secret_but_binds_it(saved):
    _, _, plan = saved
    text = plan.read_text()
    assert SECRET not in text
    doc = json.loads(text)
    assert doc["params"]["token"] == "***"
    assert doc["secrets"]["salt"] and doc["secrets"]["fingerprints"]["params.token"]


def test_a_plan_from_an_older_runbook_is_a_clear_error(run_cli, saved):
    rb, inventory, plan = saved
    doc = json.loads(plan.read_text())
    doc["format"] = 1
    plan.write_text(json.dumps(doc), encoding="utf-8")
    result = _run(run_cli, rb, inventory, plan)
    assert result.code == 2
    assert "plan was saved by an older runbook; re-run runbook plan" in result.err


def test_a_plan_edited_after_it_was_saved_is_refused(run_cli, saved):
    rb, inventory, plan = saved
    doc = json.loads(plan.read_text())
    _step_entry = next(s for s in doc["steps"] if s["step"] == "flush")
    _step_entry["confirm_require"] = None
    plan.write_text(json.dumps(doc), encoding="utf-8")
    result = _run(run_cli, rb, inventory, plan)
    assert result.code == 2
    assert "changed after it was saved" in result.err


# -- property tests, in process ------------------------------------------------------------
@pytest.fixture(scope="module")
def session() -> Session:
    return Session()


SALT = bytes(range(16))
IDS = ("a", "b", "c")
STEP_FIELDS = (
    "confirm",
    "require",
    "when",
    "on_failure",
    "attempts",
    "delay",
    "retry_on",
    "timeout",
    "deadline",
    "verify",
    "phase",
    "expect",
)
# (dict key path, diff label) per field
LABELS = {
    "confirm": "confirm.prompt",
    "require": "confirm.require",
    "when": "when",
    "on_failure": "on_failure",
    "attempts": "retries.attempts",
    "delay": "retries.delay",
    "retry_on": "retries.on",
    "timeout": "timeout",
    "deadline": "deadline",
    "phase": "phase",
    "expect": "expect",
}

prompts = st.sampled_from(["Go?", "Restart {{ params.svc }}?", "Really?"])
words = st.sampled_from(["prod", "db", "cache"])
conditions = st.sampled_from(["true", "params.svc == 'api'", "params.svc != 'db'"])
outcome_sets = st.lists(st.sampled_from(["failed", "error", "timeout"]), min_size=1, unique=True)


@st.composite
def step_dicts(draw: st.DrawFn, step_id: str) -> dict[str, Any]:
    action = draw(st.booleans())
    step: dict[str, Any] = {
        "id": step_id,
        "phase": draw(st.sampled_from(["detect", "triage", "mitigate"])),
        ("action" if action else "check"): {
            "shell": {"argv": ["echo", step_id, "{{ params.svc }}"]}
        },
    }
    if action and draw(st.booleans()):
        require = draw(st.none() | words)
        prompt = draw(prompts)
        step["confirm"] = {"prompt": prompt, "require": require} if require else prompt
    if draw(st.booleans()):
        step["when"] = draw(conditions)
    if draw(st.booleans()):
        step["on_failure"] = draw(st.sampled_from(["abort", "continue"]))
    if draw(st.booleans()):
        step["retries"] = {
            "attempts": draw(st.integers(1, 4)),
            "delay": draw(st.integers(0, 3)),
            "on": draw(outcome_sets),
        }
    if draw(st.booleans()):
        step["timeout"] = draw(st.integers(1, 9))
    if draw(st.booleans()):
        step["deadline"] = draw(st.integers(10, 90))
    if draw(st.booleans()):
        step["expect"] = ["exit_code == 0"]
    if action and draw(st.booleans()):
        step["verify"] = [{"check": {"shell": {"argv": ["true"]}}, "timeout": 2}]
    return step


@st.composite
def runbook_dicts(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(1, 3))
    doc: dict[str, Any] = {
        "apiVersion": "runbook/v1",
        "kind": "Runbook",
        "metadata": {"name": "prop", "title": "Property", "severity": "P3"},
        "params": {"svc": {"type": "string", "default": draw(words)}},
        "steps": [draw(step_dicts(step_id)) for step_id in IDS[:count]],
    }
    if draw(st.booleans()):
        doc["deadline"] = draw(st.integers(60, 600))
    return doc


def _differ(old: Any, new: st.SearchStrategy[Any], draw: st.DrawFn) -> Any:
    return draw(new.filter(lambda value: value != old))


def _mutate(doc: dict[str, Any], draw: st.DrawFn) -> str:
    """Change one gate or control field in place; return what the diff must name."""
    steps = doc["steps"]
    step = draw(st.sampled_from(steps))
    field = draw(st.sampled_from(STEP_FIELDS + ("run deadline", "default", "order")))
    sid = step["id"]
    if field == "run deadline":
        doc["deadline"] = _differ(doc.get("deadline"), st.integers(60, 600), draw)
        return "run deadline:"
    if field == "default":
        svc = doc["params"]["svc"]
        svc["default"] = _differ(svc["default"], words, draw)
        return "param 'svc':"
    if field == "order":
        if len(steps) > 1:
            steps.reverse()
            return "step order:"
        field = "expect"
    if field in ("confirm", "require", "verify") and "action" not in step:
        step["action"] = step.pop("check")  # only actions are gated and verified
        return f"step '{sid}': kind:"
    if field in ("confirm", "require"):
        old = step.get("confirm")
        old_prompt = old["prompt"] if isinstance(old, dict) else old
        old_require = old.get("require") if isinstance(old, dict) else None
        if field == "confirm":
            prompt = _differ(old_prompt or "Run action 'x'?", prompts, draw)
            step["confirm"] = {"prompt": prompt, "require": old_require} if old_require else prompt
        else:
            require = _differ(old_require, st.none() | words, draw)
            prompt = old_prompt or "Go?"
            step["confirm"] = {"prompt": prompt, "require": require} if require else prompt
            return f"step '{sid}': {LABELS[field]}:" if old else f"step '{sid}': confirm."
        return f"step '{sid}': {LABELS[field]}:"
    if field == "when":
        step["when"] = _differ(step.get("when"), conditions, draw)
    elif field == "on_failure":
        step["on_failure"] = _differ(
            step.get("on_failure", "abort"), st.sampled_from(["abort", "continue"]), draw
        )
    elif field in ("attempts", "delay", "retry_on"):
        retries = step.setdefault("retries", {"attempts": 1})
        if field == "attempts":
            retries["attempts"] = _differ(retries["attempts"], st.integers(1, 4), draw)
        elif field == "delay":
            retries["delay"] = _differ(retries.get("delay", 0), st.integers(0, 3), draw)
        else:
            full = ["failed", "error", "timeout"]
            retries["on"] = _differ(retries.get("on", full), outcome_sets, draw)
    elif field in ("timeout", "deadline"):
        low = 1 if field == "timeout" else 10
        step[field] = _differ(step.get(field), st.integers(low, low + 80), draw)
    elif field == "verify":
        if "verify" in step:
            step["verify"][0]["timeout"] = 7
            return f"step '{sid}.verify-1': timeout:"
        step["verify"] = [{"check": {"shell": {"argv": ["false"]}}}]
        return f"step '{sid}.verify-1': added"
    elif field == "phase":
        step["phase"] = _differ(step["phase"], st.sampled_from(["triage", "resolve"]), draw)
    else:  # expect
        step["expect"] = _differ(
            step.get("expect"), st.sampled_from([["exit_code == 1"], ["stdout != ''"]]), draw
        )
    return f"step '{sid}': {LABELS.get(field, field)}:"


def _build(session: Session, path: Path, given: dict[str, str]) -> Plan:
    rb = session.load_file(path)
    params = session.params(rb, given, environ={})
    masked = {k: "***" if rb.params[k].secret and v is not None else v for k, v in params.items()}
    return build_plan(rb, params, session.executors, masked, salt=SALT)


def _plan(doc: dict[str, Any], session: Session, directory: Path) -> dict[str, Any]:
    path = directory / "prop.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    plan = _build(session, path, {})
    saved: dict[str, Any] = json.loads(plan.to_json())
    assert saved["digest"] == plan.digest
    return saved


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=runbook_dicts(), data=st.data())
def test_changing_any_control_field_changes_the_digest_and_names_it(base, data, session):
    with tempfile.TemporaryDirectory() as tmp:
        before = _plan(base, session, Path(tmp))
        assert _plan(copy.deepcopy(base), session, Path(tmp))["digest"] == before["digest"]
        changed = copy.deepcopy(base)
        expected = _mutate(changed, data.draw)
        after = _plan(changed, session, Path(tmp))
    assert after["digest"] != before["digest"]
    named = [line for line in differences(before, after) if not line.startswith("runbook file")]
    assert any(expected in line for line in named), (expected, named)


@settings(max_examples=15, deadline=None)
@given(tail=st.text(max_size=12), other=st.text(min_size=1, max_size=12))
def test_a_secret_changes_the_digest_and_never_appears_in_the_plan(tail, other, session):
    secret = "S3cr3t-" + tail
    doc = {
        "apiVersion": "runbook/v1",
        "kind": "Runbook",
        "metadata": {"name": "prop", "title": "Property", "severity": "P3"},
        "params": {"token": {"type": "string", "secret": True, "required": False}},
        "steps": [{"id": "a", "phase": "detect", "check": {"shell": {"argv": ["true"]}}}],
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prop.yaml"
        path.write_text(yaml.safe_dump(doc), encoding="utf-8")
        first, again, changed = (
            _build(session, path, {"token": value}) for value in (secret, secret, secret + other)
        )
    assert first.digest == again.digest
    assert first.digest != changed.digest
    assert "S3cr3t-" not in first.to_json()


@pytest.mark.parametrize(
    "content",
    [{"digest": "0" * 64}, {"format": 2}, ["digest", "format"], "a plan?"],
    ids=["no-format", "no-digest", "a-list", "a-string"],
)
def test_a_file_that_is_not_a_plan_is_refused_cleanly(run_cli, saved, content):
    rb, inventory, plan = saved
    plan.write_text(json.dumps(content), encoding="utf-8")
    result = _run(run_cli, rb, inventory, plan)
    assert result.code == 2, result.text
    assert f"{plan}: not a runbook plan file" in result.err
    assert "Traceback" not in result.text


def test_an_edit_anywhere_in_the_runbook_file_is_named_by_both_hashes(run_cli, saved):
    """Even a comment: the plan binds the file the operator reviewed, byte for byte."""
    rb, inventory, plan = saved
    old = json.loads(plan.read_text())["runbook_sha256"]
    assert old == hashlib.sha256(rb.read_bytes()).hexdigest()
    rb.write_text(rb.read_text() + "# reviewed by nobody\n", encoding="utf-8")
    new = hashlib.sha256(rb.read_bytes()).hexdigest()
    result = _run(run_cli, rb, inventory, plan)
    assert result.code == 2
    assert f"runbook file: sha256 {old[:12]} -> {new[:12]}" in result.err


def test_the_plan_shows_what_the_operator_will_have_to_type(run_cli, saved):
    """A reviewer of the plan sees the typed confirmation, not only the prompt."""
    rb, inventory, _ = saved
    shown = run_cli(
        "plan", str(rb), "--inventory", str(inventory), env={"RUNBOOK_PARAM_TOKEN": SECRET}
    )
    assert shown.code == 0, shown.text
    line = next(ln for ln in shown.out.splitlines() if ln.strip().startswith("flush:"))
    assert "[confirm: Flush " in line and "type 'prod-db'" in line
