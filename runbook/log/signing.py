"""Signed incident logs: an ed25519 key vouches for the chain head at every durable point.

The hash chain alone proves integrity, not authorship: anyone who edits a record
can recompute every hash after it. With a signing key (`RUNBOOK_SIGNING_KEY` or
`runbook run --signing-key FILE`: an OpenSSH or PEM ed25519 private key), the
header names the public key and the last record of every write (each fsync)
carries a top-level `auth` object: `{"alg": "ed25519", "key": <fingerprint>,
"sig": <base64>}`. The signature covers `SIGNED_PREFIX` plus the record's
canonical body *without* `auth` (data, prev, seq, ts, type); that body holds
`prev`, the hash of everything before, so one valid signature vouches for the
whole log up to and including its record. The record's `sha256` then covers
the body *with* `auth`, so the chain links signatures in like any other bytes.

`auth` sorts before `data`, so a signed line starts with `{"auth":{` and the
signed bytes are cut out of the line without parsing it; older verifiers, which
find `prev`/`seq`/`ts`/`type` at the end of the body, read signed logs
unchanged. A crash mid-write leaves the last signed record before it
verifiable. `cryptography` is imported only when a key is used.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runbook.errors import InvalidInput
from runbook.log.records import AUTH_KEY, RecordAuth, SigningInfo

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

SIGNING_KEY_ENV = "RUNBOOK_SIGNING_KEY"
"""Path of the private key `runbook run` signs with when `--signing-key` is not given."""

ALG = "ed25519"
SIGNED_PREFIX = b"runbook incident log v1 record\n"
"""Domain separation: a signature over a log record is never valid for anything else."""

AUTH_START = b'{"' + AUTH_KEY.encode() + b'":{'
"""How a signed line starts: `auth` sorts before every other key of a record."""

_SUFFIX_LEN = len(',"sha256":"') + 64 + len('"}')


def _crypto_missing(exc: ImportError) -> InvalidInput:
    return InvalidInput(
        f"signed incident logs need the 'cryptography' package ({exc}): "
        "pip install 'runbook-as-code' (it is a dependency) or pip install cryptography"
    )


def fingerprint(raw_public_key: bytes) -> str:
    """`SHA256:<base64>` of the key's OpenSSH blob: what `ssh-keygen -lf KEY.pub` prints."""
    name = b"ssh-ed25519"
    blob = len(name).to_bytes(4, "big") + name + len(raw_public_key).to_bytes(4, "big")
    digest = hashlib.sha256(blob + raw_public_key).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _raw(public: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _openssh(public: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives import serialization

    line = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return line.decode("ascii")


def _read_key_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{what} {path}: {exc.strerror or exc}") from None


def _private_key(data: bytes, where: str) -> Ed25519PrivateKey:
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    except ImportError as exc:
        raise _crypto_missing(exc) from None
    try:
        if b"BEGIN OPENSSH PRIVATE KEY" in data:
            key: object = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "encrypted" in reason.lower() or "password" in reason.lower():
            reason = "the key is encrypted; use an unencrypted key (keep it on a protected disk)"
        raise InvalidInput(f"signing key {where}: cannot read it: {reason}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidInput(f"signing key {where}: not an ed25519 key (ssh-keygen -t ed25519)")
    return key


class Signer:
    """Signs log records with one ed25519 private key; made by `load_signer`."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        public = key.public_key()
        self.public_key = _openssh(public)
        self.fingerprint = fingerprint(_raw(public))

    def info(self) -> SigningInfo:
        """The header's `signing`: which key signs this log."""
        return {"alg": ALG, "public_key": self.public_key, "fingerprint": self.fingerprint}

    def auth(self, body: str) -> RecordAuth:
        """The `auth` of a record whose canonical body (without `auth`) is `body`."""
        signature = self._key.sign(SIGNED_PREFIX + body.encode("ascii"))
        return {"alg": ALG, "key": self.fingerprint, "sig": base64.b64encode(signature).decode()}


def load_signer(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Signer | None:
    """The signer for `path`, else for `$RUNBOOK_SIGNING_KEY`, else None (an unsigned log).

    Raises InvalidInput (exit 2) for a key that is missing, unreadable, encrypted or
    not ed25519: a run asked to sign must not start unsigned.
    """
    given = path or (os.environ if environ is None else environ).get(SIGNING_KEY_ENV, "")
    if not given:
        return None
    where = Path(given)
    return Signer(_private_key(_read_key_file(where, "signing key"), str(where)))


@dataclass(frozen=True)
class TrustedKey:
    """What `log verify --key` was given: a public key, or only its fingerprint."""

    fingerprint: str
    raw: bytes | None = None

    def matches(self, info: Mapping[str, Any]) -> bool:
        return str(info.get("fingerprint", "")) == self.fingerprint


def load_trusted_key(text: str) -> TrustedKey:
    """`--key`: a fingerprint (`SHA256:...`), or a file holding the public key (an OpenSSH
    `.pub` line or PEM) or the private key itself. Raises InvalidInput (exit 2)."""
    if text.startswith("SHA256:") and not Path(text).exists():
        return TrustedKey(text)
    data = _read_key_file(Path(text), "--key")
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError as exc:
        raise _crypto_missing(exc) from None
    if b"PRIVATE KEY" in data:
        public: object = _private_key(data, text).public_key()
    else:
        try:
            stripped = data.strip()
            if stripped.startswith(b"ssh-"):
                public = serialization.load_ssh_public_key(b" ".join(stripped.split()[:2]))
            else:
                public = serialization.load_pem_public_key(data)
        except (ValueError, TypeError, IndexError) as exc:
            raise InvalidInput(f"--key {text}: not a public key: {exc}") from None
    if not isinstance(public, Ed25519PublicKey):
        raise InvalidInput(f"--key {text}: not an ed25519 key")
    raw = _raw(public)
    return TrustedKey(fingerprint(raw), raw)


# -- checking -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignatureCheck:
    """The signature part of `runbook log verify`.

    `state` is `unsigned` (no key in the header), `self-signed` (every signature
    holds, but under the key the log itself names: not checked against yours),
    `authentic` (signed by the `--key` given), or a failure: `missing` (`--key`
    given, log unsigned), `wrong-key`, `bad`. `signed_to` is the seq of the last
    record a valid signature covers; `first_bad_seq` the first one that fails.
    """

    state: str
    ok: bool
    text: str
    fingerprint: str = ""
    signed_to: int | None = None
    first_bad_seq: int | None = None


UNSIGNED_TEXT = "none: integrity only, not authenticity (unsigned log)"


def split_signed(line: bytes) -> tuple[bytes, bytes] | None:
    """(`auth` JSON, the signed body) of a signed line (no newline), None if it has no `auth`.

    The signed body is the line's body with `"auth":{...},` cut out: the record as
    it was before it was signed. `auth` holds no nested object or `}`.
    """
    if not line.startswith(AUTH_START):
        return None
    n = len(line) - _SUFFIX_LEN
    end = line.find(b"}", len(AUTH_START), n)
    if end < 0 or line[end + 1 : end + 2] != b",":
        return b"", b""
    return line[len(AUTH_START) - 1 : end + 1], b"{" + line[end + 2 : n] + b"}"


def _public(info: Mapping[str, Any]) -> Ed25519PublicKey | None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_ssh_public_key(str(info.get("public_key", "")).encode())
    except (ValueError, TypeError, UnicodeError):
        return None
    if not isinstance(key, Ed25519PublicKey) or fingerprint(_raw(key)) != info.get("fingerprint"):
        return None
    return key


def _signature_holds(line: bytes, public: Ed25519PublicKey, key_fingerprint: str) -> str:
    """'' when `line`'s signature holds; else why not."""
    from cryptography.exceptions import InvalidSignature

    parts = split_signed(line)
    if not parts or not parts[0]:
        return "malformed auth"
    try:
        auth = json.loads(parts[0])
        signature = base64.b64decode(str(auth["sig"]), validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error):
        return "malformed auth"
    if auth.get("alg") != ALG:
        return f"unknown signature algorithm {auth.get('alg')!r}"
    if auth.get("key") != key_fingerprint:
        return f"signed by another key ({auth.get('key')})"
    try:
        public.verify(signature, SIGNED_PREFIX + parts[1])
    except InvalidSignature:
        return "the signature does not match the record"
    return ""


def check_signatures(
    lines: list[bytes], header: Mapping[str, Any], trusted: TrustedKey | None, complete: bool
) -> SignatureCheck:
    """Check the signatures of `lines`, the records the chain verified (line i is seq i),
    against the key `header` (seq 0's data) names, which must be `trusted` if given.
    `lines` is not looked at for a header that names no key (an unsigned log).

    `complete` says the last line closes the run: its record is then signed (the
    writer signs the last record of every write), so unsigned records after the
    last signature were added later. In a log that stops, they are the rest of a
    write a crash cut short, and only the signed part is vouched for.

    Only the last signature is checked when it holds: it vouches for every record
    before it. When it fails, the first failing one is found by bisection (under an
    intact chain, a signature fails exactly from the first changed record on).
    """
    info = header.get("signing")
    if not isinstance(info, Mapping):
        if trusted is not None:
            return SignatureCheck(
                "missing",
                False,
                f"MISSING: --key {trusted.fingerprint} was given but the log is unsigned",
                first_bad_seq=0,
            )
        return SignatureCheck("unsigned", True, UNSIGNED_TEXT)
    signed = [seq for seq, line in enumerate(lines) if line.startswith(AUTH_START)]
    named = str(info.get("fingerprint", ""))
    try:
        public = _public(info)
    except ImportError as exc:
        raise _crypto_missing(exc) from None
    if public is None:
        return SignatureCheck(
            "bad", False, "BAD: seq 0: the header's signing key is malformed", named, None, 0
        )
    if trusted is not None and (
        not trusted.matches(info) or (trusted.raw is not None and trusted.raw != _raw(public))
    ):
        return SignatureCheck(
            "wrong-key",
            False,
            f"WRONG KEY: the log is signed by {named}, not by the key you gave "
            f"({trusted.fingerprint})",
            named,
            None,
            0,
        )
    if not signed:
        return SignatureCheck(
            "bad",
            False,
            "BAD: seq 0: the header names a key but no record is signed",
            named,
            None,
            0,
        )
    last = len(lines) - 1

    def fails(i: int) -> str:
        return _signature_holds(lines[signed[i]], public, named)

    reason = fails(len(signed) - 1)
    if reason:
        lo, hi = 0, len(signed) - 1  # signed[hi] fails; find the first that does
        while lo < hi:
            mid = (lo + hi) // 2
            if fails(mid):
                hi = mid
            else:
                lo = mid + 1
        bad = signed[lo]
        covered = signed[lo - 1] if lo else None
        good = f"; last authentic record: seq {covered}" if covered is not None else ""
        return SignatureCheck(
            "bad",
            False,
            f"BAD: seq {bad}: {fails(lo)}: the record or one before it was changed "
            f"after it was signed{good}",
            named,
            covered,
            bad,
        )
    signed_to = signed[-1]
    if signed_to < last and complete:
        return SignatureCheck(
            "bad",
            False,
            f"BAD: seq {signed_to + 1}: no signature covers seq {signed_to + 1}-{last} "
            f"(the last signed record is seq {signed_to}): records added after signing",
            named,
            signed_to,
            signed_to + 1,
        )
    if trusted is not None:
        text = f"ok: seq 0-{signed_to} signed by the key you gave ({named})"
    else:
        text = (
            f"ok: seq 0-{signed_to} signed by the key the log itself names ({named}); "
            "not checked against yours (pass --key PUB): integrity only"
        )
    if signed_to < last:
        text += f"; seq {signed_to + 1}-{last} unsigned (the write that crashed)"
    return SignatureCheck("authentic" if trusted else "self-signed", True, text, named, signed_to)
