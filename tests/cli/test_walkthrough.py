"""A new user's walk-through, run exactly as docs/getting-started.md tells it.

Every ```sh block marked `<!-- walkthrough -->` is run, in order, in one bash
shell in a fresh directory with the venv's bin on PATH (what `. .venv/bin/activate`
gives): scaffold, validate, dry-run, run against the demo service, wedge it and
respond, verify the log, export the post-mortem. Each `<!-- walkthrough-output -->`
block after it lists lines that command group must print (`…` stands for
anything). Change the page and this test follows; change the product and the page
must follow.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support.cli import ROOT

PAGE = ROOT / "docs" / "getting-started.md"
MARK = "@@walkthrough-block "
_BLOCK = re.compile(
    r"^<!-- (walkthrough(?:-output)?) -->\n+(```|~~~)[a-z]*\n(.*?)^\2\s*$", re.M | re.S
)


@dataclass
class Block:
    commands: list[str]
    expected: list[str] = field(default_factory=list)


def walkthrough(text: str) -> list[Block]:
    blocks: list[Block] = []
    for kind, _, body in _BLOCK.findall(text):
        lines = [line for line in body.splitlines() if line.strip()]
        if kind == "walkthrough":
            blocks.append(Block(lines))
        else:
            assert blocks, "a walkthrough-output block must follow a walkthrough block"
            blocks[-1].expected.extend(lines)
    return blocks


def script(blocks: list[Block]) -> str:
    parts = ["set -euo pipefail"]
    for number, block in enumerate(blocks):
        parts.append(f"echo '{MARK}{number}'")
        parts.extend(block.commands)
    return "\n".join(parts) + "\n"


def outputs(text: str, count: int) -> list[str]:
    found = [""] * count
    current = None
    for line in text.splitlines(keepends=True):
        if line.startswith(MARK):
            current = int(line[len(MARK) :])
        elif current is not None:
            found[current] += line
    return found


def pattern(expected: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in expected.strip().split("…")))


def test_the_page_has_a_complete_walkthrough() -> None:
    text = "\n".join(c for b in walkthrough(PAGE.read_text(encoding="utf-8")) for c in b.commands)
    for step in (
        "runbook new ",
        "runbook validate ",
        "runbook plan ",
        "--dry-run",
        "runbook-demo start ",
        "runbook run ",
        "runbook log verify ",
        "runbook report ",
        "--format postmortem",
    ):
        assert step in text, f"the walk-through in {PAGE.name} lost its {step.strip()!r} step"


@pytest.mark.slow
def test_getting_started_walkthrough_runs_as_written(tmp_path: Path) -> None:
    blocks = walkthrough(PAGE.read_text(encoding="utf-8"))
    work = tmp_path / "walkthrough"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOK_")}
    env.update(
        PATH=str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
        RUNBOOK_DEMO_DIR=str(tmp_path / "demo-state"),  # not the user's demo services
        RUNBOOK_OPERATOR="new-user",
        NO_COLOR="1",
    )
    try:
        proc = subprocess.run(
            ["bash", "-c", script(blocks)],
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        subprocess.run(["runbook-demo", "stop", "demo-api"], env=env, capture_output=True)
    assert proc.returncode == 0, (
        f"the walk-through stopped with exit {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    )
    for block, out in zip(blocks, outputs(proc.stdout + proc.stderr, len(blocks)), strict=True):
        lines = [line.strip() for line in out.splitlines()]
        for expected in block.expected:
            rx = pattern(expected)
            assert any(rx.fullmatch(line) for line in lines), (
                f"{PAGE.name} shows {expected.strip()!r} after {block.commands}, "
                f"but they printed:\n{out}"
            )
    assert (work / "runbooks" / "api-health.yaml").exists()
    assert (work / "runbook.schema.json").stat().st_size > 1000
    postmortem = (work / "postmortem.md").read_text(encoding="utf-8")
    assert "chain intact" in postmortem
    logs = sorted((work / "incident-logs").glob("*.jsonl"))
    assert len(logs) == 3  # the dry-run, the healthy run and the incident
