"""Saved plans: reading a plan file and holding a run to it (`run --plan FILE`).

A plan file is the plan's document plus its digest (see `runbook.plan.planner`).
Checking one re-plans the runbook with the same params, inventory and secret
salt, and compares: the same digest runs, anything else is a `PlanMismatch`
(exit 2) listing every difference as `step 'flush': confirm.require: 'prod-db'
-> (none)`, so the operator sees what changed since the plan was reviewed. A
plan file is versioned by `format`; one from another version is refused with a
message saying which way to go, and one edited after it was saved (its digest no
longer matches its own content) is refused as such.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runbook.contract import ExecutorSpec
from runbook.errors import PlanMismatch
from runbook.load.model import Runbook
from runbook.plan.planner import PLAN_FORMAT, Plan, build_plan, canonical_json

if TYPE_CHECKING:
    from runbook.run.inventory import Inventory

MAX_LINES = 40
# Entry fields shown under the names a runbook author uses for them.
_LABELS = {"gated": "confirm.prompt", "confirm_require": "confirm.require"}
# Entry fields that are derived from others: listed after the fields they come from.
_DERIVED = ("condition", "summary", "unknown")


def load_plan_file(path: Path) -> dict[str, Any]:
    """The saved plan document; PlanMismatch if it is unreadable, foreign or edited."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PlanMismatch(f"{path}: cannot read plan file: {exc}") from None
    if not isinstance(doc, dict) or "digest" not in doc or "format" not in doc:
        raise PlanMismatch(f"{path}: not a runbook plan file")
    version = doc["format"]
    if not isinstance(version, int) or version > PLAN_FORMAT:
        raise PlanMismatch(
            f"{path}: plan was saved by a newer runbook (plan format {version}, this runbook "
            f"reads {PLAN_FORMAT}); upgrade runbook or re-run runbook plan"
        )
    if version < PLAN_FORMAT:
        raise PlanMismatch(
            f"{path}: plan was saved by an older runbook; re-run runbook plan "
            f"(plan format {version}, this runbook reads {PLAN_FORMAT})"
        )
    content = {k: v for k, v in doc.items() if k != "digest"}
    if hashlib.sha256(canonical_json(content).encode()).hexdigest() != doc["digest"]:
        raise PlanMismatch(
            f"{path}: the plan file was changed after it was saved (its digest does not "
            "match its content); re-run runbook plan and review it again"
        )
    return doc


def check_saved_plan(
    path: Path,
    runbook: Runbook,
    params: Mapping[str, Any],
    executors: Mapping[str, ExecutorSpec],
    masked_params: Mapping[str, Any],
    inventory: Inventory | None = None,
) -> None:
    """Refuse (PlanMismatch, exit 2) unless `runbook` now makes exactly the saved plan."""
    saved = load_plan_file(path)
    current = build_plan(runbook, params, executors, masked_params, inventory, _salt(saved))
    check_plan(saved, current, path)


def check_plan(saved: Mapping[str, Any], current: Plan, path: Path) -> None:
    """Refuse (exit 2) when the saved plan is for another runbook or now differs."""
    if saved.get("runbook") != current.runbook:
        raise PlanMismatch(
            f"{path}: plan is for runbook '{saved.get('runbook')}', not '{current.runbook}'"
        )
    current = current.with_salt(_salt(saved))
    if saved.get("digest") == current.digest:
        return
    lines = differences(saved, current.document()) or ["(no field differs; digest only)"]
    if len(lines) > MAX_LINES:
        lines = [*lines[:MAX_LINES], f"... and {len(lines) - MAX_LINES} more"]
    listing = "\n".join(f"  {line}" for line in lines)
    raise PlanMismatch(
        f"{path}: the runbook would no longer do what the saved plan says "
        f"(digest {str(saved.get('digest'))[:12]} saved, {current.digest[:12]} now):\n"
        f"{listing}\nre-run runbook plan and review the new plan before running it"
    )


def _salt(saved: Mapping[str, Any]) -> bytes | None:
    secrets = saved.get("secrets")
    if not isinstance(secrets, Mapping):
        return None
    try:
        return bytes.fromhex(str(secrets.get("salt", "")))
    except ValueError:
        return None


def differences(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """Every difference between two plan documents, one readable line each.

    Lines read `where: field: saved -> now`, e.g. `step 'flush': confirm.require:
    'prod-db' -> (none)`; the runbook file's own hash comes last, being the least
    telling. Keys neither side is expected to have are compared too, so a
    differing digest always has at least one line to show.
    """
    out: list[str] = []
    _compare("run deadline", saved.get("deadline"), now.get("deadline"), out)
    _named(saved.get("params"), now.get("params"), out, "param '{}'")
    _secrets(saved.get("secrets"), now.get("secrets"), out)
    _named(saved.get("targets"), now.get("targets"), out, "target '{}'")
    _named(saved.get("resolved"), now.get("resolved"), out, "target '{}': resolved", " ")
    _steps(saved.get("steps") or [], now.get("steps") or [], out)
    known = {"format", "digest", "runbook", "runbook_sha256", "deadline", "params", "secrets"}
    known |= {"targets", "resolved", "steps"}
    for key in sorted((set(saved) | set(now)) - known):
        _compare(key, saved.get(key), now.get(key), out)
    old_sha, new_sha = saved.get("runbook_sha256"), now.get("runbook_sha256")
    if old_sha != new_sha:
        out.append(f"runbook file: sha256 {str(old_sha)[:12]} -> {str(new_sha)[:12]}")
    return out


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = repr(_plain_numbers(value))
    return text if len(text) <= 120 else text[:117] + "..."


def _plain_numbers(value: Any) -> Any:
    """Whole floats as ints (durations are floats: `5`, not `5.0`) for display."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {k: _plain_numbers(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_numbers(v) for v in value]
    return value


def _compare(where: str, old: Any, new: Any, out: list[str]) -> None:
    """`where: old -> new`, descending into mappings so the line names the leaf."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in sorted(set(old) | set(new), key=str):
            _compare(f"{where}.{key}", old.get(key), new.get(key), out)
    elif old != new:
        out.append(f"{where}: {_show(old)} -> {_show(new)}")


def _named(old: Any, new: Any, out: list[str], where: str, join: str = ": ") -> None:
    """Compare two name -> value mappings: added, removed, or field by field."""
    old, new = old or {}, new or {}
    for name in sorted(set(old) | set(new)):
        here = where.format(name)
        if name not in old:
            out.append(f"{here}: added")
        elif name not in new:
            out.append(f"{here}: removed")
        elif isinstance(old[name], Mapping) and isinstance(new[name], Mapping):
            for key in sorted(set(old[name]) | set(new[name])):
                _compare(f"{here}{join}{key}", old[name].get(key), new[name].get(key), out)
        else:
            _compare(here, old[name], new[name], out)


def _secrets(old: Any, new: Any, out: list[str]) -> None:
    """A changed fingerprint says which secret changed, never a value."""
    old_prints = (old or {}).get("fingerprints") or {}
    new_prints = (new or {}).get("fingerprints") or {}
    for label in sorted(set(old_prints) | set(new_prints)):
        if old_prints.get(label) == new_prints.get(label):
            continue
        section, _, rest = label.partition(".")
        if section == "params":
            where = f"param '{rest}'"
        else:
            target, _, host_var = rest.partition(".")
            where = f"target '{target}': resolved host_vars.{host_var}"
        if label not in old_prints:
            out.append(f"{where}: secret value added")
        elif label not in new_prints:
            out.append(f"{where}: secret value removed")
        else:
            out.append(f"{where}: secret value changed")
    for key in ("kdf", "n", "r", "p"):
        if old and new and old.get(key) != new.get(key):
            out.append(f"secrets.{key}: {_show(old.get(key))} -> {_show(new.get(key))}")


def _flatten(entries: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    """(step id, entry without its verify list), verify steps right after their step."""
    flat: list[tuple[str, dict[str, Any]]] = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        fields = {k: v for k, v in entry.items() if k != "verify"}
        flat.append((str(entry.get("step")), fields))
        flat.extend(_flatten(list(entry.get("verify") or [])))
    return flat


def _steps(old: list[Any], new: list[Any], out: list[str]) -> None:
    old_ids = [str(e.get("step")) for e in old if isinstance(e, Mapping)]
    new_ids = [str(e.get("step")) for e in new if isinstance(e, Mapping)]
    common = set(old_ids) & set(new_ids)
    old_order = [i for i in old_ids if i in common]
    new_order = [i for i in new_ids if i in common]
    if old_order != new_order:
        out.append(f"step order: {', '.join(old_order)} -> {', '.join(new_order)}")
    old_flat, new_flat = dict(_flatten(old)), dict(_flatten(new))
    ordered = list(dict.fromkeys([sid for sid, _ in _flatten(new)] + list(old_flat)))
    for sid in ordered:
        where = f"step '{sid}'"
        if sid not in old_flat:
            out.append(f"{where}: added")
            continue
        if sid not in new_flat:
            out.append(f"{where}: removed")
            continue
        before, after = old_flat[sid], new_flat[sid]
        keys = sorted(set(before) | set(after), key=lambda k: (k in _DERIVED, k))
        for key in keys:
            _compare(f"{where}: {_LABELS.get(key, key)}", before.get(key), after.get(key), out)
