"""Mask secret values wherever they could leak, including in encoded and derived forms.

A secret that reaches a console, a log or a report is a leaked secret, and it
rarely leaks verbatim: it shows up URL-encoded in a query string, base64-encoded
in an `Authorization: Basic` header, JSON-escaped in a command's output, upper-
cased or hex-dumped by a script. So a `Masker` expands every secret into the
forms it can take in text, compiles them into one regex (longest first, so a
longer secret is never cut short by a shorter one inside it) and replaces every
occurrence with `***`.

Masking is by value, never by structure: `mask_value` masks strings, not the
keys of a mapping, and leaves alone the fields a caller names as structure (the
ids, hashes, statuses and timestamps an incident log is read by). A secret
shorter than `MIN_SECRET_LENGTH` is refused: a one-letter "secret" would turn
every word of every record into asterisks and hide nothing.

Text forms (raw, reversed, JSON- and shell-quoted, hex, URL-encoded) match in
any letter case, which covers `upper()`, `lower()` and mixed case; `casefold()`
and `upper()` are added explicitly for letters whose case mapping changes the
length (ß → SS). Base64 needs care: inside a larger blob a secret starts at any
byte alignment, so its own encoding never appears. For each alignment k in 0,
1, 2 we encode k filler bytes plus the secret and keep only the characters that
depend on secret bytes alone; those appear in every blob that contains the
secret at that alignment. Such fragments are used only when at least six
characters long, so a short secret does not mask random text.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

from runbook.errors import ParamError

MASK = "***"
MIN_SECRET_LENGTH = 4
"""Shortest secret value accepted (characters): shorter ones would mask ordinary text."""
MIN_ENCODED_LENGTH = 6


def check_secret_length(value: str, name: str | None = None) -> None:
    """Refuse (ParamError, exit 2) a secret too short to mask; names the param, not the value."""
    if 0 < len(value) < MIN_SECRET_LENGTH:
        which = f"param '{name}'" if name else "a secret value"
        raise ParamError(
            f"{which}: a secret must be at least {MIN_SECRET_LENGTH} characters long; "
            "a shorter one cannot be masked without masking ordinary text "
            "(every word, id and hash that contains it)"
        )


def _base64_forms(raw: bytes) -> set[str]:
    """Every base64 form of `raw`: whole (padded or not) and aligned fragments.

    A fragment is the run of characters of base64(k filler bytes + raw) that
    depends only on `raw`; it is what any blob containing `raw` at byte
    offset ≡ k (mod 3) must contain, whatever surrounds it.
    """
    forms: set[str] = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(raw).decode("ascii")
        forms.update((whole, whole.rstrip("=")))
        for k, start in ((0, 0), (1, 2), (2, 3)):
            n = k + len(raw)
            end = (n // 3) * 4 + n % 3
            forms.add(encode(b"\0" * k + raw).decode("ascii")[start:end])
    return {form for form in forms if len(form) >= MIN_ENCODED_LENGTH}


def _text_forms(secret: str) -> set[str]:
    """Forms that are text transformations of the secret; they match in any case."""
    raw = secret.encode("utf-8", "surrogatepass")
    forms: set[str] = set()
    for variant in {secret, secret.upper(), secret.casefold(), secret[::-1]}:
        forms.update(
            (
                variant,
                json.dumps(variant)[1:-1],
                json.dumps(variant, ensure_ascii=False)[1:-1],
                shlex.quote(variant),
                quote(variant, safe="", errors="surrogatepass"),
                quote_plus(variant, errors="surrogatepass"),
            )
        )
    forms.add(raw.hex())
    return forms


class _Forms:
    """One compiled alternation of literal forms, longest first: at one position the
    whole form wins over a shorter one, so with secrets 'password123' and 'word' no
    '123' is left behind."""

    def __init__(self, forms: Iterable[str], flags: int = 0) -> None:
        ordered = sorted(set(forms), key=lambda form: (-len(form), form))
        alternation = "|".join(re.escape(form) for form in ordered)
        self.any = re.compile(alternation, flags)
        # A lookahead matches at every position, so overlapping forms are all found.
        self.every = re.compile(f"(?=({alternation}))", flags)

    def spans(self, text: str) -> list[tuple[int, int]]:
        if self.any.search(text) is None:
            return []
        return [(m.start(1), m.end(1)) for m in self.every.finditer(text)]


class _Patterns:
    """Every form of every secret: text forms in any case, base64 forms exactly.

    `re.IGNORECASE` makes an alternation of literals an order of magnitude
    slower, so text forms are lower-cased and matched against `text.lower()`,
    which keeps every offset whenever it keeps the length (lower() only ever
    lengthens, as for 'İ'); other text is matched case-insensitively as it is.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        folded: set[str] = set()
        encoded: set[str] = set()
        for secret in secrets:
            folded.update(form.lower() for form in _text_forms(secret))
            encoded.update(_base64_forms(secret.encode("utf-8", "surrogatepass")))
        self._folded = _Forms(folded)
        self._folded_any_case = _Forms(folded, re.IGNORECASE)
        self._encoded = _Forms(encoded) if encoded else None

    def spans(self, text: str) -> list[tuple[int, int]]:
        """(start, end) of every occurrence of every form, overlapping ones included."""
        lowered = text.lower()
        if len(lowered) == len(text):
            found = self._folded.spans(lowered)
        else:
            found = self._folded_any_case.spans(text)
        if self._encoded is not None:
            found += self._encoded.spans(text)
        return sorted(found)


class Masker:
    """Replaces secret values, raw, encoded or derived, with `***` in text and data.

    Cheap when there is nothing to mask (the usual case for most runbooks):
    `mask` returns its input untouched without running a regex. Adding a
    secret rebuilds the compiled patterns; masking is safe from many threads.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        # Replaced whole by add(), so a reader racing it sees old or new patterns.
        self._patterns: _Patterns | None = None
        for secret in secrets:
            self.add(secret)

    @property
    def secrets(self) -> tuple[str, ...]:
        """The secrets being masked, in the order they were added."""
        return self._secrets

    def add(self, secret: str) -> None:
        """Mask `secret` from now on; empty strings and repeats are ignored.

        Raises ParamError for a secret shorter than MIN_SECRET_LENGTH: params are
        checked, by name, before a run (`check_secret_length`); this is the backstop.
        """
        if not secret:
            return
        check_secret_length(secret)
        with self._lock:
            if secret in self._secrets:
                return
            self._secrets = (*self._secrets, secret)
            self._patterns = _Patterns(self._secrets)

    def mask(self, text: str) -> str:
        """`text` with every occurrence of every secret form replaced by `***`.

        Overlapping occurrences (one secret's form running into another's)
        are merged into one masked span, so no part of either survives.
        """
        patterns = self._patterns
        if patterns is None:
            return text
        spans = patterns.spans(text)
        # A mask can re-form a secret that contains '*'; repeat while the text
        # shrinks, which also guarantees the loop ends.
        while spans:
            masked = _replace_spans(text, spans)
            if len(masked) >= len(text):
                return masked
            text, spans = masked, patterns.spans(masked)
        return text

    def mask_value(self, obj: Any, keep: frozenset[str] = frozenset()) -> Any:
        """`obj` with every string value masked; mapping keys and `keep` fields as they are.

        Keys are names (of fields, headers, hosts) and are never masked: a secret
        that happens to be part of `exit_code` must not rename the field. `keep`
        holds the dotted paths of structural fields (`"step"`, `"runbook.sha256"`)
        whose values, and everything under them, are not masked either; a list's
        items share its path. Mappings become dicts, lists and tuples keep their
        type; other values are returned as they are, since only strings can carry
        a secret.
        """
        if self._patterns is None:
            return obj
        return self._mask_at(obj, keep, "")

    def _mask_at(self, obj: Any, keep: frozenset[str], path: str) -> Any:
        if isinstance(obj, str):
            return self.mask(obj)
        if isinstance(obj, Mapping):
            masked: dict[Any, Any] = {}
            for key, value in obj.items():
                inner = f"{path}.{key}" if path else str(key)
                masked[key] = value if inner in keep else self._mask_at(value, keep, inner)
            return masked
        if isinstance(obj, list):
            return [self._mask_at(item, keep, path) for item in obj]
        if isinstance(obj, tuple):
            return tuple(self._mask_at(item, keep, path) for item in obj)
        return obj


def _replace_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """Replace the union of `spans` (sorted, possibly overlapping) with `***` each."""
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    pieces = []
    last = 0
    for start, end in merged:
        pieces.append(text[last:start])
        pieces.append(MASK)
        last = end
    pieces.append(text[last:])
    return "".join(pieces)
