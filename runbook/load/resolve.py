"""Find a runbook by NAME or PATH, the way DESIGN.md orders it.

Order: an existing path; `./runbooks/NAME.yaml`; each directory in
`RUNBOOK_PATH`; the shipped library. An unknown name lists close names so a
typo at 3 a.m. costs one glance, not a search.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator
from pathlib import Path

from runbook.errors import RunbookNotFound

SUFFIXES = (".yaml", ".yml")


def shipped_dir() -> Path:
    """The library shipped inside the package (runbook/library -> ../runbooks)."""
    return Path(__file__).resolve().parents[1] / "library"


def search_dirs(extra: list[Path] | None = None) -> list[tuple[str, Path]]:
    """(label, directory) in resolution order; missing directories are dropped."""
    dirs: list[tuple[str, Path]] = [("dir", p) for p in (extra or [])]
    dirs.append(("local", Path.cwd() / "runbooks"))
    for entry in os.environ.get("RUNBOOK_PATH", "").split(os.pathsep):
        if entry:
            dirs.append(("RUNBOOK_PATH", Path(entry)))
    dirs.append(("shipped", shipped_dir()))
    seen: set[Path] = set()
    unique: list[tuple[str, Path]] = []
    for label, d in dirs:
        key = d.resolve() if d.exists() else d
        if d.is_dir() and key not in seen:
            seen.add(key)
            unique.append((label, d))
    return unique


def iter_runbook_files(extra: list[Path] | None = None) -> Iterator[tuple[str, Path]]:
    """Every runbook file reachable, first occurrence of a name winning."""
    names: set[str] = set()
    for label, directory in search_dirs(extra):
        for path in sorted(directory.iterdir()):
            if path.suffix in SUFFIXES and path.stem not in names and not path.name.startswith("."):
                names.add(path.stem)
                yield label, path


def resolve_runbook(name_or_path: str) -> Path:
    """Return the file for NAME or PATH, or raise RunbookNotFound with suggestions."""
    candidate = Path(name_or_path)
    if candidate.is_file():
        return candidate
    if os.sep in name_or_path or candidate.suffix in SUFFIXES:
        raise RunbookNotFound(f"runbook file not found: {name_or_path}")
    for _label, directory in search_dirs():
        for suffix in SUFFIXES:
            path = directory / f"{name_or_path}{suffix}"
            if path.is_file():
                return path
    known = sorted({p.stem for _l, p in iter_runbook_files()})
    close = difflib.get_close_matches(name_or_path, known, n=3, cutoff=0.5)
    hint = f"; did you mean: {', '.join(close)}?" if close else ""
    listing = ", ".join(known) if known else "none found"
    raise RunbookNotFound(f"unknown runbook '{name_or_path}'{hint} (available: {listing})")
