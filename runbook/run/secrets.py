"""Mask secret values everywhere they could leak, including in encoded forms.

A secret that reaches a console, a log or a report is a leaked secret, and it
rarely leaks verbatim: it shows up URL-encoded in a query string, base64-encoded
in an `Authorization: Basic` header, JSON-escaped in a command's output. So a
`Masker` expands every secret into the forms it can take in text, compiles them
into one regex (longest first) and replaces every occurrence with `***`.

Base64 needs care: inside a larger blob a secret starts at any byte alignment,
so its own encoding never appears. For each alignment k in 0, 1, 2 we encode
k filler bytes plus the secret and keep only the characters that depend on
secret bytes alone; those appear in every blob that contains the secret at
that alignment. Such fragments are used only when at least six characters
long, so a short secret does not mask random text.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
MIN_ENCODED_LENGTH = 6
_PERCENT_ESCAPE = re.compile(r"%([0-9A-F])([0-9A-F])")


def _case_insensitive_escapes(literal: str) -> str:
    """A regex for `literal` whose %XX escapes match in either case (%2f == %2F)."""
    parts = []
    last = 0
    for match in _PERCENT_ESCAPE.finditer(literal):
        parts.append(re.escape(literal[last : match.start()]))
        hex_digits = (f"[{c}{c.lower()}]" if c.isalpha() else c for c in match.groups())
        parts.append("%" + "".join(hex_digits))
        last = match.end()
    parts.append(re.escape(literal[last:]))
    return "".join(parts)


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


def _literal_forms(secret: str) -> set[str]:
    """Forms that are plain text transformations of the secret (no base64)."""
    return {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        shlex.quote(secret),
    }


def _secret_patterns(secret: str) -> list[tuple[int, str]]:
    """(length, regex) for every form `secret` can take in text."""
    patterns = [(len(form), re.escape(form)) for form in _literal_forms(secret)]
    for encoded in {
        quote(secret, safe="", errors="surrogatepass"),
        quote_plus(secret, errors="surrogatepass"),
    }:
        patterns.append((len(encoded), _case_insensitive_escapes(encoded)))
    raw = secret.encode("utf-8", "surrogatepass")
    patterns.extend((len(form), re.escape(form)) for form in _base64_forms(raw))
    return patterns


class Masker:
    """Replaces secret values, raw or encoded, with `***` in text and data.

    Cheap when there is nothing to mask (the usual case for most runbooks):
    `mask` returns its input untouched without running a regex. Adding a
    secret rebuilds one compiled pattern; masking is safe from many threads.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        # (any occurrence, every overlapping occurrence): one attribute, so a
        # reader racing add() sees an old pair or a new pair, never a mix.
        self._patterns: tuple[re.Pattern[str], re.Pattern[str]] | None = None
        for secret in secrets:
            self.add(secret)

    @property
    def secrets(self) -> tuple[str, ...]:
        """The secrets being masked, in the order they were added."""
        return self._secrets

    def add(self, secret: str) -> None:
        """Mask `secret` from now on; empty strings and repeats are ignored."""
        if not secret:
            return
        with self._lock:
            if secret in self._secrets:
                return
            self._secrets = (*self._secrets, secret)
            self._compile()

    def _compile(self) -> None:
        # Longest first: at one position, the whole form wins over its prefix.
        patterns = {p for secret in self._secrets for p in _secret_patterns(secret)}
        ordered = sorted(patterns, key=lambda p: (-p[0], p[1]))
        alternation = "|".join(regex for _, regex in ordered)
        self._patterns = (re.compile(alternation), re.compile(f"(?=({alternation}))"))

    def mask(self, text: str) -> str:
        """`text` with every occurrence of every secret form replaced by `***`.

        Overlapping occurrences (one secret's form running into another's)
        are merged into one masked span, so no part of either survives.
        """
        patterns = self._patterns
        if patterns is None or patterns[0].search(text) is None:
            return text
        finder, overlapping = patterns
        masked = _replace_spans(text, overlapping)
        # A mask can re-form a secret that contains '*'; repeat while the text
        # shrinks, which also guarantees the loop ends.
        while len(masked) < len(text) and finder.search(masked):
            text, masked = masked, _replace_spans(masked, overlapping)
        return masked

    def mask_value(self, obj: Any) -> Any:
        """`obj` with every string in it masked, dict keys included.

        Dicts, lists and tuples are rebuilt (same types); other values are
        returned as they are, since only strings can carry a secret.
        """
        if self._patterns is None:
            return obj
        if isinstance(obj, str):
            return self.mask(obj)
        if isinstance(obj, dict):
            return {self.mask_value(k): self.mask_value(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.mask_value(item) for item in obj]
        if isinstance(obj, tuple):
            return tuple(self.mask_value(item) for item in obj)
        return obj


def _replace_spans(text: str, overlapping: re.Pattern[str]) -> str:
    """Replace the union of all (possibly overlapping) matches with `***`."""
    spans: list[list[int]] = []
    for match in overlapping.finditer(text):
        start, end = match.start(1), match.end(1)
        if spans and start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
    pieces = []
    last = 0
    for start, end in spans:
        pieces.append(text[last:start])
        pieces.append(MASK)
        last = end
    pieces.append(text[last:])
    return "".join(pieces)
