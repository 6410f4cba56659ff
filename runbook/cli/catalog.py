"""Reading runbooks for humans: `list`, `show` and the text form of a plan.

`list` reads only each file's metadata (safe YAML, no schema), so a broken
runbook still shows up — marked — instead of hiding the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbook.contract import ExecutorSpec
from runbook.load.model import PHASES, Runbook
from runbook.plan.planner import Plan


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    title: str
    severity: str
    tags: tuple[str, ...]
    source: str
    path: Path


def _metadata(path: Path) -> dict[str, Any]:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {"title": "(unreadable: run `runbook validate`)"}
    meta = doc.get("metadata") if isinstance(doc, dict) else None
    return meta if isinstance(meta, dict) else {}


def list_runbooks(
    extra_dirs: list[Path],
    tag: str | None = None,
    severity: str | None = None,
    text: str | None = None,
) -> list[CatalogEntry]:
    from runbook.load.resolve import iter_runbook_files

    rows = []
    for label, path in iter_runbook_files(extra_dirs):
        meta = _metadata(path)
        entry = CatalogEntry(
            name=str(meta.get("name") or path.stem),
            title=str(meta.get("title", "")),
            severity=str(meta.get("severity", "?")),
            tags=tuple(str(t) for t in meta.get("tags") or ()),
            source=label,
            path=path,
        )
        if tag and tag not in entry.tags:
            continue
        if severity and entry.severity != severity:
            continue
        if text and text.lower() not in (entry.name + " " + entry.title).lower():
            continue
        rows.append(entry)
    return sorted(rows, key=lambda r: r.name)


def _param_line(name: str, p: Any) -> str:
    bits = [p.type]
    if p.type == "enum":
        bits.append("|".join(str(v) for v in p.values))
    if p.required and p.default is None:
        bits.append("required")
    if p.default is not None:
        bits.append(f"default {'***' if p.secret else p.default!r}")
    if p.secret:
        bits.append(f"secret, or {p.env_var}")
    desc = f"  {p.description}" if p.description else ""
    return f"  {name}: {', '.join(bits)}{desc}"


def outline(rb: Runbook, specs: Mapping[str, ExecutorSpec]) -> str:
    """Params, targets and steps by phase; what is gated is marked."""
    lines = [f"{rb.title} ({rb.name})  severity {rb.severity}", f"file: {rb.path}"]
    if rb.owners:
        lines.append("owners: " + ", ".join(rb.owners))
    if rb.tags:
        lines.append("tags: " + ", ".join(rb.tags))
    if rb.description:
        lines += ["", rb.description.strip()]
    if rb.params:
        lines += ["", "params:"] + [_param_line(n, p) for n, p in rb.params.items()]
    if rb.targets:
        lines += ["", "targets:"] + [f"  {n}: {t.transport}" for n, t in rb.targets.items()]
    for phase in PHASES:
        steps = [s for s in rb.steps if s.phase == phase]
        if not steps:
            continue
        lines += ["", f"{phase}:"]
        for s in steps:
            spec = specs.get(s.executor)
            gated = s.kind == "action" and (spec is None or spec.needs_confirmation)
            flags = []
            if gated:
                flags.append(
                    "confirm"
                    + (f": type '{s.confirm.require}'" if s.confirm and s.confirm.require else "")
                )
            if s.when:
                flags.append(f"when {s.when}")
            if s.on_failure != "abort":
                flags.append(f"on failure {s.on_failure}" + (f" {s.goto}" if s.goto else ""))
            if s.retries.attempts > 1:
                flags.append(f"{s.retries.attempts} attempts")
            title = f" — {s.title}" if s.title else ""
            extra = f"  [{'; '.join(flags)}]" if flags else ""
            lines.append(f"  {s.id}: {s.kind} {s.executor}{title}{extra}")
            for e in s.expect:
                lines.append(f"      expect {e}")
            for v in s.verify:
                lines.append(f"      verify {v.executor}: " + ", ".join(v.expect or ("default",)))
    return "\n".join(lines)


def format_plan(rb: Runbook, plan: Plan) -> str:
    lines = [f"plan for {rb.title} ({rb.name}), severity {rb.severity} — nothing will be changed"]
    phase = None
    for e in plan.entries:
        if e.phase != phase:
            phase = e.phase
            lines.append(f"\n── {phase}")
        gate = f"  [confirm: {e.gated}]" if e.gated else ""
        if e.gated and e.confirm_require:
            gate = f"  [confirm: {e.gated} — type '{e.confirm_require}']"
        cond = "" if e.condition == "always" else f"  ({e.condition})"
        lines.append(f"  {e.step}: {e.kind} {e.executor}{cond}{gate}")
        lines.append(f"      {('unknown: ' + e.unknown) if e.unknown else e.summary}")
        for v in e.verify:
            lines.append(f"      verify: {v.get('summary')}")
    lines.append(f"\ndigest {plan.digest}")
    return "\n".join(lines)
