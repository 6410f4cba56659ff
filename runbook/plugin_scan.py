"""What the installed plugins provide, remembered between runs so a start-up skips the scan.

Finding plugins means reading the entry points of every installed distribution
and importing every plugin to ask what it provides: about a third of a
`runbook validate`. The registry does that once and saves the answer (each
entry point, the hooks its plugin implements, the executors it provides) as a
JSON file in the cache directory (`$RUNBOOK_CACHE_DIR`, else
`$XDG_CACHE_HOME/runbook`, else `~/.cache/runbook`); later starts import only
the plugins they use.

The answer is used only while what produced it is unchanged: the same runbook
version and Python, the same distribution metadata along `sys.path` (each
`*.dist-info`/`*.egg-info` directory's name and its `entry_points.txt`'s size,
mtime and inode: installing, removing or upgrading any distribution shows), and
the same source files of every plugin's top-level package (an editable install
or a hand edit shows). A file that cannot be read, does not parse, has the
wrong shape, or is not the user's own is ignored, and the registry scans again.
Writes go to a temporary file renamed into place, so concurrent runs read a
whole file or none. The registry also checks each answer it uses (a plugin that
no longer provides what the file says triggers a full scan), so the cache only
ever costs time, never a wrong result.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

FORMAT = 1
"""Bumped when the file's shape or meaning changes; another number is a miss."""

MAX_FILES = 2000
"""Source files watched at most; a larger plugin package is scanned on every start instead."""

KEEP = 32
"""Cache files kept per directory (one per Python environment and plugin path)."""

RACY_NS = 2_000_000_000
"""A source file changed this close to the scan may have changed during it: do not save."""

_METADATA_SUFFIXES = (".dist-info", ".egg-info")


class ScannedPlugin(NamedTuple):
    """One entry point of the `runbook` group and what its plugin provided when loaded."""

    name: str
    value: str
    """`module` or `module:attribute`, as in the entry point."""
    distribution: str
    version: str
    hooks: tuple[str, ...] = ()
    """Names of the hooks the plugin implements."""
    executors: tuple[str, ...] = ()
    transports: tuple[str, ...] = ()
    loaded: bool = True
    """False for a plugin that failed to load or to list its executors: tried on every start."""


class Environment(NamedTuple):
    """Where plugins come from now: names the cache file and decides whether it still holds."""

    key: str
    """The Python, runbook version and the `sys.path` entries holding distributions."""
    digest: str
    """Every distribution's metadata directory and the stat of its `entry_points.txt`."""

    @property
    def filename(self) -> str:
        return f"plugins-{self.key[:20]}.json"


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """`$RUNBOOK_CACHE_DIR`, else `$XDG_CACHE_HOME/runbook`, else `~/.cache/runbook`."""
    env = os.environ if environ is None else environ
    if env.get("RUNBOOK_CACHE_DIR"):
        return Path(env["RUNBOOK_CACHE_DIR"])
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "runbook"


def current_environment() -> Environment | None:
    """The environment as `importlib.metadata` would see it now; None if it cannot tell.

    Mirrors `importlib.metadata`'s own search (each `sys.path` entry's
    `*.dist-info`/`*.egg-info` children, an `.egg`'s `EGG-INFO`, a zip archive
    as a whole) with one `listdir` per entry and one `stat` per distribution. A
    distribution finder other than the standard one on `sys.meta_path` could
    find distributions this cannot see, so then there is no cache.
    """
    from importlib.machinery import PathFinder

    for finder in sys.meta_path:
        if finder is not PathFinder and hasattr(finder, "find_distributions"):
            return None
    from runbook import __version__

    roots: list[str] = []
    digest = hashlib.sha256()
    for entry in dict.fromkeys(sys.path):
        root = os.path.abspath(entry or ".")
        try:
            children = os.listdir(root)
        except OSError:
            try:  # a zip archive on sys.path: any change to it is a change
                st = os.stat(root)
            except OSError:
                continue
            roots.append(root)
            digest.update(f"{root}\0{st.st_mtime_ns}\0{st.st_size}\0{st.st_ino}\n".encode())
            continue
        egg = os.path.basename(root).lower().endswith(".egg")
        found = sorted(
            child
            for child in children
            if child.lower().endswith(_METADATA_SUFFIXES) or (egg and child.lower() == "egg-info")
        )
        if found:
            roots.append(root)
        for child in found:
            stamp = _stamp(os.path.join(root, child, "entry_points.txt"))
            digest.update(f"{root}\0{child}\0{stamp}\n".encode())
    key = json.dumps([FORMAT, __version__, sys.implementation.cache_tag, roots])
    return Environment(hashlib.sha256(key.encode()).hexdigest(), digest.hexdigest())


def _stamp(path: str) -> str:
    """mtime, size and inode of a file, or '-' if there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return "-"
    return f"{st.st_mtime_ns}:{st.st_size}:{st.st_ino}"


def load(env: Environment, directory: Path | None = None) -> list[ScannedPlugin] | None:
    """The plugins saved for `env`, or None when there is no usable, current answer."""
    path = (directory or cache_dir()) / env.filename
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if hasattr(os, "getuid") and (st.st_uid != os.getuid() or st.st_mode & 0o022):
                return None  # not ours alone: someone else could choose what we import
            data = json.loads(f.read())
        if data["format"] != FORMAT or data["key"] != env.key or data["digest"] != env.digest:
            return None
        files = data["files"]
        if any(_stamp(_str(p)) != _str(stamp) for p, stamp in files):
            return None
        return [_plugin(item) for item in data["plugins"]]
    except (OSError, ValueError, KeyError, TypeError):  # missing, torn, corrupt: scan again
        return None


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return tuple(_str(item) for item in value)


def _plugin(item: Any) -> ScannedPlugin:
    if not isinstance(item, dict) or not isinstance(item["loaded"], bool):
        raise TypeError("malformed plugin entry")
    return ScannedPlugin(
        name=_str(item["name"]),
        value=_str(item["value"]),
        distribution=_str(item["distribution"]),
        version=_str(item["version"]),
        hooks=_strings(item["hooks"]),
        executors=_strings(item["executors"]),
        transports=_strings(item["transports"]),
        loaded=item["loaded"],
    )


def save(
    env: Environment,
    plugins: Sequence[ScannedPlugin],
    modules: Iterable[str],
    started_ns: int,
    directory: Path | None = None,
) -> bool:
    """Remember `plugins` for `env`, watching the source files of `modules`' top-level packages.

    `started_ns` is `time.time_ns()` before the plugins were imported: a file
    changed since (or just before) may not be what was imported, so nothing is
    saved. Returns whether the file was written; any error is swallowed (the
    cache is an optimisation: a read-only home just means scanning each time).
    """
    files = _source_files(modules)
    if files is None:
        return False
    stamps = []
    for file in files:
        try:
            st = os.stat(file)
        except OSError:
            return False
        if st.st_mtime_ns >= started_ns - RACY_NS:
            return False
        stamps.append([file, f"{st.st_mtime_ns}:{st.st_size}:{st.st_ino}"])
    data = {
        "format": FORMAT,
        "key": env.key,
        "digest": env.digest,
        "files": stamps,
        "plugins": [
            {
                "name": p.name,
                "value": p.value,
                "distribution": p.distribution,
                "version": p.version,
                "hooks": list(p.hooks),
                "executors": list(p.executors),
                "transports": list(p.transports),
                "loaded": p.loaded,
            }
            for p in plugins
        ],
    }
    target = (directory or cache_dir()) / env.filename
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_atomically(target, json.dumps(data, separators=(",", ":")).encode())
        _prune(target.parent)
    except OSError:
        return False
    return True


def _write_atomically(target: Path, body: bytes) -> None:
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _prune(directory: Path) -> None:
    """Keep the KEEP most recently written cache files (each plugin path has its own), and
    drop temporary files a crashed writer left behind (an hour old: no writer takes that)."""
    found = []
    for path in directory.glob("plugins-*.json"):
        try:
            found.append((path.stat().st_mtime_ns, path))
        except OSError:
            continue
    for _, path in sorted(found, reverse=True)[KEEP:]:
        path.unlink(missing_ok=True)
    for path in directory.glob(".plugins-*.json.*"):
        try:
            if path.stat().st_mtime < time.time() - 3600:
                path.unlink()
        except OSError:
            continue


def _source_files(modules: Iterable[str]) -> list[str] | None:
    """Every `.py` file of the top-level packages of `modules` (imported), or None if too many."""
    files: set[str] = set()
    for top in sorted({name.partition(".")[0] for name in modules}):
        module = sys.modules.get(top)
        if module is None:
            continue
        locations = list(getattr(module, "__path__", None) or [])
        if not locations:
            file = getattr(module, "__file__", None)
            if file:
                files.add(os.path.abspath(file))
            continue
        for location in locations:
            files.update(_python_files(location))
            if len(files) > MAX_FILES:
                return None
    return sorted(files)


def _python_files(root: str) -> Iterator[str]:
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = [d for d in subdirs if d != "__pycache__" and not d.startswith(".")]
        for name in names:
            if name.endswith(".py"):
                yield os.path.abspath(os.path.join(directory, name))
