"""Secret masking: no secret survives, raw or encoded, and nothing else is touched."""

from __future__ import annotations

import base64
import binascii
import json
import re
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runbook.run.secrets import Masker

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


def test_mask_value_masks_strings_everywhere_keeping_shapes() -> None:
    masker = Masker(["hunter22"])
    value = {"hunter22": ["pw=hunter22", ("hunter22", 3)], "n": 1.5, "ok": True, "none": None}
    assert masker.mask_value(value) == {
        "***": ["pw=***", ("***", 3)],
        "n": 1.5,
        "ok": True,
        "none": None,
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


def test_short_secrets_mask_raw_but_not_base64_noise() -> None:
    masker = Masker(["ab"])
    assert masker.mask("xaby YWI=") == "x***y YWI="  # base64("ab") is too short to trust
