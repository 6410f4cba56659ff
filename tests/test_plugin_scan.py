"""The remembered plugin scan: a start-up imports only the plugins it uses, and is never wrong.

Each test points `RUNBOOK_CACHE_DIR` at its own directory and runs the real CLI (or
Python) in a subprocess, which reports what it imported. Plugin files written by a test
are dated a minute back: a file changed within two seconds of a scan may have changed
during it, so that scan is not saved (see `plugin_scan.save`).
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support.helpers import make_plugin_dist

from runbook import plugin_scan

HEAD = """\
apiVersion: runbook/v1
kind: Runbook
metadata: {name: scan, title: Scan, severity: P3}
steps:
"""
SHELL_ONLY = HEAD + "  - {id: a, phase: detect, check: {shell: {argv: ['true']}}}\n"
BUILT_INS = {
    "runbook_plugins.aws_rds",
    "runbook_plugins.http",
    "runbook_plugins.journald",
    "runbook_plugins.kubernetes",
    "runbook_plugins.manual",
    "runbook_plugins.notify",
    "runbook_plugins.postgres",
    "runbook_plugins.prometheus",
    "runbook_plugins.shell",
    "runbook_plugins.ssh",
    "runbook_plugins.systemd",
}
"""Built-in plugin modules providing executors or transports (observers and reports aside)."""

PROBE = """
import json, sys
import runbook.cli.main
rc = runbook.cli.main.main(sys.argv[1:])
print(json.dumps({
    "rc": rc,
    "scanned": "importlib.metadata" in sys.modules,
    "modules": sorted(m for m in sys.modules if m.split(".")[0] in (%s,)),
}))
"""


def executor_plugin(name: str, schema: str = '{"type": "object"}') -> str:
    return textwrap.dedent(
        f"""
        from runbook import ExecutorSpec, PlannedCall, StepResult, hookimpl

        @hookimpl
        def runbook_executors():
            return [ExecutorSpec(name={name!r}, schema={schema},
                    plan=lambda c, x: PlannedCall("noop", {{}}),
                    run=lambda c, x: StepResult(ok=True))]
        """
    )


def backdate(root: Path, pattern: str = "*") -> None:
    """Date the files under `root` a minute back (see the module docstring)."""
    past = time.time() - 60
    for path in root.rglob(pattern):
        os.utime(path, (past, past))


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def probe(tmp_path: Path, cli_env: dict[str, str], cache: Path) -> Callable[..., dict[str, object]]:
    """Run the CLI in-process in a fresh Python; what it returned and imported."""

    def run(*args: str, site: Path | None = None, packages: str = "'runbook_plugins'") -> dict:
        env = {**cli_env, "RUNBOOK_CACHE_DIR": str(cache)}
        if site is not None:
            env["PYTHONPATH"] = str(site)
        proc = subprocess.run(
            [sys.executable, "-c", PROBE % packages, *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
        result["err"] = proc.stderr
        return result

    return run


def warm(probe: Callable[..., dict], cache: Path, *args: str, **kw: object) -> dict:
    """Run until a run found the scan saved (another process may be editing plugins here)."""
    for _ in range(5):
        result = probe(*args, **kw)
        if not result["scanned"] and list(cache.glob("plugins-*.json")):
            return result
        time.sleep(1)
    pytest.fail("the plugin scan was never saved")


def cache_file(cache: Path) -> Path:
    [path] = cache.glob("plugins-*.json")
    return path


def scanned(cache: Path) -> dict[str, dict]:
    """The saved scan: entry-point name -> what it records."""
    data = json.loads(cache_file(cache).read_text())
    return {p["name"]: p for p in data["plugins"]}


# -- only what a runbook names is imported ------------------------------------------------
def test_validating_a_runbook_imports_only_the_plugins_it_names(probe, cache, write_runbook):
    rb = write_runbook(SHELL_ONLY)
    cold = probe("validate", str(rb))
    assert cold["rc"] == 0 and cold["scanned"]
    result = warm(probe, cache, "validate", str(rb))
    assert result["rc"] == 0
    assert set(result["modules"]) & BUILT_INS == {"runbook_plugins.shell"}
    assert "jsonschema" not in probe("validate", str(rb), packages="'jsonschema'")["modules"]


def test_a_one_step_run_imports_its_executor_and_transport_only(probe, cache, write_runbook):
    rb = write_runbook(SHELL_ONLY)
    result = warm(probe, cache, "run", str(rb), packages="'runbook_plugins', 'paramiko', 'jinja2'")
    assert result["rc"] == 0, result["err"]
    imported = set(result["modules"])
    assert imported & BUILT_INS == {"runbook_plugins.shell"}
    assert "runbook_plugins.local" in imported  # the shell step's transport
    assert "runbook_plugins.notify_observer" in imported  # observers hear every step
    assert not {"paramiko", "jinja2"} & imported


def test_listing_plugins_still_lists_every_plugin(run_cli, cache, probe, write_runbook):
    warm(probe, cache, "validate", str(write_runbook(SHELL_ONLY)))
    listing = run_cli("plugins", env={"RUNBOOK_CACHE_DIR": str(cache)})
    assert listing.code == 0
    names = {line.split()[0] for line in listing.out.splitlines()[1:] if line.strip()}
    assert {"shell", "http", "kubernetes", "aws_rds", "postgres", "manual", "notify"} <= names


def test_an_unknown_executor_is_explained_from_every_plugin(run_cli, cache, probe, write_runbook):
    warm(probe, cache, "validate", str(write_runbook(SHELL_ONLY)))
    rb = write_runbook(HEAD + "  - {id: a, phase: detect, check: {htp: {url: x}}}\n", "typo.yaml")
    result = run_cli("validate", str(rb), env={"RUNBOOK_CACHE_DIR": str(cache)})
    assert result.code == 2
    assert "typo.yaml:5:" in result.err and "did you mean 'http'?" in result.err
    assert "kubernetes" in result.err and "shell" in result.err  # every installed executor


# -- what invalidates the scan --------------------------------------------------------------
def test_a_plugin_installed_later_is_found(probe, cache, write_runbook, tmp_path):
    site = make_plugin_dist(
        tmp_path / "site", "runbook-alpha", "runbook_alpha", executor_plugin("alpha")
    )
    backdate(site)
    alpha = write_runbook(HEAD + "  - {id: a, phase: detect, check: {alpha: {}}}\n", "alpha.yaml")
    beta = write_runbook(HEAD + "  - {id: b, phase: detect, check: {beta: {}}}\n", "beta.yaml")
    assert warm(probe, cache, "validate", str(alpha), site=site)["rc"] == 0
    assert "beta" not in json.dumps(scanned(cache))

    make_plugin_dist(site, "runbook-beta", "runbook_beta", executor_plugin("beta"))
    backdate(site, "runbook_beta*")  # alpha's files untouched: only the metadata tells
    result = probe("validate", str(beta), site=site)
    assert result["rc"] == 0 and result["scanned"], result["err"]
    assert scanned(cache)["runbook_beta"]["executors"] == ["beta"]
    again = probe("validate", str(beta), site=site)
    assert again["rc"] == 0 and not again["scanned"]


def test_an_uninstalled_plugin_is_gone(probe, cache, write_runbook, tmp_path):
    site = make_plugin_dist(
        tmp_path / "site", "runbook-alpha", "runbook_alpha", executor_plugin("alpha")
    )
    make_plugin_dist(site, "runbook-beta", "runbook_beta", executor_plugin("beta"))
    backdate(site)
    beta = write_runbook(HEAD + "  - {id: b, phase: detect, check: {beta: {}}}\n", "beta.yaml")
    assert warm(probe, cache, "validate", str(beta), site=site)["rc"] == 0
    shutil.rmtree(site / "runbook_beta-1.0.dist-info")
    (site / "runbook_beta.py").unlink()
    result = probe("validate", str(beta), site=site)
    assert result["rc"] == 2 and "unknown executor 'beta'" in str(result["err"])


def test_a_plugin_edited_to_provide_another_executor_is_rescanned(
    probe, cache, write_runbook, tmp_path
):
    site = make_plugin_dist(
        tmp_path / "site", "runbook-alpha", "runbook_alpha", executor_plugin("alpha")
    )
    backdate(site)
    alpha = write_runbook(HEAD + "  - {id: a, phase: detect, check: {alpha: {}}}\n", "alpha.yaml")
    gamma = write_runbook(HEAD + "  - {id: g, phase: detect, check: {gamma: {}}}\n", "gamma.yaml")
    assert warm(probe, cache, "validate", str(alpha), site=site)["rc"] == 0
    (site / "runbook_alpha.py").write_text(executor_plugin("gamma"))  # an editable install
    assert probe("validate", str(gamma), site=site)["rc"] == 0
    result = probe("validate", str(alpha), site=site)
    assert result["rc"] == 2 and "unknown executor 'alpha'" in str(result["err"])


def test_a_plugin_edited_to_observe_runs_is_heard(probe, cache, write_runbook, tmp_path):
    """Nothing would import a plugin the scan says neither runs steps nor observes them."""
    site = make_plugin_dist(
        tmp_path / "site", "runbook-alpha", "runbook_alpha", executor_plugin("alpha")
    )
    backdate(site)
    rb = write_runbook(SHELL_ONLY)
    assert warm(probe, cache, "run", str(rb), site=site)["rc"] == 0
    heard = tmp_path / "heard.txt"
    observer = f"""
        @hookimpl
        def runbook_step_finished(event):
            with open({str(heard)!r}, "a") as f:
                f.write(event.step_id + "\\n")
    """
    module = site / "runbook_alpha.py"
    module.write_text(executor_plugin("alpha") + textwrap.dedent(observer))
    assert probe("run", str(rb), site=site)["rc"] == 0
    assert heard.read_text() == "a\n"


def test_an_executor_schema_edited_in_place_is_what_validates(
    probe, cache, write_runbook, tmp_path
):
    """Schemas are never cached: even an edit the scan cannot see (same size and mtime)."""
    loose = '{"type": "object", "properties": {"n": {"type": "string"}}}'
    strict = loose.replace('"string"', '"number"')
    site = make_plugin_dist(
        tmp_path / "site", "runbook-alpha", "runbook_alpha", executor_plugin("alpha", loose)
    )
    backdate(site)
    rb = write_runbook(HEAD + "  - {id: a, phase: detect, check: {alpha: {n: text}}}\n")
    assert warm(probe, cache, "validate", str(rb), site=site)["rc"] == 0
    module = site / "runbook_alpha.py"
    before = module.stat()
    module.write_text(executor_plugin("alpha", strict))
    os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert module.stat().st_size == before.st_size
    result = probe("validate", str(rb), site=site)
    assert not result["scanned"]  # the edit is invisible to the scan
    assert result["rc"] == 2
    assert "rb.yaml:5:" in str(result["err"]) and "is not of type 'number'" in str(result["err"])


@pytest.mark.parametrize(
    "damage",
    [
        b"",
        b"{not json",
        b'{"format": 1}',
        b'{"format": 1, "key": 1, "digest": [], "files": {}, "plugins": "x"}',
        b"\xff\xfe garbage",
    ],
    ids=["empty", "torn", "no-fields", "wrong-types", "binary"],
)
def test_a_corrupt_cache_file_is_ignored_and_rebuilt(probe, cache, write_runbook, damage):
    rb = write_runbook(SHELL_ONLY)
    warm(probe, cache, "validate", str(rb))
    cache_file(cache).write_bytes(damage)
    result = probe("validate", str(rb))
    assert result["rc"] == 0 and result["scanned"]
    assert scanned(cache)["shell"]["executors"] == ["shell"]


def test_a_scan_that_says_the_wrong_plugin_provides_an_executor_is_corrected(
    probe, cache, write_runbook
):
    rb = write_runbook(SHELL_ONLY)
    warm(probe, cache, "validate", str(rb))
    path = cache_file(cache)
    data = json.loads(path.read_text())
    for plugin in data["plugins"]:
        if plugin["name"] in ("shell", "manual"):  # swap what they provide
            plugin["executors"] = ["manual"] if plugin["name"] == "shell" else ["shell"]
    path.write_text(json.dumps(data))
    os.chmod(path, 0o600)
    result = probe("validate", str(rb))
    assert result["rc"] == 0, result["err"]
    assert scanned(cache)["shell"]["executors"] == ["shell"]  # saved again, true this time


def test_a_scan_naming_an_executor_nobody_provides_is_not_believed(probe, cache, write_runbook):
    rb = write_runbook(SHELL_ONLY)
    warm(probe, cache, "validate", str(rb))
    path = cache_file(cache)
    data = json.loads(path.read_text())
    next(p for p in data["plugins"] if p["name"] == "shell")["executors"].append("ghost")
    path.write_text(json.dumps(data))
    ghost = write_runbook(HEAD + "  - {id: g, phase: detect, check: {ghost: {}}}\n", "ghost.yaml")
    result = probe("validate", str(ghost))
    assert result["rc"] == 2 and "unknown executor 'ghost'" in str(result["err"])


def test_a_cache_file_others_can_write_is_not_trusted(probe, cache, write_runbook):
    rb = write_runbook(SHELL_ONLY)
    warm(probe, cache, "validate", str(rb))
    path = cache_file(cache)
    path.chmod(0o666)
    result = probe("validate", str(rb))
    assert result["rc"] == 0 and result["scanned"]
    assert path.stat().st_mode & 0o777 == 0o600  # replaced by one of ours


def test_a_broken_plugin_is_tried_on_every_start_and_works_once_fixed(
    run_cli, probe, cache, write_runbook, tmp_path
):
    site = make_plugin_dist(
        tmp_path / "site", "runbook-alpha", "runbook_alpha", "raise ImportError('needs libfoo')\n"
    )
    backdate(site)
    env = {"RUNBOOK_CACHE_DIR": str(cache), "PYTHONPATH": str(site)}
    warm(probe, cache, "plugins", site=site)
    for _ in range(2):
        listing = run_cli("plugins", env=env)
        assert listing.code == 0 and "needs libfoo" in listing.out
    assert scanned(cache)["runbook_alpha"]["loaded"] is False
    (site / "runbook_alpha.py").write_text(executor_plugin("alpha"))
    rb = write_runbook(HEAD + "  - {id: a, phase: detect, check: {alpha: {}}}\n")
    assert probe("validate", str(rb), site=site)["rc"] == 0


def test_concurrent_first_runs_all_succeed_and_leave_one_whole_file(
    cli_env, cache, write_runbook, tmp_path
):
    rb = write_runbook(SHELL_ONLY)
    env = {**cli_env, "RUNBOOK_CACHE_DIR": str(cache)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "runbook", "validate", str(rb)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(6)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    if cache.exists():  # nothing is saved while another process edits the plugins here
        assert [p.name for p in cache.iterdir()] == [cache_file(cache).name]  # no temporaries
        assert scanned(cache)["shell"]["executors"] == ["shell"]


# -- the environment fingerprint, in-process ------------------------------------------------
def test_the_environment_changes_when_a_distribution_comes_or_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    before = plugin_scan.current_environment()
    info = tmp_path / "thing-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: thing\nVersion: 1.0\n")
    added = plugin_scan.current_environment()
    (info / "entry_points.txt").write_text("[runbook]\nthing = thing\n")
    with_entry_points = plugin_scan.current_environment()
    (info / "entry_points.txt").write_text("[runbook]\nthing = thing_two\n")
    edited = plugin_scan.current_environment()
    assert before and added and with_entry_points and edited
    assert before.key != added.key  # a new directory holding distributions
    assert len({added.digest, with_entry_points.digest, edited.digest}) == 3
    assert added.key == edited.key


def test_a_scan_is_not_saved_when_a_plugin_file_changed_during_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "scan_probe_plugin.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("scan_probe_plugin")
    modified = (tmp_path / "scan_probe_plugin.py").stat().st_mtime_ns
    env = plugin_scan.Environment("k" * 64, "d" * 64)
    plugin = plugin_scan.ScannedPlugin("p", "scan_probe_plugin", "dist", "1")
    cache = tmp_path / "cache"
    assert plugin_scan.save(env, [plugin], ["scan_probe_plugin"], modified, cache) is False
    assert not cache.exists()
    later = modified + 10 * plugin_scan.RACY_NS  # the scan started well after the edit
    assert plugin_scan.save(env, [plugin], ["scan_probe_plugin"], later, cache) is True
    assert plugin_scan.load(env, cache) == [plugin]
    (tmp_path / "scan_probe_plugin.py").write_text("X = 22\n")  # edited since: not current
    assert plugin_scan.load(env, cache) is None


def test_the_cache_keeps_a_bounded_number_of_files(tmp_path: Path) -> None:
    """One file per Python environment and plugin path; a crashed writer's leftovers go."""
    plugin = plugin_scan.ScannedPlugin("p", "p", "dist", "1")
    leftover = tmp_path / ".plugins-x.json.123.abcd"
    tmp_path.mkdir(exist_ok=True)
    leftover.write_text("{")
    os.utime(leftover, (time.time() - 7200, time.time() - 7200))
    for i in range(plugin_scan.KEEP + 5):
        env = plugin_scan.Environment(f"{i:02d}" + "k" * 62, "d" * 64)
        assert plugin_scan.save(env, [plugin], [], time.time_ns(), tmp_path)
    assert len(list(tmp_path.glob("plugins-*.json"))) == plugin_scan.KEEP
    assert not leftover.exists()
    newest = plugin_scan.Environment(f"{plugin_scan.KEEP + 4:02d}" + "k" * 62, "d" * 64)
    assert plugin_scan.load(newest, tmp_path) == [plugin]


def test_the_cache_directory_follows_xdg_and_can_be_overridden() -> None:
    assert plugin_scan.cache_dir({"RUNBOOK_CACHE_DIR": "/x"}) == Path("/x")
    assert plugin_scan.cache_dir({"XDG_CACHE_HOME": "/c"}) == Path("/c/runbook")
    assert plugin_scan.cache_dir({}) == Path.home() / ".cache" / "runbook"


def test_a_warm_start_answers_what_a_cold_one_does(tmp_path: Path) -> None:
    """Every executor and transport with its plugin, and the log header's versions."""
    code = """if True:
        import json
        from runbook.registry import PluginRegistry
        r = PluginRegistry.from_entry_points()
        print(json.dumps({
            "scanned": __import__("sys").modules.get("importlib.metadata") is not None,
            "executors": {n: [e.plugin.name, e.spec.read_only] for n, e in r.executors().items()},
            "transports": sorted(r.transports()),
            "versions": r.versions(),
            "failures": [f.name for f in r.failures],
        }))
    """
    env = {**os.environ, "RUNBOOK_CACHE_DIR": str(tmp_path / "cache")}
    answers = []
    for _ in range(6):
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        answers.append(json.loads(proc.stdout))
        if len({a["scanned"] for a in answers}) == 2:
            break
        time.sleep(1)
    cold = next(a for a in answers if a["scanned"])
    warm_ = next((a for a in answers if not a["scanned"]), None)
    assert warm_ is not None, "the plugin scan was never saved"
    del cold["scanned"], warm_["scanned"]
    assert warm_ == cold
    assert {"shell", "http"} <= set(cold["executors"]) and {"local", "ssh"} <= set(
        cold["transports"]
    )
