"""Secret masking: no secret survives, raw, encoded or derived, and nothing else is touched.

The first half holds the `Masker` to its promises with property tests; the second
runs the real CLI: a secret too short to mask is refused, a secret that is also part
of the log's keys and hashes leaves the log readable, verifiable and resumable, and
overlapping or derived forms never leave a piece behind on screen, in the log, in a
plan or in a report.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.cli import RunCli
from support.helpers import logs_in

from runbook.errors import ParamError
from runbook.log.journal import read_log
from runbook.run.secrets import MIN_SECRET_LENGTH, Masker

secrets = st.text(min_size=6, max_size=40)
texts = st.text(max_size=40)
# No letters, digits or '%+/=_-': nothing any encoding of an alphanumeric secret uses.
plain_texts = st.text(alphabet=" \n\t!#$&()*,.:;<>?@[]^{|}~\"'éü€中", max_size=80)
B64_RUN = re.compile(r"[A-Za-z0-9+/_-]+")


def decodes_to(text: str, secret: bytes) -> bool:
    """Whether any base64 run in `text`, read from any of its 4 phases, holds `secret`.

    This is independent of how the masker finds fragments: it simply tries to
    recover the secret from what is left, as an attacker reading the log would.
    """
    for run in B64_RUN.findall(text):
        run = run.replace("-", "+").replace("_", "/")
        for phase in range(4):
            chunk = run[phase:]
            chunk = chunk[: len(chunk) // 4 * 4]
            try:
                if secret in base64.b64decode(chunk, validate=True):
                    return True
            except binascii.Error:
                continue
    return False


@settings(max_examples=300, deadline=None)
@given(secret=secrets, before=texts, after=texts)
def test_raw_url_and_json_forms_never_survive(secret: str, before: str, after: str) -> None:
    masker = Masker([secret])
    forms = [secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]]
    for form in forms:
        masked = masker.mask(before + form + after)
        assert "***" in masked
        for leaked in forms:
            assert leaked not in masked


@settings(max_examples=300, deadline=None)
@given(
    secret=secrets,
    lead=st.binary(max_size=7),
    trail=st.binary(max_size=7),
    urlsafe=st.booleans(),
    padded=st.booleans(),
    before=texts,
    after=texts,
)
def test_base64_at_any_alignment_never_decodes_to_the_secret(
    secret: str, lead: bytes, trail: bytes, urlsafe: bool, padded: bool, before: str, after: str
) -> None:
    raw = secret.encode()
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    blob = encode(lead + raw + trail).decode()
    blob = blob if padded else blob.rstrip("=")
    masked = Masker([secret]).mask(before + blob + after)
    assert not decodes_to(masked, raw)
    assert encode(raw).decode().rstrip("=") not in masked


@settings(max_examples=100, deadline=None)
@given(secret=secrets, user=st.text(alphabet="abcdefghij", min_size=1, max_size=9))
def test_basic_auth_header_is_masked(secret: str, user: str) -> None:
    credentials = base64.b64encode(f"{user}:{secret}".encode()).decode()
    masked = Masker([secret]).mask(f"Authorization: Basic {credentials}\r\n")
    assert masked.startswith("Authorization: Basic ") and "***" in masked
    assert not decodes_to(masked, secret.encode())


@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_no_secrets_means_no_change(text: str) -> None:
    assert Masker().mask(text) is text


@settings(max_examples=300, deadline=None)
@given(
    secret=st.text(
        alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=6
    ),
    text=plain_texts,
)
def test_text_without_the_secret_is_unchanged(secret: str, text: str) -> None:
    assert Masker([secret]).mask(text) == text


def test_ordinary_output_with_unrelated_base64_is_left_alone() -> None:
    masker = Masker(["correct-horse-battery"])
    text = "token=" + base64.b64encode(bytes(range(200))).decode() + " 200 OK %2F"
    assert masker.mask(text) == text


def test_percent_escapes_match_in_either_case() -> None:
    masker = Masker(["a/b c:d"])
    assert masker.mask("x=a%2Fb%20c%3Ad&y=a%2fb+c%3ad") == "x=***&y=***"


def test_shell_quoted_form_is_masked() -> None:
    assert Masker(["it's-secret"]).mask("echo 'it'\"'\"'s-secret'") == "echo ***"


def test_overlapping_secrets_are_masked_as_one_span() -> None:
    assert Masker(["abcdef", "defghi"]).mask("xx abcdefghi yy") == "xx *** yy"


def test_a_secret_re_formed_by_masking_is_masked_again() -> None:
    assert "x***yz" not in Masker(["x***yz"]).mask("xx***yzyz")


def test_mask_value_masks_values_never_keys_keeping_shapes() -> None:
    masker = Masker(["hunter22"])
    value = {"hunter22": ["pw=hunter22", ("hunter22", 3)], "n": 1.5, "ok": True, "none": None}
    assert masker.mask_value(value) == {
        "hunter22": ["pw=***", ("***", 3)],
        "n": 1.5,
        "ok": True,
        "none": None,
    }


def test_mask_value_leaves_structural_fields_and_what_is_under_them() -> None:
    masker = Masker(["a1b2c3"])
    record = {
        "step": "deploy-a1b2c3",
        "runbook": {"sha256": "ffa1b2c3", "title": "x a1b2c3"},
        "versions": {"plugins": {"p": "a1b2c3"}},
        "items": [{"id": "a1b2c3"}, "a1b2c3"],
    }
    keep = frozenset({"step", "runbook.sha256", "versions", "items.id"})
    assert masker.mask_value(record, keep) == {
        "step": "deploy-a1b2c3",
        "runbook": {"sha256": "ffa1b2c3", "title": "x ***"},
        "versions": {"plugins": {"p": "a1b2c3"}},
        "items": [{"id": "a1b2c3"}, "***"],
    }


def test_empty_and_repeated_secrets_are_ignored() -> None:
    masker = Masker(["", "s3cret!", "s3cret!"])
    masker.add("")
    assert masker.secrets == ("s3cret!",)
    assert masker.mask("a s3cret! b") == "a *** b"


def test_secrets_is_read_only() -> None:
    masker = Masker(["s3cret!"])
    with pytest.raises(AttributeError):
        masker.secrets = ()  # type: ignore[misc]


def test_a_secret_too_short_to_mask_is_refused_without_showing_it() -> None:
    messages = set()
    for secret in ("a", "ab", "abc", "Q#"):
        with pytest.raises(ParamError, match=f"at least {MIN_SECRET_LENGTH} characters") as info:
            Masker([secret])
        messages.add(str(info.value))
    assert len(messages) == 1  # the same words whatever the value: it is never quoted


def test_short_encoded_fragments_are_not_trusted() -> None:
    masker = Masker(["abcd"])
    assert masker.mask("xabcdy YWJ") == "x***y YWJ"  # 'YWJ' starts base64("abcd"): too short


# -- derived forms and overlaps ------------------------------------------------------------


def test_derived_forms_are_masked() -> None:
    secret = "Tr0ub4dor&3x"
    raw = secret.encode()
    forms = {
        "upper": secret.upper(),
        "lower": secret.lower(),
        "mixed": "tR0UB4DOR&3X",
        "reversed": secret[::-1],
        "reversed upper": secret[::-1].upper(),
        "hex": raw.hex(),
        "HEX": raw.hex().upper(),
        "url": quote(secret, safe=""),
        "url upper": quote(secret.upper(), safe=""),
        "url plus": quote_plus(secret),
        "base64": base64.b64encode(raw).decode(),
        "urlsafe": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "json": json.dumps(secret)[1:-1],
    }
    masker = Masker([secret])
    for name, form in forms.items():
        assert masker.mask(f"[{form}]") == "[***]", name


def test_case_mappings_that_change_length_are_masked() -> None:
    masker = Masker(["Straße-42"])
    for form in ("STRASSE-42", "strasse-42", "Straße-42", "STRAßE-42"):
        assert masker.mask(f"<{form}>") == "<***>", form


def test_text_whose_lowercase_is_longer_is_still_masked() -> None:
    # 'İ'.lower() is two characters: offsets no longer line up with the text.
    assert Masker(["hunter22"]).mask("İ HUNTER22 İ") == "İ *** İ"


@settings(max_examples=300, deadline=None)
@given(
    secret=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=8, max_size=24),
    data=st.data(),
    before=plain_texts,
    after=plain_texts,
)
def test_a_secret_inside_another_leaves_nothing_of_either(
    secret: str, data: st.DataObject, before: str, after: str
) -> None:
    start = data.draw(st.integers(0, len(secret) - MIN_SECRET_LENGTH))
    end = data.draw(st.integers(start + MIN_SECRET_LENGTH, len(secret)))
    inner = secret[start:end]
    for order in ([secret, inner], [inner, secret]):
        masked = Masker(order).mask(before + secret + after)
        assert masked == before + "***" + after


def test_overlapping_secrets_leave_no_suffix() -> None:
    masker = Masker(["word", "password123"])
    assert masker.mask("pw=password123; w=word") == "pw=***; w=***"
    assert masker.mask("PASSWORD123") == "***"


# -- through the CLI ---------------------------------------------------------------------

SECRETS_RUNBOOK = """\
apiVersion: runbook/v1
kind: Runbook
metadata: {{name: secret-keeper, title: Secret keeper, severity: P2}}
params:
  token: {{type: string, secret: true, required: true}}
  other: {{type: string, secret: true, required: false}}
steps:
{steps}
"""


def _runbook(tmp_path: Path, steps: str) -> Path:
    path = tmp_path / "rb.yaml"
    path.write_text(SECRETS_RUNBOOK.format(steps=steps), encoding="utf-8")
    return path


ECHO_STEP = """\
  - id: show
    phase: triage
    check: {shell: {argv: [echo, "<{{ params.token }}>"]}}
"""


@pytest.mark.parametrize("value", ["Z", "Zq", "Q#Z"])
def test_a_secret_shorter_than_the_minimum_is_refused_before_anything_runs(
    run_cli: RunCli, tmp_path: Path, value: str
) -> None:
    rb = _runbook(tmp_path, ECHO_STEP)
    result = run_cli("run", str(rb), env={"RUNBOOK_PARAM_TOKEN": value})
    assert result.code == 2, result.text
    assert (
        "param 'token'" in result.err and f"at least {MIN_SECRET_LENGTH} characters" in result.err
    )
    assert value not in result.err
    assert not logs_in(tmp_path / "logs")
    planned = run_cli("plan", str(rb), "-p", f"token={value}")
    assert planned.code == 2 and "param 'token'" in planned.err


def _report(run_cli: RunCli, log: Path) -> dict[str, object]:
    result = run_cli("report", str(log), "--format", "json")
    assert result.code == 0, result.text
    report = json.loads(result.out)
    assert isinstance(report, dict)
    return report


def _start(rb: Path, cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "runbook", "run", str(rb), "--yes"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(path: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not path.exists():
        time.sleep(0.05)
    assert path.exists(), f"{path} never appeared"


RESUMABLE_STEPS = """\
  - id: first-step
    phase: mitigate
    action: {{shell: {{command: "echo first {{{{ params.token }}}} >> {ledger}"}}}}
  - id: wait-step
    phase: mitigate
    check: {{shell: {{command: "echo waiting > {started}; test -f {go} || sleep 60"}}}}
  - id: last-step
    phase: resolve
    action: {{shell: {{command: "echo last {{{{ params.other }}}}; echo last >> {ledger}"}}}}
"""


def test_a_secret_that_is_also_a_key_and_part_of_a_hash_leaves_the_log_whole(
    run_cli: RunCli, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    ledger, started, go = tmp_path / "ledger", tmp_path / "started", tmp_path / "go"
    steps = RESUMABLE_STEPS.format(ledger=ledger, started=started, go=go)
    rb = _runbook(tmp_path, steps)
    digest_part = hashlib.sha256(rb.read_bytes()).hexdigest()[:8]
    # 'step' is a key of most records and part of every step id and record type; the
    # other secret is part of the runbook's sha256 in the header.
    env = {**cli_env, "RUNBOOK_PARAM_TOKEN": "step", "RUNBOOK_PARAM_OTHER": digest_part}

    proc = _start(rb, tmp_path, env)
    _wait_for(started)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    [old] = logs_in(tmp_path / "logs")
    assert run_cli("log", "verify", str(old)).code == 0
    shown = run_cli("log", "show", str(old))
    assert "runbook:  secret-keeper — Secret keeper (P2)" in shown.out, shown.out
    header = read_log(old)[0]["data"]
    assert header["runbook"]["sha256"].startswith(digest_part)
    assert header["runbook"]["name"] == "secret-keeper" and header["params"]["token"] == "***"

    go.write_text("")
    resumed = run_cli("run", str(rb), "--yes", "--resume", str(old), env=env)
    assert resumed.code == 0, resumed.text
    assert ledger.read_text().splitlines() == ["first step", "last"]  # first-step ran once
    new = next(p for p in logs_in(tmp_path / "logs") if p != old)
    assert run_cli("log", "verify", str(new)).code == 0
    assert "runbook:  secret-keeper" in run_cli("log", "show", str(new)).out
    records = read_log(new)
    steps_seen = [r["data"]["step"] for r in records if r["type"] == "step.finished"]
    assert steps_seen == ["wait-step", "last-step"]
    finished = [r["data"] for r in records if r["type"] == "step.finished"]
    assert {d["status"] for d in finished} == {"passed"}
    result = next(
        r["data"]
        for r in records
        if r["type"] == "step.result" and r["data"]["step"] == "last-step"
    )
    assert result["fields"]["stdout"] == "last ***\n"
    assert records[-1]["data"]["status"] == "passed"
    report = _report(run_cli, new)
    assert report["incident"]["status"] == "passed"  # type: ignore[index]


OVERLAP_STEPS = """\
  - id: both
    phase: triage
    check:
      shell:
        argv:
          - sh
          - -c
          - printf '<%s> <%s>\\n' "$1" "$2"; printf '<%s>\\n' "$1" | tr a-z A-Z
          - sh
          - "{{ params.token }}"
          - "{{ params.other }}"
"""


def test_overlapping_secrets_leave_no_piece_anywhere(run_cli: RunCli, tmp_path: Path) -> None:
    rb = _runbook(tmp_path, OVERLAP_STEPS)
    env = {"RUNBOOK_PARAM_TOKEN": "password123", "RUNBOOK_PARAM_OTHER": "word"}
    result = run_cli("run", str(rb), env=env)
    assert result.code == 0, result.text
    [log] = logs_in(tmp_path / "logs")
    planned = run_cli("plan", str(rb), env=env)
    report = run_cli("report", str(log), "--format", "json")
    shown = run_cli("log", "show", str(log))
    for where, text in {
        "console": result.out,
        "log": log.read_text(),
        "plan": planned.out,
        "report": report.out,
        "log show": shown.out,
    }.items():
        pieces = set(re.findall(r"<([^<>]*)>", text)) - {"%s"}  # '%s': the printf format
        assert pieces <= {"***"} and "***" in text, (where, pieces)
        # a leak shows as the unmasked tail of the longer secret; hashes and ids may hold "123"
        assert "***123" not in text and "password" not in text and "passw" not in text, where
    assert "│ <***> <***>" in result.out and "│ <***>" in result.out


DERIVED_STEPS = """\
  - id: derived
    phase: triage
    check:
      shell:
        argv:
          - {python}
          - -c
          - |
            import base64, sys, urllib.parse
            s = sys.argv[1]
            b = s.encode()
            for name, form in [
                ("upper", s.upper()), ("lower", s.lower()), ("reversed", s[::-1]),
                ("hex", b.hex()), ("HEX", b.hex().upper()),
                ("base64", base64.b64encode(b).decode()),
                ("urlsafe", base64.urlsafe_b64encode(b).decode()),
                ("basic", base64.b64encode(b"admin:" + b).decode()),
                ("url", urllib.parse.quote(s, safe="")),
            ]:
                print(f"{{name}}=<{{form}}>")
          - "{{{{ params.token }}}}"
"""


def test_derived_forms_never_reach_the_screen_or_the_log(run_cli: RunCli, tmp_path: Path) -> None:
    rb = _runbook(tmp_path, DERIVED_STEPS.format(python=sys.executable))
    secret = "Sup3r/S3cret+Tok3n"
    result = run_cli("run", str(rb), env={"RUNBOOK_PARAM_TOKEN": secret})
    assert result.code == 0, result.text
    [log] = logs_in(tmp_path / "logs")
    stdout = next(r for r in read_log(log) if r["type"] == "step.result")["data"]["fields"]
    lines = stdout["stdout"].splitlines()
    expected = [f"{name}=<***>" for name in ("upper", "lower", "reversed", "hex", "HEX")]
    expected += ["base64=<***>", "urlsafe=<***>", "basic=<YWRtaW46***>", "url=<***>"]
    assert lines == expected  # basic: base64 of 'admin:' is all that is left
    for line in lines:
        assert f"│ {line}" in result.out
    assert secret not in log.read_text() and secret.upper() not in log.read_text()
