"""Sandboxed rendering of `{{ params.x }}` / `{{ steps.id.output }}` in step configs.

Values reach commands through here, so this is where injection is stopped:
templates render in Jinja's immutable sandbox (no Python internals, no
mutation of the namespace), undefined names fail loudly instead of rendering
as empty text, and in shell mode every `{{ ... }}` output is shell-quoted so a
parameter can never add an argument, a pipe or a second command. In a URL
field (an executor's `url_fields`) every value is percent-encoded for the part
of the URL it lands in, so it can never add a path segment, a query or a
fragment (see `Renderer.render_value`). For dry-runs,
a value that is not known until the run (`UNKNOWN`) raises `UnknownValue`
naming what it depends on, so the planner shows the step as `unknown` rather
than guessing. Every render is bounded in size, steps and time
(`runbook.expr.bounds`), and going past a bound is a TemplateLimit naming it.
Jinja is imported on first render only: `runbook --help` and `validate` never
pay for it.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Literal, NoReturn
from urllib.parse import quote, urlsplit

from runbook.errors import TemplateError
from runbook.expr import bounds
from runbook.expr.bounds import TemplateLimit
from runbook.expr.compile import rewrite_hyphenated_ids, template_blocks
from runbook.expr.values import is_unknown

__all__ = ["Renderer", "UnknownValue", "has_template", "shell_join", "shell_quote"]

_SINGLE_EXPRESSION = re.compile(r"\s*\{\{(?![-+])((?:(?!\{\{|\}\}).)*?)(?<![-+])\}\}\s*", re.S)
_CHAIN = re.compile(
    r"(?<![\w.'\"])([A-Za-z_]\w*)((?:\.[A-Za-z0-9_][\w-]*|\[\s*(?:'[^']*'|\"[^\"]*\"|\d+)\s*\])*)"
)
_SEGMENT = re.compile(r"\.([\w-]+)|\[\s*(?:'([^']*)'|\"([^\"]*)\"|(\d+))\s*\]")
_PLAIN_TYPES = (str, int, float, bool, type(None), list, tuple, dict)
Mode = Literal["plain", "shell", "url"]
# In URL mode each rendered value is wrapped in these private-use marks, so the URL can be
# split by its literal text alone and each value encoded for the part it landed in.
_VALUE_START, _VALUE_END, _SLOT = "\ue000", "\ue001", "\ue002"
_MARKED = re.compile("\ue000([^\ue000\ue001]*)\ue001")
_LITERAL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_HOST_VALUE = re.compile(r"[A-Za-z0-9._~:\[\]-]*")
_MAX_DEPTH = 32


class UnknownValue(TemplateError):
    """Rendering needs a value only a real run can tell (a dry-run's `unknown`).

    `reason` reads "depends on steps.status.output"; `ref` is the reference
    itself when it could be found, for planners that want to link to the step.
    """

    def __init__(self, reason: str, template: str | None = None, ref: str | None = None) -> None:
        suffix = f" in template {template!r}" if template is not None else ""
        super().__init__(f"{reason}{suffix}")
        self.reason = reason
        self.template = template
        self.ref = ref


def shell_quote(value: Any) -> str:
    """One shell word whatever `value` holds; the only way values enter shell strings."""
    return shlex.quote(str(value))


def shell_join(argv: Iterable[Any]) -> str:
    """An argv list as one shell command line, every word quoted (for SSH and display)."""
    return shlex.join(str(arg) for arg in argv)


def has_template(text: str) -> bool:
    """Whether `text` needs rendering at all (the fast path for plain strings)."""
    return "{{" in text or "{%" in text


class _UnknownRef:
    """Stands in for UNKNOWN inside Jinja: any use of it (print, test, compare, iterate,
    call, arithmetic) raises UnknownValue, while attribute and item access extend its
    path, so `steps.x.output | upper` fails as "unknown" and never renders "UNKNOWN".
    It is deliberately not a jinja2 Undefined, so `| default(...)` cannot paper over it.
    """

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path

    def child(self, name: Any) -> _UnknownRef:
        return _UnknownRef(
            f"{self.path}.{name}" if isinstance(name, str) else f"{self.path}[{name!r}]"
        )

    def _fail(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise UnknownValue(f"depends on {self.path}", ref=self.path)

    def __repr__(self) -> str:
        return f"<unknown {self.path}>"

    __str__ = __bool__ = __len__ = __iter__ = __contains__ = __call__ = _fail
    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __hash__ = _fail
    __int__ = __float__ = __index__ = __format__ = __neg__ = __pos__ = _fail
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _fail
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = _fail
    __mod__ = __rmod__ = __pow__ = __rpow__ = _fail


def _unknown_to_ref(value: Any, name: Any) -> Any:
    return _UnknownRef(str(name)) if is_unknown(value) else value


def _holds_unknown(value: Any, depth: int = 0) -> bool:
    if is_unknown(value):
        return True
    if not isinstance(value, (list, tuple, Mapping)) or depth >= _MAX_DEPTH:
        return False
    items = value.values() if isinstance(value, Mapping) else value
    return any(_holds_unknown(item, depth + 1) for item in items)


def _reject_unknown(value: Any) -> None:
    """Raise UnknownValue if `value` is, or holds, a value only a real run can tell."""
    if isinstance(value, _UnknownRef):
        value._fail()
    if _holds_unknown(value):
        raise UnknownValue("depends on a value not known until the run")


def _finalize_plain(value: Any) -> Any:
    _reject_unknown(value)
    bounds.printed(value)
    return value


def _finalize_shell(value: Any) -> str:
    _reject_unknown(value)
    bounds.printed(value)
    return shell_quote(value)


def _finalize_url(value: Any) -> str:
    _reject_unknown(value)
    bounds.printed(value)
    text = str(value)
    if _VALUE_START in text or _VALUE_END in text or _SLOT in text:
        raise TemplateError("a value rendered into a URL holds a reserved character U+E000..E002")
    return _VALUE_START + text + _VALUE_END


_FINALIZE = {"plain": _finalize_plain, "shell": _finalize_shell, "url": _finalize_url}


@lru_cache(maxsize=3)
def _environment(mode: Mode) -> Any:
    """The shared sandbox; one per quoting mode, built on first use (imports jinja2)."""
    from jinja2 import StrictUndefined
    from jinja2.runtime import Context, LoopContext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class RunbookEnvironment(ImmutableSandboxedEnvironment):
        """Mapping keys win over methods (`steps.update` is the step, not dict.update),
        and UNKNOWN turns into an _UnknownRef that remembers how it was reached."""

        intercepted_binops = frozenset({"*", "**", "+", "%"})  # see bounds.check_operator

        def getattr(self, obj: Any, attribute: str) -> Any:
            if is_unknown(obj):  # reached without a path, e.g. as a {% for %} loop variable
                obj = _UnknownRef("?")
            if isinstance(obj, _UnknownRef) and not attribute.startswith("_"):
                return obj.child(attribute)
            if isinstance(obj, Mapping) and not attribute.startswith("_") and attribute in obj:
                return _unknown_to_ref(obj[attribute], attribute)
            return _unknown_to_ref(super().getattr(obj, attribute), attribute)

        def getitem(self, obj: Any, argument: Any) -> Any:
            if is_unknown(obj):
                obj = _UnknownRef("?")
            if isinstance(obj, _UnknownRef):
                return obj.child(argument)
            return _unknown_to_ref(super().getitem(obj, argument), argument)

        def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
            _reject_unknown(left)
            _reject_unknown(right)
            bounds.check_operator(operator, left, right)
            return super().call_binop(context, operator, left, right)

        def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
            """Every call (function, method, macro, `loop(...)`) is counted and size-checked."""
            args = bounds.check_call(__obj, args, kwargs)
            if isinstance(__obj, LoopContext) and args:  # a recursive loop's next level
                args = (bounds.bounded_iteration(args[0]), *args[1:])
            result = super().call(__context, __obj, *args, **kwargs)
            return bounds.checked_result(result, args, kwargs)

        def _generate(self, source: Any, *args: Any, **kwargs: Any) -> Any:
            """Route loops and `~` through the bounds' filters before compiling."""
            return super()._generate(bounds.bound_nodes(source, self), *args, **kwargs)

    environment = RunbookEnvironment(
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=_FINALIZE[mode],
    )
    bounds.install(environment)
    return environment


def _prepare(source: str) -> str:
    """Rewrite `steps.check-db` inside `{{ }}`/`{% %}` blocks; literal text is untouched."""
    pieces, at = [], 0
    for start, end in template_blocks(source):
        pieces += [source[at:start], rewrite_hyphenated_ids(source[start:end])]
        at = end
    return "".join(pieces) + source[at:]


@lru_cache(maxsize=1024)
def _template(source: str, mode: Mode) -> Any:
    return _environment(mode).from_string(_prepare(source))


@lru_cache(maxsize=1024)
def _expression(source: str) -> Any:
    return _environment("plain").compile_expression(
        rewrite_hyphenated_ids(source), undefined_to_none=False
    )


class Renderer:
    """Renders templates against one namespace (`params`, `steps`, `vars`, `target`, ...).

    Cheap to create: environments and compiled templates are cached per
    process, so a 200-step plan compiles each distinct template once. Each
    call renders within the bounds of `runbook.expr.bounds`, and stops by
    `deadline` (monotonic clock) when that comes sooner.
    """

    def __init__(self, namespace: Mapping[str, Any], *, deadline: float | None = None) -> None:
        self.namespace = namespace
        self.deadline = deadline
        self._context = {str(k): _unknown_to_ref(v, k) for k, v in namespace.items()}

    def render_text(self, template: str, *, shell: bool = False) -> str:
        """Render to text; with `shell=True` every `{{ ... }}` output is one quoted word."""
        return self._render_text(template, "shell" if shell else "plain")

    def _render_text(self, template: str, mode: Mode) -> str:
        if not has_template(template):
            return template
        with self._errors(template), bounds.render_budget(self.deadline):
            text = bounds.bounded_template(_template(template, mode), self._context)
            return _assemble_url(text) if mode == "url" else text

    def render_value(
        self,
        value: Any,
        *,
        shell_fields: tuple[str, ...] = (),
        url_fields: tuple[str, ...] = (),
    ) -> Any:
        """Render every string inside dicts/lists, top-level keys by the executor's spec.

        A string that is exactly one `{{ expr }}` keeps the expression's type,
        so `timeout: "{{ params.t }}"` yields an int (outside shell fields).
        Values rendered into a key of `shell_fields` are shell-quoted. In a key of
        `url_fields` each value is percent-encoded for the URL part it lands in:
        a path segment (`/`, `?`, `#` encoded; `.`/`..` refused), a query or
        fragment value, userinfo; in the host it may hold only host characters.
        The scheme is literal text, or the whole URL (or its leading part, up
        to the next literal text) is one value, taken as written: that is how an
        author lets a param choose the URL.
        """
        with bounds.render_budget(self.deadline):  # one budget for all of a config's strings
            if (shell_fields or url_fields) and isinstance(value, Mapping):
                modes: dict[str, Mode] = {key: "shell" for key in shell_fields}
                modes.update({key: "url" for key in url_fields})
                return {
                    key: self._render_nested(item, mode=modes.get(key, "plain"))
                    for key, item in value.items()
                }
            return self._render_nested(value, mode="plain")

    def _render_nested(self, value: Any, *, mode: Mode) -> Any:
        if isinstance(value, str):
            return self._render_string(value, mode=mode)
        if isinstance(value, Mapping):
            return {key: self._render_nested(item, mode=mode) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            items = [self._render_nested(item, mode=mode) for item in value]
            return items if isinstance(value, list) else tuple(items)
        return value

    def _render_string(self, text: str, *, mode: Mode) -> Any:
        if not has_template(text):
            return text
        single = None if mode == "shell" else _SINGLE_EXPRESSION.fullmatch(text)
        if single is None:
            return self._render_text(text, mode)
        with self._errors(text), bounds.render_budget(self.deadline):
            value = _expression(single.group(1))(**self._context)
            _reject_unknown(value)
            bounds.printed(value)
            return value if isinstance(value, _PLAIN_TYPES) else str(value)

    @contextmanager
    def _errors(self, template: str) -> Iterator[None]:
        """Turn whatever Jinja raises into one of our errors, naming the template."""
        import jinja2

        try:
            yield
        except UnknownValue as exc:
            chain = _unknown_chain(template, self.namespace)
            if chain is None:  # reached indirectly (a loop variable): say what we know
                detail = f" ({exc.ref})" if exc.ref and exc.ref != "?" else ""
                raise UnknownValue(
                    f"depends on a value not known until the run{detail}", template, exc.ref
                ) from None
            raise UnknownValue(f"depends on {chain}", template, chain) from None
        except TemplateLimit as exc:  # keep which bound it was, and whether it was the clock
            raise TemplateLimit(
                f"{exc.message} in template {template!r}", exc.bound, timed_out=exc.timed_out
            ) from None
        except RecursionError:  # a macro calling itself, or brackets nested without end
            raise TemplateLimit(
                f"template nests too deep (template loop bound) in template {template!r}",
                "template loop",
            ) from None
        except jinja2.UndefinedError as exc:
            raise TemplateError(
                self._undefined_message(exc.message or str(exc), template)
            ) from None
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                f"syntax error in template {template!r}: {exc.message} (line {exc.lineno})"
            ) from None
        except jinja2.TemplateError as exc:  # SecurityError and friends
            raise TemplateError(f"{str(exc).rstrip('.')} in template {template!r}") from None
        except TemplateError as exc:  # our own limits, raised from inside the sandbox
            raise TemplateError(f"{exc.message} in template {template!r}") from None
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
            raise TemplateError(f"cannot render template {template!r}: {exc}") from None

    def _undefined_message(self, message: str, template: str) -> str:
        """Name the variable (not Jinja's "'dict object'") and suggest the closest key."""
        top = re.fullmatch(r"'(.+)' is undefined", message)
        if top:
            available = ", ".join(sorted(self._context)) or "none"
            hint = _did_you_mean(top.group(1), self._context)
            return (
                f"{top.group(1)!r} is undefined in template {template!r}; "
                f"available: {available}{hint}"
            )
        missing = re.search(r"has no (?:attribute|element) (.+)$", message)
        if missing is None:
            return f"{message} in template {template!r}"
        name = missing.group(1).strip("'\"")
        owner = _owner_of(name, template)
        if owner is None:
            return f"{message} in template {template!r}"
        found = _resolve(owner, self.namespace)
        hint = _did_you_mean(name, found) if isinstance(found, Mapping) else ""
        if not hint and owner.startswith(("steps", "vars")):
            hint = (
                f"; a step that was skipped or could not run leaves no result fields or vars: "
                f"`{{{{ {owner}.{name} | default('n/a') }}}}` renders a fallback"
            )
        return f"{owner!r} has no attribute {name!r} in template {template!r}{hint}"


def _assemble_url(marked: str) -> str:
    """The URL with each rendered value encoded for the part of it that value landed in.

    `marked` is the rendered template with every value between _VALUE_START and
    _VALUE_END. Which part a value is in (userinfo, host, path, query, fragment)
    is decided by the literal text alone, so a `/`, `?`, `#` or `@` inside a
    value can never move it, nor what follows it, to another part.
    """
    pieces = _MARKED.split(marked)
    literals, values = pieces[0::2], pieces[1::2]
    if any(mark in text for text in literals for mark in (_VALUE_START, _VALUE_END, _SLOT)):
        raise TemplateError("cannot tell rendered values from literal text in this URL")
    if not values:
        return marked
    prefix = ""
    if literals[0] == "":  # starts with a value: a URL the author lets a param choose
        prefix = values.pop(0)
        literals.pop(0)
        _check_url_prefix(prefix, more=bool(values) or any(literals))
    skeleton = prefix + _SLOT.join(literals)
    at = {m.start(): value for m, value in zip(re.finditer(_SLOT, skeleton), values, strict=True)}
    part_of = _url_parts(skeleton)
    out, last = [], 0
    for index, value in at.items():
        part = part_of(index)
        if part == "host" and not _HOST_VALUE.fullmatch(value):
            raise TemplateError(
                "a value rendered into the host of a URL may hold only letters, digits "
                "and . - _ ~ : [ ]"
            )
        if part == "path" and _segment_at(skeleton, index, at) in (".", ".."):
            raise TemplateError("a value rendered into a URL path makes a '.' or '..' segment")
        encoded = value if part == "host" else quote(value, safe="", errors="surrogatepass")
        out += [skeleton[last:index], encoded]
        last = index + 1
    return "".join(out) + skeleton[last:]


def _check_url_prefix(prefix: str, *, more: bool) -> None:
    """A URL that starts with a value: that value must itself be a whole absolute URL."""
    try:
        has_host = bool(urlsplit(prefix).netloc)
    except ValueError:
        has_host = False
    if not (_LITERAL_SCHEME.match(prefix) and has_host):
        raise TemplateError(
            "a URL that starts with a value needs that value to be a whole URL "
            "(scheme://host...): write the scheme and host literally, or make the whole "
            "URL one value"
        )
    if any(ch.isspace() or not ch.isprintable() for ch in prefix):
        raise TemplateError("the value a URL starts with holds a space or a control character")
    if more and ("?" in prefix or "#" in prefix):
        raise TemplateError(
            "the value a URL starts with holds '?' or '#', which would move the rest of the "
            "URL into its query or fragment"
        )


def _url_parts(skeleton: str) -> Callable[[int], str]:
    """Which part of the URL an index of `skeleton` is in, from its literal text only."""
    scheme = _LITERAL_SCHEME.match(skeleton)
    if scheme is None and _SLOT in skeleton.partition("://")[0] and "://" in skeleton:
        raise TemplateError("the scheme of a URL must be literal text (or the whole URL a value)")
    host_start = scheme.end() if scheme else 0
    path_start = _first_of(skeleton, "/?#", host_start) if scheme else 0
    query_start = _first_of(skeleton, "?#", path_start)
    fragment_start = _first_of(skeleton, "#", query_start)
    userinfo_end = skeleton.rfind("@", host_start, path_start)

    def part_of(index: int) -> str:
        if index < path_start:
            return "userinfo" if index < userinfo_end else "host"
        if index < query_start:
            return "path"
        return "query" if index < fragment_start else "fragment"

    return part_of


def _segment_at(skeleton: str, index: int, values: Mapping[int, str]) -> str:
    """The decoded path segment around `index`, values in place."""
    start = skeleton.rfind("/", 0, index) + 1
    end = _first_of(skeleton, "/?#", index)
    return "".join(values.get(i, ch) for i, ch in enumerate(skeleton[start:end], start))


def _first_of(text: str, chars: str, start: int) -> int:
    """Index of the first of `chars` in `text` from `start`, or len(text)."""
    found = [i for i in (text.find(c, start) for c in chars) if i >= 0]
    return min(found, default=len(text))


def _did_you_mean(name: str, options: Mapping[Any, Any]) -> str:
    close = difflib.get_close_matches(name, [str(k) for k in options], n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _owner_of(name: str, template: str) -> str | None:
    """The expression in `template` whose attribute `name` is missing: `params` for
    `params.servce`.

    Each access to `name` is found first, and its owner read backwards from it: a
    lazy regex for "an owner, then the access" would rescan a long name from every
    one of its characters.
    """
    escaped = re.escape(name)
    access = re.compile(rf"\.{escaped}\b|\[\s*['\"]?{escaped}['\"]?\s*\]")
    for start, end in template_blocks(template):
        code = template[start:end]
        for m in access.finditer(code):
            first = m.start()
            while first > 0 and (code[first - 1].isalnum() or code[first - 1] in "_.-[]'\""):
                first -= 1
            owner = re.search(r"[A-Za-z_]", code[first : m.start()])
            if owner is not None:
                return code[first + owner.start() : m.start()]
    return None


def _resolve(chain: str, namespace: Mapping[str, Any]) -> Any:
    """Follow `steps.check-db.output` / `json['a'][0]` through plain data; None if lost."""
    root = re.match(r"[A-Za-z_]\w*", chain)
    if root is None or root.group(0) not in namespace:
        return None
    value: Any = namespace[root.group(0)]
    for seg in _SEGMENT.finditer(chain, root.end()):
        key: Any = seg.group(1) or seg.group(2) or seg.group(3)
        if seg.group(4) is not None:
            key = int(seg.group(4))
        if is_unknown(value):
            return value
        in_mapping = isinstance(value, Mapping) and key in value
        in_list = isinstance(value, (list, tuple)) and isinstance(key, int) and key < len(value)
        if not (in_mapping or in_list):
            return None
        value = value[key]
    return value


def _unknown_chain(template: str, namespace: Mapping[str, Any]) -> str | None:
    """The first reference in `template` that runs into UNKNOWN, as the author wrote it."""
    for start, end in template_blocks(template):
        code = template[start:end]
        for m in _CHAIN.finditer(code):
            chain = m.group(0)
            if re.match(r"\s*\(", code[m.end() :]) and "." in chain:
                chain = chain.rsplit(".", 1)[0]  # `x.output.split()`: the method is not data
            if m.group(1) in namespace and _holds_unknown(_resolve(chain, namespace)):
                return chain
    return None
