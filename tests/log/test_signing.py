"""Signed, anchored incident logs and the operator's real identity, through the real CLI.

The forger here is the one from the evidence issue: a short script that turns a failed
step into a passed one and recomputes every hash. The chain alone cannot see it; a
signature (`--key`) and the final hash the run printed (`--expect`) must, each on its
own line of `runbook log verify`, naming the seq where they can.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from support.cli import RunCli
from support.helpers import logs_in

from runbook.log.journal import JournalWriter, read_log
from runbook.log.signing import load_signer
from runbook.run.secrets import Masker

RUNBOOK = """
apiVersion: runbook/v1
kind: Runbook
metadata: {name: signed, title: Signed run, severity: P2}
steps:
  - id: health
    phase: detect
    check: {shell: {argv: ["false"]}}
    on_failure: continue
  - id: flush
    phase: mitigate
    action: {shell: {argv: ["true"]}}
    confirm: {prompt: "Flush cache-0?", require: cache-0}
  - id: recovered
    phase: resolve
    check: {shell: {argv: ["true"]}}
"""

OS_USER = pwd.getpwuid(os.getuid()).pw_name
FINAL = re.compile(r"^final hash: ([0-9a-f]{64})\b", re.M)


def _keygen(path: Path) -> Path:
    """An ed25519 key made by OpenSSH's own ssh-keygen (private at `path`, public `.pub`)."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", str(path)],
        check=True,
        timeout=30,
    )
    return path


@pytest.fixture
def key(tmp_path: Path) -> Path:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen (OpenSSH) is not installed")
    return _keygen(tmp_path / "signing-key")


def _run(run_cli: RunCli, write_runbook: Any, *args: str, **env: str) -> tuple[Path, str]:
    """Run RUNBOOK answering the typed gate; (the log, the final hash the run printed)."""
    rb = write_runbook(RUNBOOK)
    result = run_cli("run", str(rb), "--answer", "flush=cache-0", *args, env=env)
    assert result.code == 0, result.text
    [log] = logs_in(rb.parent / "logs")  # run_cli's RUNBOOK_LOG_DIR
    found = FINAL.search(result.out)
    assert found, result.out
    return log, found.group(1)


def forge(log: Path, *, strip_signatures: bool = False) -> None:
    """What a motivated editor does: failed -> passed, then recompute every hash."""
    out, prev = [], "0" * 64
    for line in log.read_text().splitlines():
        record = json.loads(line)
        record.pop("sha256")
        if strip_signatures:
            record.pop("auth", None)
        data = record["data"]
        if data.get("status") == "failed":
            data["status"] = "passed"
        if record["type"] == "step.expectation":
            data["passed"] = True
        if "counts" in data:
            data["counts"] = {"passed": 3}
        record["prev"] = prev
        body = json.dumps(record, sort_keys=True, separators=(",", ":"))
        prev = hashlib.sha256(body.encode()).hexdigest()
        out.append(body[:-1] + f',"sha256":"{prev}"}}')
    log.write_text("\n".join(out) + "\n")


def _seq_of_failed_check(log: Path) -> int:
    return next(
        r["seq"]
        for r in read_log(log)
        if r["type"] == "step.expectation" and not r["data"]["passed"]
    )


def _verify(run_cli: RunCli, log: Path, *args: str) -> tuple[int, dict[str, str], str]:
    """(exit code, {part: its line}, all output) of `runbook log verify LOG ARGS`."""
    result = run_cli("log", "verify", str(log), *args)
    parts = dict(
        line.split(":", 1) for line in result.out.splitlines() if line.split(":", 1)[0] in _PARTS
    )
    return result.code, {k: v.strip() for k, v in parts.items()}, result.text


_PARTS = ("chain", "truncation", "signature", "anchor")


# -- the forger -------------------------------------------------------------------------------


def test_a_forged_signed_log_fails_its_signature_at_the_first_changed_seq(
    run_cli: RunCli, write_runbook: Any, key: Path
) -> None:
    log, _ = _run(run_cli, write_runbook, "--signing-key", str(key))
    assert run_cli("log", "verify", str(log), "--key", f"{key}.pub").code == 0
    changed = _seq_of_failed_check(log)
    # a signature vouches for a commit: the change is named by its commit's signed record
    signed = [r["seq"] for r in read_log(log) if "auth" in r]
    bad, good = min(s for s in signed if s >= changed), max(s for s in signed if s < changed)
    forge(log)
    code, parts, text = _verify(run_cli, log, "--key", f"{key}.pub")
    assert code == 5, text
    assert parts["chain"].startswith("ok"), "the forger recomputed every hash"
    assert parts["signature"].startswith(f"BAD: seq {bad}:"), parts
    assert f"last authentic record: seq {good}" in parts["signature"]
    assert f"signature: {log}: BAD: seq {bad}" in text


def test_stripping_the_forged_records_signatures_does_not_help(
    run_cli: RunCli, write_runbook: Any, key: Path
) -> None:
    log, _ = _run(run_cli, write_runbook, "--signing-key", str(key))
    forge(log, strip_signatures=True)
    code, parts, text = _verify(run_cli, log, "--key", f"{key}.pub")
    assert code == 5 and parts["signature"].startswith("BAD: seq 0"), text


def test_a_forged_log_fails_the_anchor_the_run_printed(run_cli: RunCli, write_runbook: Any) -> None:
    log, final = _run(run_cli, write_runbook)
    forge(log)
    code, parts, text = _verify(run_cli, log, "--expect", final)
    assert code == 5, text
    assert parts["chain"].startswith("ok") and parts["anchor"].startswith("MISMATCH"), parts
    assert "rewritten" in parts["anchor"]
    assert parts["signature"] == "none: integrity only, not authenticity (unsigned log)"


def test_without_key_or_anchor_a_forgery_is_only_integrity_and_says_so(
    run_cli: RunCli, write_runbook: Any
) -> None:
    log, _ = _run(run_cli, write_runbook)
    forge(log)
    code, parts, text = _verify(run_cli, log)
    assert code == 0, text
    assert "ok (integrity only, unsigned)" in text
    assert parts["signature"] == "none: integrity only, not authenticity (unsigned log)"
    assert parts["anchor"].startswith("not checked")
    report = run_cli("report", str(log), "--format", "json")
    assert json.loads(report.out)["incident"]["status"] == "passed"  # what the forger wanted


def test_a_signed_log_checked_without_key_says_the_signer_is_unchecked(
    run_cli: RunCli, write_runbook: Any, key: Path
) -> None:
    log, _ = _run(run_cli, write_runbook, RUNBOOK_SIGNING_KEY=str(key))
    code, parts, text = _verify(run_cli, log)
    assert code == 0, text
    assert "not checked against yours" in parts["signature"]
    assert "ok (integrity only: signed, signer not checked" in text


# -- anchors -------------------------------------------------------------------------------


def test_deleting_the_newest_records_is_caught_by_the_anchor(
    run_cli: RunCli, write_runbook: Any
) -> None:
    log, final = _run(run_cli, write_runbook)
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:-3]))
    code, parts, text = _verify(run_cli, log, "--expect", final)
    assert code == 5, text
    assert parts["truncation"].startswith("TRUNCATED")
    assert parts["anchor"].startswith("MISMATCH: no record has the expected hash")
    assert "newest records were deleted" in parts["anchor"]


def test_records_added_after_the_run_are_caught_by_the_anchor(
    run_cli: RunCli, write_runbook: Any, tmp_path: Path
) -> None:
    log, final = _run(run_cli, write_runbook)
    last = read_log(log)[-1]
    extra = {
        "data": {"reason": "x", "step": None, "counts": {}},
        "prev": last["sha256"],
        "seq": last["seq"] + 1,
        "ts": last["ts"],
        "type": "run.interrupted",
    }
    body = json.dumps(extra, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(body.encode()).hexdigest()
    with log.open("a") as file:
        file.write(body[:-1] + f',"sha256":"{digest}"}}\n')
    code, parts, text = _verify(run_cli, log, "--expect", final)
    assert code == 5 and parts["chain"].startswith("ok"), text
    assert parts["anchor"].startswith(f"MISMATCH: the expected final hash is seq {last['seq']}'s")


def test_the_run_prints_its_final_hash_the_last_records_sha256(
    run_cli: RunCli, write_runbook: Any
) -> None:
    log, final = _run(run_cli, write_runbook)
    assert read_log(log)[-1]["sha256"] == final
    code, parts, text = _verify(run_cli, log, "--expect", final)
    assert code == 0 and parts["anchor"].startswith("ok: the log ends at the expected hash")
    assert "anchored to the expected hash" in text


def test_the_json_final_event_carries_the_final_hash(
    run_cli: RunCli, write_runbook: Any, tmp_path: Path
) -> None:
    result = run_cli(
        "run", str(write_runbook(RUNBOOK)), "--answer", "flush=cache-0", "--format", "json"
    )
    assert result.code == 0, result.text
    events = [json.loads(line) for line in result.out.splitlines()]
    [log] = logs_in(tmp_path / "logs")
    records = read_log(log)
    assert events[-1]["event"] == "run.finished"
    assert events[-1]["sha256"] == records[-1]["sha256"]
    assert [e["sha256"] for e in events] == [r["sha256"] for r in records]


def test_a_notification_carries_the_log_head_and_it_anchors_the_log(
    run_cli: RunCli, write_runbook: Any, tmp_path: Path
) -> None:
    result = run_cli(
        "run",
        str(write_runbook(RUNBOOK)),
        "--answer",
        "flush=cache-0",
        env={"RUNBOOK_NOTIFY_STDOUT": "1"},
    )
    assert result.code == 0, result.text
    sent = [
        json.loads(line)["notification"]
        for line in result.out.splitlines()
        if line.startswith('{"notification"')
    ]
    assert sent, result.out
    [log] = logs_in(tmp_path / "logs")
    by_seq = {r["seq"]: r["sha256"] for r in read_log(log)}
    for body in sent:
        fields = body["runbook_notification"]
        assert by_seq[fields["log_seq"]] == fields["log_sha256"]
        assert f"Log head: seq {fields['log_seq']} sha256 {fields['log_sha256']}" in body["text"]
    first = sent[0]["runbook_notification"]
    head = f"{first['log_seq']}:{first['log_sha256']}"
    code, parts, text = _verify(run_cli, log, "--expect", head)
    assert code == 0 and "are not covered by it" in parts["anchor"], text
    forge(log)
    code, parts, text = _verify(run_cli, log, "--expect", head)
    assert code == 5 and parts["anchor"].startswith("MISMATCH"), text


# -- keys and truncation ----------------------------------------------------------------------


def test_a_truncated_signed_log_still_verifies_its_last_signed_head(
    run_cli: RunCli, write_runbook: Any, key: Path
) -> None:
    log, _ = _run(run_cli, write_runbook, "--signing-key", str(key))
    data = log.read_bytes()
    lines = data.splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:6]) + lines[6][:40])  # a crash mid-write
    code, parts, text = _verify(run_cli, log, "--key", f"{key}.pub")
    assert code == 5, text
    assert parts["truncation"].startswith("TRUNCATED") and "last good seq 5" in parts["truncation"]
    assert parts["signature"].startswith("ok: seq 0-5 signed by the key you gave"), parts
    assert parts["chain"].startswith("ok: seq 0-5")


def test_a_torn_write_leaves_the_write_before_it_signed(tmp_path: Path, key: Path) -> None:
    """Several records in one write (many hosts at once): only the last is signed, and a
    crash that cuts the write leaves its first records unsigned and the rest vouched for."""
    signer = load_signer(key)
    header = {"run_id": "r1", "operator": "tester"}
    with JournalWriter.create(tmp_path, "rb", "r1", header, Masker([]), signer=signer) as journal:
        journal.append_many([("step.started", {"step": "a"})] * 3)
        journal.append_many([("step.started", {"step": "b"})] * 3)
    [log] = logs_in(tmp_path)
    lines = log.read_bytes().splitlines(keepends=True)
    assert [line.startswith(b'{"auth":') for line in lines] == [
        True,
        False,
        False,
        True,
        False,
        False,
        True,
    ]
    log.write_bytes(b"".join(lines[:6]))  # the second write lost its signed last record
    from runbook.log.signing import load_trusted_key
    from runbook.log.verify import check_log

    check = check_log(log, load_trusted_key(f"{key}.pub"))
    assert check.chain.truncated and not check.chain.tampered
    assert check.signature.ok and check.signature.signed_to == 3
    assert "seq 4-5 unsigned" in check.signature.text


def test_a_wrong_key_fails(run_cli: RunCli, write_runbook: Any, key: Path, tmp_path: Path) -> None:
    log, _ = _run(run_cli, write_runbook, "--signing-key", str(key))
    other = _keygen(tmp_path / "other-key")
    code, parts, text = _verify(run_cli, log, "--key", f"{other}.pub")
    assert code == 5 and parts["signature"].startswith("WRONG KEY"), text


def test_a_key_given_for_an_unsigned_log_fails(
    run_cli: RunCli, write_runbook: Any, key: Path
) -> None:
    log, _ = _run(run_cli, write_runbook)
    code, parts, text = _verify(run_cli, log, "--key", f"{key}.pub")
    assert code == 5 and parts["signature"].startswith("MISSING"), text


def test_the_fingerprint_is_what_ssh_keygen_prints(
    run_cli: RunCli, write_runbook: Any, key: Path
) -> None:
    log, _ = _run(run_cli, write_runbook, "--signing-key", str(key))
    printed = subprocess.run(
        ["ssh-keygen", "-lf", f"{key}.pub"], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    assert read_log(log)[0]["data"]["signing"]["fingerprint"] == printed
    assert _verify(run_cli, log, "--key", printed)[0] == 0


def test_a_pem_key_from_the_environment_signs(
    run_cli: RunCli, write_runbook: Any, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    pem, pub = tmp_path / "key.pem", tmp_path / "key.pub.pem"
    pem.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pub.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    log, final = _run(run_cli, write_runbook, RUNBOOK_SIGNING_KEY=str(pem))
    code, parts, text = _verify(run_cli, log, "--key", str(pub), "--expect", final)
    assert code == 0 and "authentic" in text, text


@pytest.mark.parametrize("problem", ["missing", "encrypted", "not-a-key"])
def test_a_key_that_cannot_sign_stops_the_run_before_the_log(
    run_cli: RunCli, write_runbook: Any, tmp_path: Path, problem: str
) -> None:
    path = tmp_path / "bad-key"
    if problem == "encrypted":
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", str(path)],
            check=True,
            timeout=30,
        )
    elif problem == "not-a-key":
        path.write_text("hello\n")
    result = run_cli("run", str(write_runbook(RUNBOOK)), "--yes", "--signing-key", str(path))
    assert result.code == 2, result.text
    assert "signing key" in result.err
    assert not logs_in(tmp_path / "logs")


# -- identity -------------------------------------------------------------------------------


def test_the_os_user_is_recorded_beside_the_claimed_one(
    run_cli: RunCli, write_runbook: Any, tmp_path: Path
) -> None:
    rb = write_runbook(RUNBOOK)
    result = run_cli(
        "run",
        str(rb),
        "--answer",
        "flush=cache-0",
        env={"USER": "admin2", "LOGNAME": "admin2", "RUNBOOK_OPERATOR": ""},
    )
    assert result.code == 0, result.text
    [log] = logs_in(tmp_path / "logs")
    records = read_log(log)
    header = records[0]["data"]
    [confirmation] = [r["data"] for r in records if r["type"] == "step.confirmation"]
    for data in (header, confirmation):
        assert data["operator"] == "admin2"
        assert data["identity"]["os_user"] == OS_USER
        assert data["identity"]["os_uid"] == os.getuid()
        assert data["identity"]["claimed_from"] == "$LOGNAME"
    assert f"admin2 (claimed; OS user {OS_USER}, uid {os.getuid()})" in result.out


def test_sudo_and_ssh_are_recorded_when_present(
    run_cli: RunCli, write_runbook: Any, tmp_path: Path
) -> None:
    env = {"SUDO_USER": "alice", "SUDO_UID": "1000", "SSH_CONNECTION": "10.1.2.3 5555 10.0.0.1 22"}
    result = run_cli("run", str(write_runbook(RUNBOOK)), "--answer", "flush=cache-0", env=env)
    assert result.code == 0, result.text
    [log] = logs_in(tmp_path / "logs")
    identity = read_log(log)[0]["data"]["identity"]
    assert identity["sudo_user"] == "alice" and identity["sudo_uid"] == "1000"
    assert identity["ssh_client"] == "10.1.2.3"
    assert "via sudo from alice" in run_cli("log", "show", str(log)).out


def test_a_claimed_name_is_sanitised_and_labelled(
    run_cli: RunCli, write_runbook: Any, tmp_path: Path
) -> None:
    claimed = "oncall\x1b[2K\r(approved by security)" + "x" * 200
    result = run_cli(
        "run",
        str(write_runbook(RUNBOOK)),
        "--answer",
        "flush=cache-0",
        env={"RUNBOOK_OPERATOR": claimed},
    )
    assert result.code == 0, result.text
    [log] = logs_in(tmp_path / "logs")
    operator = read_log(log)[0]["data"]["operator"]
    assert "\x1b" not in operator and "\r" not in operator and len(operator) <= 64
    assert operator.startswith("oncall\\x1b[2K\\r(approved by security)")
    assert "\x1b[2K" not in result.out


def test_reports_show_claimed_and_os_user_and_the_final_hash(
    run_cli: RunCli, write_runbook: Any, key: Path
) -> None:
    log, final = _run(
        run_cli,
        write_runbook,
        "--signing-key",
        str(key),
        USER="admin2",
        LOGNAME="admin2",
        RUNBOOK_OPERATOR="",
    )
    postmortem = run_cli("report", str(log), "--format", "postmortem").out
    assert "- **Operator (claimed)**: admin2 (from $LOGNAME, not authenticated)" in postmortem
    assert f"- **OS user**: {OS_USER} (uid {os.getuid()})" in postmortem
    assert (
        f"confirmed by admin2 via --answer (claimed name; OS user {OS_USER}, uid {os.getuid()}; "
        in postmortem
    )
    assert f"- Final chain hash: `{final}`" in postmortem
    assert "ed25519 key `SHA256:" in postmortem
    report = json.loads(run_cli("report", str(log), "--format", "json").out)
    assert report["incident"]["operator"] == "admin2"
    assert report["incident"]["identity"]["os_user"] == OS_USER
    assert report["verification"]["final_hash"] == final
    assert report["verification"]["signing_key"].startswith("SHA256:")
    [flush] = [s for s in report["steps"] if s["id"] == "flush"]
    assert flush["confirmations"][0]["os_uid"] == os.getuid()
    for fmt in ("junit", "html"):
        text = run_cli("report", str(log), "--format", fmt).out
        assert final in text and OS_USER in text


@pytest.mark.parametrize(
    "args", [("--expect", "not-a-hash"), ("--expect", "SHA256:abc"), ("--key", "no-such.pub")]
)
def test_a_malformed_anchor_or_key_is_invalid_input(
    run_cli: RunCli, write_runbook: Any, args: tuple[str, str]
) -> None:
    log, _ = _run(run_cli, write_runbook)
    result = run_cli("log", "verify", str(log), *args)
    assert result.code == 2 and args[0] in result.err, result.text
