"""SLA targets (seed 003 defaults, YAML overrides) and the clocks read from real run logs."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.cli import ROOT, RunCli
from support.helpers import logs_in

from runbook.errors import InvalidInput
from runbook.log.journal import read_log
from runbook.report import sla

GOLDEN_LOG = ROOT / "tests" / "data" / "reports" / "golden-run.jsonl"

RUNBOOK = """
apiVersion: runbook/v1
kind: Runbook
metadata: {name: clocks, title: Clocks, severity: P0}
steps:
  - {id: probe, phase: detect, check: {shell: {argv: ["false"]}}, on_failure: continue}
  - {id: fix, phase: mitigate, action: {shell: {argv: ["sleep", "0.2"]}}, confirm: "Fix?"}
  - {id: back, phase: resolve, check: {shell: {argv: ["true"]}}}
"""


def test_defaults_are_seed_003_table() -> None:
    p0, p1, p2, p3 = (sla.DEFAULT_TARGETS[s] for s in sla.SEVERITIES)
    assert (p0.respond, p0.resolve, p0.update_every) == (900, 3600, 900)
    assert (p1.respond, p1.resolve, p1.update_every) == (1800, 4 * 3600, 1800)
    assert (p2.respond, p2.resolve) == (2 * 3600, 24 * 3600)
    assert (p3.respond, p3.resolve) == (24 * 3600, 7 * 86400)


def test_sla_file_overrides_only_what_it_names(tmp_path: Path) -> None:
    path = tmp_path / "sla.yaml"
    path.write_text("P0: {respond: 5m}\nP4: {respond: 1d, resolve: 2d, update: 1d}\n")
    targets = sla.load_targets({"RUNBOOK_SLA_FILE": str(path)})
    assert targets["P0"].respond == 300 and targets["P0"].resolve == 3600
    assert targets["P4"].resolve == 2 * 86400


def test_default_config_location_is_xdg(tmp_path: Path) -> None:
    (tmp_path / "runbook").mkdir()
    (tmp_path / "runbook" / "sla.yaml").write_text("P2: {resolve: 8h}\n")
    assert sla.load_targets({"XDG_CONFIG_HOME": str(tmp_path)})["P2"].resolve == 8 * 3600
    assert sla.load_targets({"XDG_CONFIG_HOME": str(tmp_path / "none")}) == sla.DEFAULT_TARGETS


@pytest.mark.parametrize(
    ("text", "error"),
    [("P0: {respond: soon}", "P0.respond"), ("P0: {ack: 5m}", "unknown key"), ("- P0", "mapping")],
)
def test_bad_sla_file_is_invalid_input(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "sla.yaml"
    path.write_text(text)
    with pytest.raises(InvalidInput, match=error):
        sla.load_targets({"RUNBOOK_SLA_FILE": str(path)})


def test_missing_explicit_sla_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no such file"):
        sla.load_targets({"RUNBOOK_SLA_FILE": str(tmp_path / "nope.yaml")})


def test_clocks_of_a_recorded_run_follow_phases_and_confirmations() -> None:
    records = read_log(GOLDEN_LOG)
    marks = sla.clocks(records)
    by_seq = {r["seq"]: r for r in records}
    assert marks.detected and by_seq[marks.detected.seq]["data"]["step"] == "health"
    assert marks.acknowledged and by_seq[marks.acknowledged.seq]["type"] == "step.result"
    assert by_seq[marks.acknowledged.seq]["data"]["fields"]["answer"] == "yes"  # manual answer
    assert marks.mitigated and by_seq[marks.mitigated.seq]["data"]["step"] == "restart"
    assert marks.resolved and by_seq[marks.resolved.seq]["type"] == "run.finished"
    assert 0 < marks.detected.elapsed <= marks.mitigated.elapsed <= marks.resolved.elapsed


def test_summary_line_states_elapsed_against_target() -> None:
    line = sla.summary_line(read_log(GOLDEN_LOG), sla.DEFAULT_TARGETS)
    assert line.startswith("SLA P1 (within target): acknowledged in ")
    assert "of 30m P1 target" in line and "mitigated in " in line and "of 4h P1 target" in line


def test_a_missed_target_says_missed(run_cli: RunCli, write_runbook, tmp_path: Path) -> None:
    assert run_cli("run", str(write_runbook(RUNBOOK)), "--yes").code == 0
    records = read_log(logs_in(tmp_path / "logs")[0])
    tight = {"P0": sla.SlaTarget("P0", respond=0.0, resolve=0.1, update_every=60)}
    line = sla.summary_line(records, tight)
    assert "(MISSED)" in line and "of 100ms P0 target — MISSED" in line
    assert "within target" in sla.summary_line(records, sla.DEFAULT_TARGETS)


def test_a_run_without_mitigation_is_not_mitigated() -> None:
    records = read_log(GOLDEN_LOG)
    before_fix = [r for r in records if r["seq"] < 17]
    marks = sla.clocks(before_fix)
    assert marks.mitigated is None and marks.resolved is None
    assert "not mitigated (4h P1 target)" in sla.summary_line(before_fix, sla.DEFAULT_TARGETS)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.25, "250ms"), (42, "42s"), (720, "12m"), (3900, "1h05m"), (7 * 86400, "7d")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert sla.format_duration(seconds) == text


def test_log_list_sla_summarises_mttd_and_mttr(
    run_cli: RunCli, write_runbook, tmp_path: Path
) -> None:
    path = str(write_runbook(RUNBOOK))
    assert run_cli("run", path, "--yes").code == 0
    assert run_cli("run", path, "--yes").code == 0
    assert run_cli("run", path, "--dry-run").code == 0
    result = run_cli("log", "list", "--sla")
    assert result.code == 0, result.err
    assert result.out.count("SLA P0 (within target)") == 2
    assert "over 2 run(s); 0 not resolved (dry-runs excluded)" in result.out
    assert "MTTD " in result.out and "MTTR " in result.out


def test_explicit_marks_are_recorded_and_win_over_phases(
    run_cli: RunCli, write_runbook, tmp_path: Path
) -> None:
    from runbook.log.journal import read_log
    from runbook.report.sla import clocks

    rb = write_runbook(
        """
        apiVersion: runbook/v1
        kind: Runbook
        metadata: {name: marks, title: Marks, severity: P1}
        steps:
          - {id: probe, phase: detect, check: {shell: {argv: ['false']}}, on_failure: continue,
             mark: detected}
          - {id: quick-fix, phase: mitigate, action: {shell: {argv: ['true']}}}
          - {id: really-fixed, phase: mitigate, check: {shell: {argv: ['true']}}, mark: mitigated}
          - {id: not-yet, phase: resolve, check: {shell: {argv: ['false']}}, mark: resolved,
             on_failure: continue}
        """
    )
    assert run_cli("run", str(rb), "--yes").code == 1  # no resolve-phase check passed
    records = read_log(next((tmp_path / "logs").glob("*.jsonl")))
    marks = [
        (r["data"]["mark"], r["data"]["step"]) for r in records if r["type"] == "incident.mark"
    ]
    assert marks == [("detected", "probe"), ("mitigated", "really-fixed")]
    seq_of = {r["data"]["step"]: r["seq"] for r in records if r["type"] == "incident.mark"}
    assert clocks(records).mitigated is not None
    assert clocks(records).mitigated.seq == seq_of["really-fixed"]
