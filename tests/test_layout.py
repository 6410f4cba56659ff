"""The package's seams stay honest: no module reaches into another module's private names.

A name another module needs is public (no underscore, a docstring) and imported from the
module that defines it; a façade re-exporting private names, or a helper module whose
"private" functions are borrowed by its neighbours, is the smell this guards against.
Scanned with `ast`, so nothing is imported and the rule holds for lazy imports too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# source directory -> the import package it is installed as
PACKAGES = {"runbook": "runbook", "plugins": "runbook_plugins"}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _module_name(path: Path, root: Path, package: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


def _absolute(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    """The module an ImportFrom reads from, with relative imports resolved."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _first_party(module: str, packages: set[str]) -> bool:
    return module.split(".")[0] in packages


def private_imports(root: Path, package: str, packages: set[str]) -> list[str]:
    """`file:line: ...` for every private name of a first-party module used by another one.

    Catches `from m import _x` (also as a re-export `_x as _x`) and `m._x` where `m`
    was bound by `import a.m as m` or `from a import m` (a submodule).
    """
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        importer = _module_name(path, root, package)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        modules: dict[str, str] = {}  # local name -> first-party module it is bound to
        where = path.relative_to(root.parent)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                source = _absolute(node, importer, path.name == "__init__.py")
                if not _first_party(source, packages) or source == importer:
                    continue
                for alias in node.names:
                    if _is_private(alias.name):
                        found.append(f"{where}:{node.lineno}: imports {alias.name} from {source}")
                    if _is_module(root, package, f"{source}.{alias.name}"):
                        modules[alias.asname or alias.name] = f"{source}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if _first_party(alias.name, packages) and alias.asname:
                        modules[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and _is_private(node.attr)
                and isinstance(node.value, ast.Name)
                and node.value.id in modules
                and modules[node.value.id] != importer
            ):
                found.append(f"{where}:{node.lineno}: uses {node.attr} of {modules[node.value.id]}")
    return found


def _is_module(root: Path, package: str, dotted: str) -> bool:
    """Whether `dotted` names a module or package of the tree at `root` (when it is ours)."""
    head, *rest = dotted.split(".")
    if head != package:
        return False
    target = root.joinpath(*rest)
    return target.with_suffix(".py").is_file() or (target / "__init__.py").is_file()


@pytest.mark.parametrize("directory", sorted(PACKAGES))
def test_no_module_imports_another_modules_private_names(directory: str) -> None:
    found = private_imports(ROOT / directory, PACKAGES[directory], set(PACKAGES.values()))
    assert not found, (
        "a name another module uses is public: drop the underscore, give it a docstring, "
        "and import it from the module that defines it:\n  " + "\n  ".join(found)
    )


def test_the_layout_check_sees_every_form_of_private_import(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from ._inner import _hidden\n")
    (package / "sub" / "_inner.py").write_text("_hidden = 1\n_ok = 2\nprint(_ok)\n")
    (package / "helpers.py").write_text("_secret = 1\n\n\ndef public() -> None: ...\n")
    (package / "user.py").write_text(
        "from pkg.helpers import _secret as _secret, public\n"
        "import pkg.helpers as h\n"
        "from pkg import helpers\n"
        "from pkg.sub import _inner\n"
        "\n\ndef f() -> None:\n"
        "    from .helpers import _secret\n"
        "    print(h._secret, helpers._secret, _inner._ok, public, _secret)\n"
    )
    (package / "fine.py").write_text(
        "from os import _exit\nfrom pkg.helpers import public\nfrom pkg import __doc__\n"
        "import pkg.helpers\n_local = 1\nprint(_exit, public, _local, __doc__)\n"
    )
    found = private_imports(package, "pkg", {"pkg"})
    assert [line.split(": ", 1)[1] for line in found] == [
        "imports _hidden from pkg.sub._inner",
        "imports _secret from pkg.helpers",
        "imports _inner from pkg.sub",
        "imports _secret from pkg.helpers",
        "uses _secret of pkg.helpers",
        "uses _secret of pkg.helpers",
        "uses _ok of pkg.sub._inner",
    ]
