"""Build a real, importable plugin distribution in a directory for tests.

A `*.dist-info` folder with an `entry_points.txt` next to a module is what
`pip install` leaves behind; putting that directory on PYTHONPATH makes
`importlib.metadata` find the entry point exactly as for an installed plugin.
"""

from __future__ import annotations

import textwrap
from pathlib import Path


def make_plugin_dist(
    root: Path,
    dist: str,
    module: str,
    source: str,
    entry_name: str | None = None,
    version: str = "1.0",
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[runbook]\n{entry_name or module} = {module}\n")
    return root


SPY_SOURCE = """
import json, os
from runbook import ExecutorSpec, PlannedCall, StepResult, hookimpl

def _note(what, config):
    with open(os.environ["SPY_LOG"], "a") as f:
        f.write(json.dumps({"what": what, "config": config}) + "\\n")

def plan(config, ctx):
    _note("plan", dict(config))
    return PlannedCall(summary="spy " + config.get("name", ""), detail={"spy": config.get("name")})

def run(config, ctx):
    _note("run", dict(config))
    return StepResult(ok=True, fields={"value": 1}, output="spied")

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}},
          "additionalProperties": False}

@hookimpl
def runbook_executors():
    return [ExecutorSpec(name="spy", schema=SCHEMA, plan=plan, run=run, read_only=READ_ONLY,
                         side_effect_free_when=GUARANTEE,
                         description="records every plan() and run() call")]
"""


def spy_source(read_only: bool, side_effect_free: bool = False) -> str:
    """The spy plugin; `side_effect_free` declares every call guaranteed harmless."""
    guarantee = "lambda config: True" if side_effect_free else "None"
    return f"READ_ONLY = {read_only!r}\nGUARANTEE = {guarantee}\n" + SPY_SOURCE


def logs_in(directory: Path) -> list[Path]:
    """Incident logs written into `directory`, oldest name first."""
    return sorted(directory.glob("*.jsonl"))


def process_gone(pid: int) -> bool:
    """True when `pid` no longer runs; a zombie (reaped by nobody in a container) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")
