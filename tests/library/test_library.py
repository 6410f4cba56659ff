"""The shipped library's own rules (issue 7): metadata, safe params, gated and verified
actions, the five phases, notifications, a scenario file per runbook, the seed mapping."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from support.cli import ROOT

RUNBOOKS = sorted((ROOT / "runbooks").glob("*.yaml"))
EXPECTED = {
    "service-outage",
    "application-down",
    "high-error-rate",
    "database-connection-failure",
    "performance-degradation",
    "rollback",
    "cache-flush",
    "security-incident",
}
HUMAN = {"manual", "notify"}


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def executor(step: dict) -> str:
    [name] = (step.get("check") or step.get("action")).keys()
    return name


def test_the_library_has_every_seed_procedure() -> None:
    assert {p.stem for p in RUNBOOKS} >= EXPECTED


@pytest.mark.parametrize("path", RUNBOOKS, ids=lambda p: p.stem)
def test_runbook_follows_the_library_rules(path: Path) -> None:
    doc = load(path)
    text = path.read_text()
    assert "seed" in text.split("apiVersion:")[0], "the header comment names the seed sections"
    meta = doc["metadata"]
    assert meta["severity"] in {"P0", "P1", "P2", "P3"}
    assert meta["owners"] and meta["tags"] and meta.get("description")
    for name, param in (doc.get("params") or {}).items():
        if param.get("type") == "string" and not param.get("secret"):
            assert param.get("pattern"), f"param {name} has no pattern"
        if param.get("required") and "default" not in param:
            assert "example" in param, f"required param {name} has no example"
    steps = doc["steps"]
    phases = {s["phase"] for s in steps}
    assert {"detect", "resolve"} <= phases and ("mitigate" in phases)
    assert any(executor(s) == "notify" for s in steps), "no notify step"
    for step in steps:
        if "action" in step and executor(step) not in HUMAN:
            assert step.get("confirm"), f"{step['id']}: action without confirm text"
            assert step.get("verify"), f"{step['id']}: action without verify"
    assert (ROOT / "runbooks" / "scenarios" / path.name).exists(), "no scenario file"


def test_cache_flush_asks_for_the_pod_name() -> None:
    [flush] = [s for s in load(ROOT / "runbooks/cache-flush.yaml")["steps"] if s["id"] == "flush"]
    assert flush["confirm"]["require"] == "{{ params.cache_pod }}"
    assert flush["action"]["kubernetes"]["exec"]["argv"] == ["redis-cli", "FLUSHALL"]


@pytest.mark.parametrize("path", RUNBOOKS, ids=lambda p: p.stem)
def test_scenarios_cover_healthy_and_mitigation(path: Path) -> None:
    runbook = load(path)
    scenarios = load(ROOT / "runbooks" / "scenarios" / path.name)["scenarios"]
    assert len(scenarios) >= 2
    mitigating = {
        s["id"]
        for s in runbook["steps"]
        if s["phase"] == "mitigate" and "action" in s and executor(s) not in HUMAN
    } or {s["id"] for s in runbook["steps"] if s["phase"] == "mitigate"}
    covered = set()
    for scenario in scenarios:
        expect = scenario["expect"]
        covered |= set(expect.get("ran", [])) | set(expect.get("calls", {}))
    assert mitigating & covered, f"no scenario runs a mitigation step of {path.stem}"
    assert any(s["expect"].get("status") == "passed" for s in scenarios)


def test_seed_mapping_names_every_runbook_and_seed_command() -> None:
    mapping = (ROOT / "docs" / "seed-mapping.md").read_text()
    for path in RUNBOOKS:
        assert path.stem in mapping
    for command in [
        "redis-cli FLUSHALL",
        "kubectl rollout pause",
        "aws rds describe-db-instances",
        "pg_stat_replication",
        "gh workflow run rollback.yml",
        "htop",
        "df -h",
        "__ok",
        "journalctl -u fastapi -n 50",
        "kubectl top pods",
        "git log --oneline -10",
    ]:
        assert command in mapping, command
