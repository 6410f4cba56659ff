"""The implementation of each CLI verb; imported only when a verb runs.

Each `cmd_*` takes the parsed argparse namespace and returns an exit code;
errors are raised as `RunbookError`s and printed by `cli.main`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runbook.errors import ExitCode, InvalidInput, InvalidRunbook
from runbook.session import Session

if TYPE_CHECKING:
    from runbook.run.inventory import Inventory


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


# -- validate / schema / plugins -------------------------------------------------------
def _expand(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files.extend(sorted(x for x in p.iterdir() if x.suffix in (".yaml", ".yml")))
        else:
            files.append(p)
    return files


def cmd_validate(args: argparse.Namespace) -> int:
    session = Session()
    specs = session.executors
    bad = 0
    for path in _expand(args.paths):
        if not path.is_file():
            print(f"{path}: no such file", file=sys.stderr)
            bad += 1
            continue
        try:
            rb = session.load_file(path)
        except InvalidRunbook as exc:
            for line in exc.errors:
                print(line, file=sys.stderr)
            bad += 1
            continue
        warnings = _lint(rb, specs) if args.strict else []
        for warning in warnings:
            print(warning.render(str(path)), file=sys.stderr)
        if warnings:
            bad += 1
            continue
        _out(f"ok  {path}  ({rb.name}: {len(rb.steps)} steps)")
    return ExitCode.INVALID if bad else ExitCode.OK


def _lint(rb: Any, specs: Any) -> list[Any]:
    from runbook.cli.lint import lint

    return lint(rb, specs)


def cmd_schema(args: argparse.Namespace) -> int:
    from runbook.load import schema

    session = Session()
    specs = session.executors
    if args.executor:
        if args.executor not in specs:
            raise InvalidInput(session.registry.unknown_executor_message(args.executor))
        doc = schema.executor_schema(args.executor, specs)
    else:
        doc = schema.full_schema(specs)
    _out(json.dumps(doc, indent=2, sort_keys=False))
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    registry = Session().registry
    entries = registry.executors()
    rows = [("EXECUTOR", "PLUGIN", "VERSION", "READ-ONLY", "DESCRIPTION")]
    for name in sorted(entries):
        entry = entries[name]
        spec = entry.spec
        ro = "per call" if spec.read_only_when else ("yes" if spec.read_only else "no")
        rows.append(
            (
                name,
                f"{entry.plugin.name} ({entry.plugin.distribution})",
                entry.plugin.version,
                ro,
                spec.description.split("\n")[0],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        _out("  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
    for failure in registry.failures:
        _out(
            f"\nFAILED plugin '{failure.name}' ({failure.distribution}, {failure.target}): "
            f"{failure.error}"
        )
    return 0


# -- list / show --------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> int:
    from runbook.cli.catalog import list_runbooks

    rows = list_runbooks(
        [Path(d) for d in args.dir], tag=args.tag, severity=args.severity, text=args.filter
    )
    if not rows:
        _out("no runbooks found")
        return 0
    width = max(len(r.name) for r in rows)
    for r in rows:
        tags = f"  [{', '.join(r.tags)}]" if r.tags else ""
        _out(f"{r.name.ljust(width)}  {r.severity:3}  {r.title}{tags}  ({r.source})")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from runbook.cli.catalog import outline

    session = Session()
    rb = session.load(args.runbook)
    _out(outline(rb, session.executors))
    return 0


# -- plan / run ---------------------------------------------------------------------------
def cmd_plan(args: argparse.Namespace) -> int:
    from runbook.cli.catalog import format_plan
    from runbook.load.params import parse_assignments

    session = Session()
    rb = session.load(args.runbook)
    inventory = _inventory(args)
    plan = session.plan(rb, session.params(rb, parse_assignments(args.param)), inventory)
    if args.output:
        Path(args.output).write_text(plan.to_json(), encoding="utf-8")
    if args.format == "json":
        sys.stdout.write(plan.to_json())
    else:
        _out(format_plan(rb, plan))
        if args.output:
            _out(f"\nplan written to {args.output} (digest {plan.digest[:16]})")
    return 0


def _inventory(args: argparse.Namespace) -> Inventory | None:
    """`--inventory FILE`, narrowed by `--limit PATTERN` (which needs an inventory)."""
    if not args.inventory:
        if args.limit:
            raise InvalidInput(
                "--limit selects hosts from an inventory: pass --inventory FILE with it"
            )
        return None
    from runbook.run.inventory import load_inventory

    inventory = load_inventory(args.inventory)
    return inventory.limited(args.limit) if args.limit else inventory


def cmd_run(args: argparse.Namespace) -> int:
    from runbook.cli.console import JsonConsole, TextConsole
    from runbook.load.params import parse_assignments
    from runbook.load.schema import parse_duration
    from runbook.run.operator import TerminalIO, claimed_operator
    from runbook.run.runner import RunOptions

    session = Session(log_dir=args.log_dir)
    rb = session.load(args.runbook)
    resume = session.resume_point(args.resume, rb) if args.resume else None
    values = session.params(rb, parse_assignments(args.param), resume=resume)
    inventory = _inventory(args)
    # before --deadline is parsed, the order the CLI has always reported errors in
    session.check_run(
        rb, values, only=args.only, from_step=args.from_step, plan=args.plan, inventory=inventory
    )
    try:
        deadline = parse_duration(args.deadline) if args.deadline else None
    except ValueError as exc:
        raise InvalidInput(f"--deadline: {exc}") from None
    operator, operator_source = claimed_operator(args.operator)
    console = JsonConsole() if args.format == "json" else TextConsole()
    options = RunOptions(
        dry_run=args.dry_run,
        no_checks=args.no_checks,
        yes=args.yes,
        only=tuple(args.only),
        from_step=args.from_step,
        answers=parse_assignments(args.answer),
        operator=operator,
        deadline=deadline,
        resume=resume,
        rerun_unfinished=tuple(args.rerun_unfinished),
        severity=args.severity,
        inventory=inventory,
        operator_source=operator_source,
        signing_key=args.signing_key,
    )
    result = session.run(rb, values, options, console=console, io=TerminalIO.detect())
    console.message(f"\nincident log: {result.log_path}")
    console.message(f"final hash: {result.final_hash}  (keep it: it pins the log's content)")
    key = f" --key {result.signed_by}" if result.signed_by else ""
    console.message(
        f"verify it with: runbook log verify {result.log_path}{key} --expect {result.final_hash}"
    )
    return result.exit_code


# -- log ----------------------------------------------------------------------------------
def cmd_log(args: argparse.Namespace) -> int:
    from runbook.log import journal, view

    if args.log_command == "list":
        directory = Session(log_dir=args.log_dir).log_dir
        if not directory.is_dir():
            raise InvalidInput(f"no incident-log directory at {directory}")
        rows = journal.list_logs(directory)
        for r in rows:
            mode = " (dry-run)" if r.dry_run else ""
            _out(f"{r.started}  {r.runbook:24} {r.status:11} {r.records:5} records  {r.path}{mode}")
        if not rows:
            _out(f"no incident logs in {directory}")
        if rows and args.sla:
            from runbook.cli.report import sla_overview

            _out("\n".join(["", *sla_overview([r.path for r in rows])]))
        return 0
    path = Path(args.log)
    if not path.is_file():
        raise InvalidInput(f"no such log file: {path}")
    if args.log_command == "show":
        _out(view.format_timeline(journal.read_log(path)))
        return 0
    return _verify_log(path, args.key, args.expect)


def _verify_log(path: Path, key_text: str | None, expect: str | None) -> int:
    """`runbook log verify`: chain, truncation, signature and anchor, each on its own line."""
    from runbook.log.signing import load_trusted_key
    from runbook.log.verify import Anchor, check_log

    try:
        anchor = Anchor.parse(expect) if expect is not None else None
    except ValueError as exc:
        raise InvalidInput(f"--expect {exc}") from None
    key = load_trusted_key(key_text) if key_text is not None else None
    check = check_log(path, key, anchor)
    for line in check.lines():
        _out(line)
    if check.ok:
        _out(check.summary())
        return 0
    for what, why in check.failures():
        print(f"{what}: {path}: {why}", file=sys.stderr)
    return ExitCode.LOG_CORRUPT


def cmd_report(args: argparse.Namespace) -> int:
    from runbook.cli.report import run_report

    return run_report(Session().registry, args.log, args.format, args.output, args.allow_unverified)


def cmd_new(args: argparse.Namespace) -> int:
    from runbook.cli import scaffold
    from runbook.load.loader import loads_runbook
    from runbook.load.resolve import resolve_runbook

    name = scaffold.check_name(args.name)
    directory = Path(args.dir)
    path = directory / f"{name}.yaml"
    scenarios: str | None
    if args.template:
        source = resolve_runbook(args.template)
        text = scaffold.render_from(source, name, args.severity)
        scenarios = scaffold.render_scenarios_from(source, name)
    else:
        text = scaffold.render_basic(name, args.severity or "P2")
        scenarios = scaffold.BASIC_SCENARIOS.format(name=name)
    loads_runbook(text, Session().executors, path=str(path))  # never write a broken one
    scenario_file = scaffold.scenario_path(path)
    if scenarios is not None and scenario_file.exists() and not args.force:
        raise InvalidInput(f"{scenario_file} already exists; use --force to overwrite it")
    scaffold.write_new(path, text, args.force)
    _out(f"created {path}")
    if scenarios is not None:
        scaffold.write_new(scenario_file, scenarios, True)
        _out(f"created {scenario_file} (scenario tests: pytest {directory})")
    _out(f"next: runbook validate --strict {path} && runbook plan {path}")
    return 0
