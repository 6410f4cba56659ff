"""Regular expressions that cannot hang: every pattern a runbook or an operator writes runs on RE2.

Patterns come from authors (`matches` in expressions, a param's `pattern:`) and from
operators (`logs.grep`), and they are matched against output nobody controls. Python's
`re` backtracks, so `(a+)+$` against forty `a`s and a `!` runs for hours; RE2 (the
`google-re2` package) matches in time linear in the text whatever the pattern, so no
check can hang on its regex and no timeout is needed around it. RE2 refuses what only a
backtracking engine can do (backreferences, lookaround, atomic groups, possessive
quantifiers, conditional groups) and counted repetition above 1000; `compile_pattern`
names the construct in its error so the author can rewrite the pattern. Everything else
reads as in Python: `\\Z` and `{,n}` are translated to RE2's spelling, and `search`
lets `$` match before a final newline as `re.search` does, so `stdout matches 'ok$'`
holds for "ok\\n". RE2's `\\d`, `\\w`, `\\s` and `\\b` are ASCII-only; `\\pL` and
`\\pN` name Unicode letters and digits.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Final

from runbook.errors import InvalidInput

__all__ = ["MAX_REPEAT", "Pattern", "PatternError", "compile_pattern"]

MAX_REPEAT: Final = 1000
"""The largest count RE2 accepts in `{n}` / `{n,m}`."""

_GROUPS: Final = (
    ("(?P=", "the backreference (?P=name)"),
    ("(?=", "the lookahead (?=...)"),
    ("(?!", "the negative lookahead (?!...)"),
    ("(?<=", "the lookbehind (?<=...)"),
    ("(?<!", "the negative lookbehind (?<!...)"),
    ("(?>", "the atomic group (?>...)"),
    ("(?(", "the conditional group (?(...)...)"),
)
_COUNT = re.compile(r"\{(\d*)(?:(,)(\d*))?\}")


class PatternError(InvalidInput, ValueError):
    """A pattern that RE2 cannot run; the message names the construct and the pattern.

    A ValueError too, so code that evaluates a pattern among other values (the
    expression evaluator) reports it like any other bad operand.
    """


class Pattern:
    """A compiled pattern: does it occur in a text (`search`), or is it the whole text?"""

    __slots__ = ("_dollar", "_regex", "source")

    def __init__(self, source: str, regex: Any, dollar: bool) -> None:
        self.source = source
        self._regex = regex
        self._dollar = dollar

    def __repr__(self) -> str:
        return f"Pattern({self.source!r})"

    def search(self, text: str) -> bool:
        """Whether the pattern matches anywhere in `text` (`re.search` semantics)."""
        if self._regex.search(text) is not None:
            return True
        # RE2's `$` is end of text only; Python's also matches before a final newline.
        return self._dollar and text.endswith("\n") and self._regex.search(text[:-1]) is not None

    def fullmatch(self, text: str) -> bool:
        """Whether the pattern matches all of `text`, a trailing newline included."""
        return self._regex.fullmatch(text) is not None


@lru_cache(maxsize=512)
def compile_pattern(source: str) -> Pattern:
    """`source` compiled for RE2; PatternError names what RE2 does not support."""
    import re2  # type: ignore[import-untyped]  # google-re2 ships no type information

    translated, dollar = _translate(source)
    options = re2.Options()
    options.log_errors = False  # RE2 would also print every bad pattern on stderr
    try:
        regex = re2.compile(translated, options)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise PatternError(f"invalid regular expression {source!r}: {detail}") from None
    return Pattern(source, regex, dollar)


def _translate(source: str) -> tuple[str, bool]:
    """Python's spelling to RE2's, and whether `$` occurs; refuses what RE2 cannot do.

    A small scanner that knows escapes and character classes, so `[(?=]` and
    `\\(?=` are plain characters, not a lookahead.
    """
    out: list[str] = []
    dollar = False
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if c == "\\":
            escaped = source[i + 1 : i + 2]
            if escaped in tuple("123456789"):
                _refuse(source, f"the backreference \\{escaped}")
            out.append("\\z" if escaped == "Z" else source[i : i + 2])
            i += 2
        elif c == "[":
            end = _class_end(source, i)
            out.append(source[i:end])
            i = end
        elif source.startswith("(?", i):
            for prefix, construct in _GROUPS:
                if source.startswith(prefix, i):
                    _refuse(source, construct)
            out.append("(?")
            i += 2
        elif c == "{" and (count := _COUNT.match(source, i)) and (count[1] or count[2]):
            low, comma, high = count[1], count[2], count[3]
            for number in (low, high):
                if number and int(number) > MAX_REPEAT:
                    _refuse(source, f"the repetition count {{{number}}} (at most {MAX_REPEAT})")
            out.append(f"{{{low or 0}{comma or ''}{high or ''}}}")
            i = count.end()
            _no_possessive(source, i, count[0])
        elif c in "*+?":
            out.append(c)
            i += 1
            _no_possessive(source, i, c)
        else:
            dollar = dollar or c == "$"
            out.append(c)
            i += 1
    return "".join(out), dollar


def _class_end(source: str, start: int) -> int:
    """Index just past the character class opening at `start` (`[]a]` and `[^]a]` included)."""
    i = start + 1
    if source.startswith("^", i):
        i += 1
    if source.startswith("]", i):
        i += 1
    while i < len(source) and source[i] != "]":
        i += 2 if source[i] == "\\" else 1
    return min(i + 1, len(source))


def _no_possessive(source: str, i: int, quantifier: str) -> None:
    if source.startswith("+", i):
        _refuse(source, f"the possessive quantifier {quantifier}+")


def _refuse(source: str, construct: str) -> None:
    raise PatternError(
        f"regular expression {source!r}: {construct} is not supported: regexes run on RE2, "
        "which matches in linear time (see 'Deadlines and bounds' in docs/runbook-format.md)"
    )
