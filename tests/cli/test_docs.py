"""The documentation builds, links resolve, and the executors reference matches the code.

docs/executors.md is generated from the installed executors (`runbook.cli.docgen`);
these tests fail when it is stale, when an executor or one of its config keys
has no description, when `mkdocs build --strict` warns, or when a relative
link in docs/ or README.md points at nothing.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator
from support.cli import ROOT, RunCli

from runbook.cli import docgen
from runbook.registry import PluginRegistry

DOCS = ROOT / "docs"
EXECUTORS_MD = DOCS / "executors.md"


@pytest.fixture(scope="module")
def executors() -> dict[str, docgen.ExecutorEntry]:
    return dict(PluginRegistry.from_entry_points().executors())


def test_executors_reference_is_up_to_date(executors: dict[str, docgen.ExecutorEntry]) -> None:
    expected = docgen.render(executors)
    current = EXECUTORS_MD.read_text(encoding="utf-8") if EXECUTORS_MD.exists() else ""
    assert current == expected, (
        f"docs/executors.md is out of date with the installed executors; regenerate it with:\n"
        f"    {docgen.COMMAND}"
    )


def test_docgen_check_flag_reports_the_regenerate_command(tmp_path: Path) -> None:
    stale = tmp_path / "executors.md"
    stale.write_text("# old\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "runbook.cli.docgen", "--check", str(stale)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert docgen.COMMAND in proc.stderr


def test_every_executor_has_a_section(executors: dict[str, docgen.ExecutorEntry]) -> None:
    text = EXECUTORS_MD.read_text(encoding="utf-8")
    missing = [name for name in executors if f"\n## `{name}`\n" not in text]
    assert not missing, f"executors without a section in docs/executors.md: {missing}"


def test_every_executor_documents_itself_and_every_config_key(
    executors: dict[str, docgen.ExecutorEntry],
) -> None:
    problems = [p for entry in executors.values() for p in docgen.missing_docs(entry)]
    assert not problems, "undocumented executors or config keys:\n" + "\n".join(problems)


def test_missing_docs_names_an_undocumented_key(
    executors: dict[str, docgen.ExecutorEntry],
) -> None:
    from dataclasses import replace

    entry = executors["shell"]
    schema = {"type": "object", "properties": {"argv": {"type": "array"}}}
    bare = replace(entry, spec=replace(entry.spec, schema=schema, description=""))
    assert docgen.missing_docs(bare) == [
        "shell: no description in its ExecutorSpec",
        "shell: config key 'argv' has no description in its schema",
    ]


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs not installed")
def test_mkdocs_build_strict_succeeds_offline(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-f",
            str(ROOT / "mkdocs.yml"),
            "-d",
            str(tmp_path / "site"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "site" / "executors" / "index.html").exists()


def test_every_docs_page_is_in_the_mkdocs_nav() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))

    def pages(node: object) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, dict):
            return [p for v in node.values() for p in pages(v)]
        if isinstance(node, list):
            return [p for v in node for p in pages(v)]
        return []

    in_nav = set(pages(config["nav"]))
    on_disk = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert not on_disk - in_nav, f"add these pages to the nav in mkdocs.yml: {on_disk - in_nav}"


_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def relative_links(path: Path) -> list[str]:
    text = _CODE.sub("", _FENCE.sub("", path.read_text(encoding="utf-8")))
    links = (m.group(1) for m in _LINK.finditer(text))
    return [link for link in links if not re.match(r"^([a-z][a-z0-9+.-]*:|#)", link)]


def test_every_relative_link_points_to_an_existing_file() -> None:
    broken = []
    for page in [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]:
        for link in relative_links(page):
            target = (page.parent / link.split("#", 1)[0]).resolve()
            if not target.exists():
                broken.append(f"{page.relative_to(ROOT)}: {link}")
    assert not broken, "broken relative links:\n" + "\n".join(broken)


def test_link_checker_sees_links_but_not_code() -> None:
    page = DOCS / "index.md"
    assert "getting-started.md" in relative_links(page)


def test_runbook_schema_is_a_valid_draft_2020_12_schema(run_cli: RunCli) -> None:
    result = run_cli("schema")
    assert result.code == 0, result.text
    schema = json.loads(result.out)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    # What an editor gets must accept the shipped library as it is.
    validator = Draft202012Validator(schema)
    for path in sorted((ROOT / "runbooks").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        errors = [e.message for e in validator.iter_errors(doc)]
        assert not errors, f"{path.name}: {errors[:3]}"


def test_each_executor_schema_is_a_valid_draft_2020_12_schema(
    run_cli: RunCli, executors: dict[str, docgen.ExecutorEntry]
) -> None:
    for name in executors:
        result = run_cli("schema", "--executor", name)
        assert result.code == 0, result.text
        Draft202012Validator.check_schema(json.loads(result.out))


_VALIDATE = re.compile(r"^<!-- validate -->\n+```yaml\n(.*?)^```", re.M | re.S)


def test_runbooks_shown_in_docs_pass_validate_strict(run_cli: RunCli, tmp_path: Path) -> None:
    blocks = [
        (page, text)
        for page in sorted(DOCS.rglob("*.md"))
        for text in _VALIDATE.findall(page.read_text(encoding="utf-8"))
    ]
    assert blocks, "no <!-- validate --> runbook found in docs/"
    for number, (page, text) in enumerate(blocks):
        path = tmp_path / f"doc-{number}.yaml"
        path.write_text(text, encoding="utf-8")
        result = run_cli("validate", "--strict", str(path))
        assert result.code == 0, f"{page.relative_to(ROOT)}: {result.text}"


def test_pre_commit_hook_validates_runbooks_but_not_scenario_files() -> None:
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    assert hook["id"] == "runbook-validate"
    assert hook["entry"] == "runbook validate --strict"
    files = re.compile(hook["files"])
    shipped = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "runbooks").glob("*.yaml"))
    assert shipped and all(files.search(p) for p in shipped)
    assert not files.search("runbooks/scenarios/service-outage.yaml")


def test_library_excerpts_in_docs_cite_steps_that_exist() -> None:
    cited = re.findall(
        r"<!-- library: ([a-z0-9-]+)#([a-z0-9_-]+) -->",
        "".join(p.read_text(encoding="utf-8") for p in sorted(DOCS.rglob("*.md"))),
    )
    assert cited
    for name, step in cited:
        doc = yaml.safe_load((ROOT / "runbooks" / f"{name}.yaml").read_text(encoding="utf-8"))
        ids = [s["id"] for s in doc["steps"]]
        assert step in ids, f"docs cite step '{step}' of runbooks/{name}.yaml; it has {ids}"


# docs/architecture.md: one `### `runbook/NAME/`` section per package, each module of the
# package named at the start of a bullet in its section; top-level modules as `NAME.py`.
ARCHITECTURE_MD = DOCS / "architecture.md"
PACKAGE = ROOT / "runbook"
_SECTION = re.compile(r"^#{2,3} ([^\n]+)\n(.*?)(?=^#{2,3} |\Z)", re.M | re.S)
_PACKAGE_HEADING = re.compile(r"`runbook/([a-z_]+)/`")
_BULLET_MODULE = re.compile(r"^- `([a-z_]+)`", re.M)


def architecture_sections() -> dict[str, str]:
    text = _FENCE.sub("", ARCHITECTURE_MD.read_text(encoding="utf-8"))
    return {m.group(1).strip(): m.group(2) for m in _SECTION.finditer(text)}


def described_packages() -> dict[str, str]:
    """Package name -> its section, for every `### `runbook/NAME/`` heading."""
    packages: dict[str, str] = {}
    for heading, body in architecture_sections().items():
        m = _PACKAGE_HEADING.fullmatch(heading)
        if m:
            packages[m.group(1)] = body
    return packages


def test_architecture_page_describes_every_package_and_only_real_ones() -> None:
    on_page = set(described_packages())
    in_tree = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert on_page, "docs/architecture.md has no ### `runbook/NAME/` sections"
    assert not on_page - in_tree, (
        f"docs/architecture.md describes packages that do not exist: {sorted(on_page - in_tree)}"
    )
    assert not in_tree - on_page, (
        f"packages under runbook/ missing from docs/architecture.md: {sorted(in_tree - on_page)}"
    )


def test_architecture_page_lists_exactly_the_modules_of_each_package() -> None:
    problems = []
    for name, body in described_packages().items():
        listed = set(_BULLET_MODULE.findall(body))
        modules = {p.stem for p in (PACKAGE / name).glob("*.py") if p.stem != "__init__"}
        if listed - modules:
            problems.append(f"runbook/{name}/: no such modules {sorted(listed - modules)}")
        if modules - listed:
            problems.append(f"runbook/{name}/: modules not listed {sorted(modules - listed)}")
    assert not problems, "docs/architecture.md and the tree disagree:\n" + "\n".join(problems)


def test_architecture_page_names_exactly_the_top_level_modules() -> None:
    (body,) = [b for h, b in architecture_sections().items() if h.startswith("Modules at the top")]
    named = set(re.findall(r"`([a-z_]+)\.py`", body))
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert named == modules, (
        f"docs/architecture.md names {sorted(named - modules)} that do not exist and misses "
        f"{sorted(modules - named)}"
    )


def test_architecture_page_names_every_hook() -> None:
    from runbook import hookspecs

    hooks = {name for name in vars(hookspecs) if name.startswith("runbook_")}
    text = ARCHITECTURE_MD.read_text(encoding="utf-8")
    missing = sorted(h for h in hooks if f"`{h}`" not in text)
    assert hooks and not missing, f"hooks missing from docs/architecture.md: {missing}"
