"""The systemd executor's verdicts against real systemctl, the peer itself, as the oracle.

A real `systemd --user` manager (tests/support/real_systemd.py) holds units in
every state a check can meet: active, reloading, inactive, failed, activating,
deactivating (maintenance and refreshing cannot be produced on demand; they are
in the table in docs/peers.md). For each unit, every pair and all at once,
real `systemctl --user is-active`, `status` and `is-enabled` answer first; the
executor, pointed at the same manager, must agree:

- per unit, `units.U.up` is `systemctl is-active U` exiting 0, and `active_state`
  is what it printed;
- `is_active` with `require: any` is `systemctl is-active U1 U2...` exiting 0
  (systemctl's rule: at least one active); with `require: all` (the default)
  it is every unit's own `is-active` exiting 0;
- `status` (default `all`) is `systemctl status U1 U2...` exiting 0;
- `is_enabled` likewise against `systemctl is-enabled`.

Where we deliberately differ from systemctl (a unit that does not exist is an
error, not "inactive"; the default for several units is `all`), the test says so.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from runbook_plugins import systemd
from support.real_systemd import UserManager, unavailable, user_manager

from runbook.contract import ExecContext, StepResult

pytestmark = pytest.mark.slow

FOREVER = "TimeoutStartSec=infinity\nTimeoutStopSec=infinity\n"
SERVICE = "[Service]\nExecStart=/bin/sleep 600\n" + FOREVER
INSTALLABLE = SERVICE + "[Install]\nWantedBy=default.target\n"
# unit -> (unit file, how it is brought to its state, the ActiveState it ends in)
ACTIVITY: Mapping[str, tuple[str, list[list[str]], str]] = {
    "up": (SERVICE, [["start", "up"]], "active"),
    "reloading": (
        SERVICE + "ExecReload=/bin/sleep 600\n",
        [["start", "reloading"], ["reload", "--no-block", "reloading"]],
        "reloading",
    ),
    "down": (SERVICE, [], "inactive"),
    "crashed": ("[Service]\nExecStart=/bin/false\n", [["start", "crashed"]], "failed"),
    "starting": (
        SERVICE + "ExecStartPre=/bin/sleep 600\n",
        [["start", "--no-block", "starting"]],
        "activating",
    ),
    "stopping": (
        SERVICE + "ExecStop=/bin/sleep 600\n",
        [["start", "stopping"], ["stop", "--no-block", "stopping"]],
        "deactivating",
    ),
}
ENABLEMENT = ("on", "off", "fixed", "masked", "linked")


@pytest.fixture(scope="module")
def manager() -> Iterator[UserManager]:
    reason = unavailable()
    if reason:
        pytest.skip(f"real systemd manager: {reason}")
    with user_manager() as real:
        for name, (text, _, _) in ACTIVITY.items():
            real.write_unit(f"{name}.service", text)
        real.write_unit("on.service", INSTALLABLE)
        real.write_unit("off.service", INSTALLABLE)
        real.write_unit("fixed.service", SERVICE)  # no [Install]: static
        lower = real.root / "home" / "data" / "systemd" / "user"  # mask needs it elsewhere
        lower.mkdir(parents=True)
        (lower / "masked.service").write_text(INSTALLABLE)
        elsewhere = real.root / "elsewhere"
        elsewhere.mkdir()
        (elsewhere / "linked.service").write_text(INSTALLABLE)
        real.systemctl("daemon-reload", check=True)
        real.systemctl("enable", "on", check=True)
        real.systemctl("mask", "masked", check=True)
        real.systemctl("link", str(elsewhere / "linked.service"), check=True)
        for name, (_, commands, state) in ACTIVITY.items():
            for command in commands:
                real.systemctl(*command)
            real.wait_for(name, state)
        yield real


def ours(manager: UserManager, **config: Any) -> StepResult:
    result = systemd.run(
        {"systemctl": str(manager.shim), **config}, ExecContext("differential", timeout=30)
    )
    assert result.ok, result.error
    return result


def oracle(manager: UserManager, verb: str, units: tuple[str, ...]) -> tuple[int, list[str]]:
    """What real systemctl answers: its exit code and the lines it printed."""
    extra = ["--no-pager"] if verb == "status" else []
    proc = manager.systemctl(verb, *extra, *units)
    return proc.returncode, proc.stdout.splitlines()


def groups(names: Iterator[str] | tuple[str, ...]) -> list[tuple[str, ...]]:
    """Every pair, and all of them at once."""
    pool = tuple(names)
    return [*itertools.combinations(pool, 2), pool]


@pytest.mark.parametrize("unit", sorted(ACTIVITY))
def test_each_state_counts_as_up_exactly_when_systemctl_is_active_says_so(
    manager: UserManager, unit: str
) -> None:
    code, printed = oracle(manager, "is-active", (unit,))
    result = ours(manager, is_active=unit)
    assert printed == [ACTIVITY[unit][2]] == [result.fields["active_state"]]
    assert result.fields["units"][unit]["up"] is (code == 0)
    assert result.fields["healthy"] is (code == 0)
    assert result.fields["exit_code"] == code  # real systemctl's own, passed through


def test_require_any_is_systemctl_is_active_over_several_units(manager: UserManager) -> None:
    for units in groups(sorted(ACTIVITY)):
        code, _ = oracle(manager, "is-active", units)
        result = ours(manager, is_active=list(units), require="any")
        assert result.fields["healthy"] is (code == 0), units
        assert result.fields["any_active"] is (code == 0), units


def test_require_all_is_every_unit_active_on_its_own(manager: UserManager) -> None:
    for units in groups(sorted(ACTIVITY)):
        each = [oracle(manager, "is-active", (u,))[0] == 0 for u in units]
        result = ours(manager, is_active=list(units))
        assert result.fields["healthy"] is all(each), units
        assert result.fields["all_active"] is all(each), units
        # systemctl's exit code says "any": `exit_code == 0` alone would pass here
        if any(each) and not all(each):
            assert result.fields["exit_code"] == 0 and not result.fields["healthy"]


def test_status_is_healthy_exactly_when_systemctl_status_exits_0(manager: UserManager) -> None:
    for units in [(u,) for u in sorted(ACTIVITY)] + groups(sorted(ACTIVITY)):
        code, _ = oracle(manager, "status", units)
        result = ours(manager, status=list(units))
        assert result.fields["healthy"] is (code == 0), units


def test_a_reloading_unit_is_up(manager: UserManager) -> None:
    result = ours(manager, is_active=["up", "reloading"])
    assert result.fields["all_active"] and result.fields["healthy"]
    assert result.fields["units"]["reloading"]["sub_state"] == "reload"


@pytest.mark.parametrize("unit", ENABLEMENT)
def test_each_unit_file_state_is_enabled_exactly_when_systemctl_says_so(
    manager: UserManager, unit: str
) -> None:
    code, printed = oracle(manager, "is-enabled", (unit,))
    result = ours(manager, is_enabled=unit)
    assert printed == [result.fields["unit_file_state"]]
    assert result.fields["units"][unit]["enabled"] is (code == 0)
    assert result.fields["healthy"] is (code == 0)


def test_is_enabled_any_and_all_over_several_units(manager: UserManager) -> None:
    for units in groups(ENABLEMENT):
        code, _ = oracle(manager, "is-enabled", units)
        each = [oracle(manager, "is-enabled", (u,))[0] == 0 for u in units]
        assert ours(manager, is_enabled=list(units), require="any").fields["healthy"] is (
            code == 0
        ), units
        assert ours(manager, is_enabled=list(units)).fields["healthy"] is all(each), units


def test_a_missing_unit_is_an_error_where_systemctl_says_inactive(manager: UserManager) -> None:
    code, printed = oracle(manager, "is-active", ("no-such-unit",))
    assert code != 0 and printed == ["inactive"]  # systemctl: inactive, exit 3 (4 since v253)
    result = systemd.run(
        {"systemctl": str(manager.shim), "is_active": "no-such-unit"}, ExecContext("s", timeout=30)
    )
    assert not result.ok and result.error == "unit not found: no-such-unit"


RUNBOOK = """
apiVersion: runbook/v1
kind: Runbook
metadata: {name: real-units, title: Real units, severity: P2}
steps:
  - {id: all-up, phase: detect, check: {systemd: {is_active: [up, down]}}, on_failure: continue}
  - id: any-up
    phase: triage
    check: {systemd: {is_active: [up, down], require: any}}
  - id: reload-is-up
    phase: resolve
    check: {systemd: {status: [up, reloading]}}
    expect: ["all_active", "units.reloading.active_state == 'reloading'"]
"""


def test_the_default_expectation_needs_every_unit_up_through_the_cli(
    manager: UserManager, run_cli, write_runbook
) -> None:
    path = write_runbook(RUNBOOK)
    env = {"PATH": f"{manager.shim.parent}{os.pathsep}{os.environ['PATH']}"}
    result = run_cli("run", str(path), "--log-dir", "logs", env=env)
    assert result.code == 0, result.text
    (log,) = (path.parent / "logs").glob("*.jsonl")
    records = [json.loads(line) for line in log.read_text().splitlines()]
    ended = {
        r["data"]["step"]: r["data"]["status"] for r in records if r["type"] == "step.finished"
    }
    assert ended == {"all-up": "failed", "any-up": "passed", "reload-is-up": "passed"}
