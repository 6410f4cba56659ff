"""Mutation testing of the safety code: would the suite notice if this line were wrong?

`make mutate` runs this. For each target in tools/mutation.toml it copies the tree to a
scratch directory (cosmic-ray edits the module in place, so the working tree is never
touched), lets cosmic-ray list every mutant of the module, keeps only the mutants inside
the named safety functions and of the configured operators, runs each against the target's
own tests, and reports the kill rate. Survivors argued equivalent in
tools/mutation-equivalent.toml are reported apart.

Why a scratch copy on PYTHONPATH: the tests start `python -m runbook` as a real process,
so the mutant must be what a fresh interpreter imports, not only what pytest imported.
The installed package maps `runbook_plugins` and `runbook_demo` to `plugins/` and `demo/`;
the copy gets the same mapping through symlinks.

    python tools/mutate.py                  # every target, 2 at a time
    python tools/mutate.py -t resume -t gates
    python tools/mutate.py --list           # what would run, and how many mutants
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "tools" / "mutation.toml"
EQUIVALENT = ROOT / "tools" / "mutation-equivalent.toml"
PACKAGE_DIRS = {"runbook_plugins": "plugins", "runbook_demo": "demo"}
"""Import name -> directory, as pyproject's package-dir maps them for the installed tree."""


class BaselineFailed(Exception):
    """The target's tests fail on the clean tree: no mutant can be judged."""


@dataclass
class Target:
    name: str
    module: str
    only: list[str]
    tests: list[str]


@dataclass
class Mutant:
    job_id: str
    operator: str
    line: int
    source_line: str
    diff: str
    outcome: str  # killed | survived | equivalent | incompetent


@dataclass
class TargetResult:
    target: Target
    mutants: list[Mutant] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        if outcome == "killed":  # a hang is noticed too: the run never finishes
            return sum(1 for m in self.mutants if m.outcome in ("killed", "timeout"))
        return sum(1 for m in self.mutants if m.outcome == outcome)

    @property
    def rate(self) -> float:
        judged = self.count("killed") + self.count("survived")
        return 100.0 * self.count("killed") / judged if judged else 100.0


def load_config() -> tuple[list[str], float, list[Target]]:
    data = tomllib.loads(CONFIG.read_text())
    targets = [Target(t["name"], t["module"], t["only"], t["tests"]) for t in data["target"]]
    return data["operators"], float(data["timeout"]), targets


def load_equivalents() -> list[dict[str, str]]:
    if not EQUIVALENT.exists():
        return []
    return list(tomllib.loads(EQUIVALENT.read_text()).get("equivalent", []))


# -- which mutants belong to the safety code ----------------------------------------------
def _spans(tree: ast.Module, only: list[str]) -> list[tuple[int, int]]:
    """Line ranges of the named functions/classes ("Class.method" or "name")."""
    if only == ["*"]:
        return [(1, 10**9)]
    found: dict[str, tuple[int, int]] = {}

    def walk(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = prefix + node.name
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                found[name] = (start, node.end_lineno or node.lineno)
                if isinstance(node, ast.ClassDef):
                    walk(node.body, name + ".")

    walk(tree.body, "")
    missing = [name for name in only if name not in found]
    if missing:
        raise SystemExit(f"mutate: {', '.join(missing)} not found (tools/mutation.toml is stale)")
    return [found[name] for name in only]


def _annotations(tree: ast.Module) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where type annotations are: with `from __future__ import annotations` they never
    run, so a mutant there is equivalent by construction."""
    spans = []
    for node in ast.walk(tree):
        parts: list[ast.expr | None] = []
        if isinstance(node, ast.arg):
            parts.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            parts.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            parts.append(node.annotation)
        for part in parts:
            if part is not None:
                end = (part.end_lineno or part.lineno, part.end_col_offset or 0)
                spans.append(((part.lineno, part.col_offset), end))
    return spans


def _select(db_path: Path, module: Path, target: Target, operators: list[str]) -> None:
    """Mark every mutant outside the target's functions or operator set as skipped."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    tree = ast.parse(module.read_text())
    spans = _spans(tree, target.only)
    annotations = _annotations(tree)
    allowed = re.compile("|".join(f"(?:{op})" for op in operators))
    skipped = WorkResult(worker_outcome=WorkerOutcome.SKIPPED)
    with use_db(str(db_path), WorkDB.Mode.open) as db:
        for item in db.work_items:
            mutation = item.mutations[0]
            line, col = mutation.start_pos
            inside = any(lo <= line <= hi for lo, hi in spans)
            in_annotation = any(a <= (line, col) < b for a, b in annotations)
            if not inside or in_annotation or not allowed.fullmatch(mutation.operator_name):
                db.set_result(item.job_id, skipped)


# -- running one target in its own copy -------------------------------------------------------
def _copy_tree(dest: Path) -> None:
    listed = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_symlink():  # runbook/library -> ../runbooks
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).symlink_to(os.readlink(src))
        elif src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    aliases = dest / ".mutation-path"
    aliases.mkdir()
    for name, directory in PACKAGE_DIRS.items():
        (aliases / name).symlink_to(dest / directory)


def _interpreter(copy: Path) -> Path:
    """A venv that imports the mutated copy first and everything else from ours.

    PYTHONPATH alone is not enough: tests that start plugins or peers pass their own
    PYTHONPATH to the child, which would then import the clean tree and hide the mutant.
    A `.pth` in the venv's own site-packages holds whatever the child's environment says.
    Console scripts (`runbook`, `runbook-demo`, peers) are re-pointed at this interpreter.
    """
    venv = copy / ".mutation-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    ours = next(Path(sys.prefix).glob("lib/python*/site-packages"))
    (site / "00-mutant.pth").write_text(
        "\n".join([str(copy), str(copy / ".mutation-path"), str(ours)]) + "\n"
    )
    python = venv / "bin" / "python"
    for script in Path(sys.prefix, "bin").iterdir():
        target = venv / "bin" / script.name
        if target.exists() or not script.is_file():
            continue
        try:
            text = script.read_text()
        except UnicodeDecodeError:  # a binary (temporal): nothing to re-point
            target.symlink_to(script)
            continue
        first, _, rest = text.partition("\n")
        if first.startswith("#!") and "python" in first:
            target.write_text(f"#!{python}\n{rest}")
            target.chmod(0o755)
        else:
            target.symlink_to(script)
    return python


def _env(copy: Path, python: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["PATH"] = os.pathsep.join([str(python.parent), env.get("PATH", "")])
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # a mutant's .pyc must never outlive it
    return env


def _test_command(target: Target, python: Path) -> str:
    return " ".join(
        [str(python), "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *target.tests]
    )


def run_target(
    target: Target,
    operators: list[str],
    timeout: float,
    equivalents: list[dict[str, str]],
    list_only: bool = False,
) -> TargetResult:
    with tempfile.TemporaryDirectory(prefix="runbook-mutate-") as scratch:
        copy = Path(scratch) / "tree"
        if os.environ.get("MUTATE_KEEP"):  # inspect a long run while it goes
            copy = Path(os.environ["MUTATE_KEEP"]) / re.sub(r"\W+", "-", target.name)
            shutil.rmtree(copy, ignore_errors=True)
        copy.mkdir(parents=True)
        _copy_tree(copy)
        python = _interpreter(copy)
        env = _env(copy, python)
        started = time.monotonic()
        for _ in range(1 if list_only else 2):  # once more: a loaded machine can flake a test
            baseline = (
                subprocess.CompletedProcess([], 0, "")
                if list_only
                else subprocess.run(
                    _test_command(target, python),
                    shell=True,
                    cwd=copy,
                    env=env,
                    capture_output=True,
                    text=True,
                )
            )
            if baseline.returncode == 0:
                break
            started = time.monotonic()
        if baseline.returncode != 0:
            tail = "\n".join(baseline.stdout.splitlines()[-15:])
            raise BaselineFailed(f"{target.name}: tests fail before any mutation:\n{tail}")
        # A mutant that takes 4x the clean run is hanging, not slow: a false "timeout kill"
        # on a loaded machine would flatter the rate, so the bound is generous.
        timeout = min(timeout, max(120.0, 4 * (time.monotonic() - started)))
        cfg = copy / "cosmic-ray.toml"
        cfg.write_text(
            "[cosmic-ray]\n"
            f"module-path = {json.dumps(target.module)}\n"
            f"timeout = {timeout}\n"
            "excluded-modules = []\n"
            f"test-command = {json.dumps(_test_command(target, python))}\n"
            '[cosmic-ray.distributor]\nname = "local"\n'
        )
        db = copy / "session.sqlite"
        cosmic = str(Path(sys.executable).parent / "cosmic-ray")
        subprocess.run([cosmic, "init", str(cfg), str(db)], cwd=copy, env=env, check=True)
        _select(db, copy / target.module, target, operators)
        if list_only:
            return _collect(db, copy / target.module, target, equivalents, pending=True)
        subprocess.run(
            [cosmic, "exec", str(cfg), str(db)],
            cwd=copy,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return _collect(db, copy / target.module, target, equivalents)


def _collect(
    db_path: Path,
    module: Path,
    target: Target,
    equivalents: list[dict[str, str]],
    pending: bool = False,
) -> TargetResult:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    lines = module.read_text().splitlines()
    result = TargetResult(target)
    with use_db(str(db_path), WorkDB.Mode.open) as db:
        items = {item.job_id: item for item in db.work_items}
        if pending:
            for item in db.pending_work_items:
                mutation = item.mutations[0]
                text = lines[mutation.start_pos[0] - 1].strip()
                result.mutants.append(
                    Mutant(
                        item.job_id,
                        mutation.operator_name,
                        mutation.start_pos[0],
                        text,
                        "",
                        "pending",
                    )
                )
            return result
        for job_id, work in db.results:
            if work.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            mutation = items[job_id].mutations[0]
            line = mutation.start_pos[0]
            text = lines[line - 1].strip()
            if work.worker_outcome == WorkerOutcome.ABNORMAL:
                outcome = "timeout"  # the mutant hung past 4x the clean run: counted killed
            elif work.test_outcome == TestOutcome.KILLED:
                outcome = "killed"
            elif work.test_outcome == TestOutcome.INCOMPETENT:
                outcome = "incompetent"
            elif _is_equivalent(target.module, mutation.operator_name, text, equivalents):
                outcome = "equivalent"
            else:
                outcome = "survived"
            result.mutants.append(
                Mutant(
                    job_id, mutation.operator_name, line, text, "".join(work.diff or ""), outcome
                )
            )
    return result


def _is_equivalent(
    module: str, operator: str, text: str, equivalents: list[dict[str, str]]
) -> bool:
    return any(
        e["module"] == module and re.fullmatch(e["operator"], operator) and e["line"] == text
        for e in equivalents
    )


# -- reporting --------------------------------------------------------------------------------
def report(results: list[TargetResult], out: Path) -> float:
    killed = sum(r.count("killed") for r in results)
    survived = sum(r.count("survived") for r in results)
    print(f"\n{'target':28} {'mutants':>7} {'killed':>6} {'equiv':>5} {'survived':>8} {'rate':>6}")
    for r in results:
        print(
            f"{r.target.name:28} {len(r.mutants):7} {r.count('killed'):6} "
            f"{r.count('equivalent'):5} {r.count('survived'):8} {r.rate:5.1f}%"
        )
    total = 100.0 * killed / (killed + survived) if killed + survived else 100.0
    print(f"{'all safety targets':28} {'':7} {killed:6} {'':5} {survived:8} {total:5.1f}%")
    for r in results:
        for m in r.mutants:
            if m.outcome == "survived":
                print(f"\nSURVIVED {r.target.module}:{m.line} {m.operator}\n{m.diff}")
    out.write_text(
        json.dumps(
            {
                "rate": round(total, 2),
                "targets": [
                    {
                        "name": r.target.name,
                        "module": r.target.module,
                        "rate": round(r.rate, 2),
                        "mutants": [m.__dict__ for m in r.mutants],
                    }
                    for r in results
                ],
            },
            indent=2,
        )
    )
    print(f"\ndetails: {out}")
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-t", "--target", action="append", help="run only this target (name)")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="targets run at once (default 2)")
    parser.add_argument("--min-rate", type=float, default=95.0, help="fail below this kill rate")
    parser.add_argument("--list", action="store_true", help="count the mutants; run nothing")
    parser.add_argument("--out", type=Path, default=ROOT / ".mutation-report.json")
    args = parser.parse_args(argv)
    operators, timeout, targets = load_config()
    if args.target:
        unknown = set(args.target) - {t.name for t in targets}
        if unknown:
            parser.error(f"unknown target(s) {sorted(unknown)}; known: {[t.name for t in targets]}")
        targets = [t for t in targets if t.name in args.target]
    equivalents = load_equivalents()
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [
            pool.submit(run_target, t, operators, timeout, equivalents, args.list) for t in targets
        ]
        results = []
        failed = []
        for future in futures:
            try:
                r = future.result()
            except BaselineFailed as exc:
                print(f"mutate: {exc}", flush=True)
                failed.append(str(exc).split(":")[0])
                continue
            print(
                f"mutate: {r.target.name}: {r.count('killed')}/{len(r.mutants)} killed", flush=True
            )
            results.append(r)
    if args.list:
        for r in results:
            print(
                f"{r.target.name:28} {len(r.mutants):5} mutants  tests: {' '.join(r.target.tests)}"
            )
        return 0
    rate = report(results, args.out)
    if failed:
        print(f"mutate: not judged (tests failed on the clean tree): {', '.join(failed)}")
        return 1
    return 0 if rate >= args.min_rate else 1


if __name__ == "__main__":
    sys.exit(main())
