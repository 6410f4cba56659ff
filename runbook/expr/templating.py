"""Sandboxed rendering of `{{ params.x }}` / `{{ steps.id.output }}` in step configs.

Values reach commands through here, so this is where injection is stopped:
templates render in Jinja's immutable sandbox (no Python internals, no
mutation of the namespace), undefined names fail loudly instead of rendering
as empty text, and in shell mode every `{{ ... }}` output is shell-quoted so a
parameter can never add an argument, a pipe or a second command. For dry-runs,
a value that is not known until the run (`UNKNOWN`) raises `UnknownValue`
naming what it depends on, so the planner shows the step as `unknown` rather
than guessing. Jinja is imported on first render only: `runbook --help` and
`validate` never pay for it.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, NoReturn

from runbook.errors import TemplateError
from runbook.expr.expression import MAX_SEQUENCE_LENGTH, is_unknown, rewrite_hyphenated_ids

__all__ = ["Renderer", "UnknownValue", "has_template", "shell_join", "shell_quote"]

_BLOCK = re.compile(r"(\{\{|\{%)(.*?)(\}\}|%\})", re.S)
_SINGLE_EXPRESSION = re.compile(r"\s*\{\{(?![-+])((?:(?!\{\{|\}\}).)*?)(?<![-+])\}\}\s*", re.S)
_CHAIN = re.compile(
    r"(?<![\w.'\"])([A-Za-z_]\w*)((?:\.[A-Za-z0-9_][\w-]*|\[\s*(?:'[^']*'|\"[^\"]*\"|\d+)\s*\])*)"
)
_SEGMENT = re.compile(r"\.([\w-]+)|\[\s*(?:'([^']*)'|\"([^\"]*)\"|(\d+))\s*\]")
_PLAIN_TYPES = (str, int, float, bool, type(None), list, tuple, dict)
_MAX_POWER = 1000
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
    return value


def _finalize_shell(value: Any) -> str:
    _reject_unknown(value)
    return shell_quote(value)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse `{{ 'x' * 10**9 }}` and `{{ 9 ** 9 ** 9 }}` before they exhaust memory/CPU."""
    if operator == "**" and isinstance(right, int) and abs(right) > _MAX_POWER:
        raise TemplateError(f"exponent {right} is larger than {_MAX_POWER}")
    if operator == "*":
        for sequence, count in ((left, right), (right, left)):
            if (
                isinstance(count, int)
                and isinstance(sequence, (str, list, tuple))
                and len(sequence) * count > MAX_SEQUENCE_LENGTH
            ):
                raise TemplateError(f"result would be longer than {MAX_SEQUENCE_LENGTH} items")


@lru_cache(maxsize=2)
def _environment(shell: bool) -> Any:
    """The shared sandbox; one per quoting mode, built on first use (imports jinja2)."""
    from jinja2 import StrictUndefined
    from jinja2.runtime import Context
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class RunbookEnvironment(ImmutableSandboxedEnvironment):
        """Mapping keys win over methods (`steps.update` is the step, not dict.update),
        and UNKNOWN turns into an _UnknownRef that remembers how it was reached."""

        intercepted_binops = frozenset({"*", "**"})

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
            _check_binop(operator, left, right)
            return super().call_binop(context, operator, left, right)

    return RunbookEnvironment(
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=_finalize_shell if shell else _finalize_plain,
    )


def _prepare(source: str) -> str:
    """Rewrite `steps.check-db` inside `{{ }}`/`{% %}` blocks; literal text is untouched."""
    return _BLOCK.sub(
        lambda m: m.group(1) + rewrite_hyphenated_ids(m.group(2)) + m.group(3), source
    )


@lru_cache(maxsize=1024)
def _template(source: str, shell: bool) -> Any:
    return _environment(shell).from_string(_prepare(source))


@lru_cache(maxsize=1024)
def _expression(source: str) -> Any:
    return _environment(False).compile_expression(
        rewrite_hyphenated_ids(source), undefined_to_none=False
    )


class Renderer:
    """Renders templates against one namespace (`params`, `steps`, `vars`, `target`, ...).

    Cheap to create: environments and compiled templates are cached per
    process, so a 200-step plan compiles each distinct template once.
    """

    def __init__(self, namespace: Mapping[str, Any]) -> None:
        self.namespace = namespace
        self._context = {str(k): _unknown_to_ref(v, k) for k, v in namespace.items()}

    def render_text(self, template: str, *, shell: bool = False) -> str:
        """Render to text; with `shell=True` every `{{ ... }}` output is one quoted word."""
        if not has_template(template):
            return template
        with self._errors(template):
            return str(_template(template, shell).render(self._context))

    def render_value(self, value: Any, *, shell_fields: tuple[str, ...] = ()) -> Any:
        """Render every string inside dicts/lists; top-level keys in `shell_fields` are quoted.

        A string that is exactly one `{{ expr }}` keeps the expression's type,
        so `timeout: "{{ params.t }}"` yields an int (outside shell fields).
        """
        if shell_fields and isinstance(value, Mapping):
            return {
                key: self._render_nested(item, shell=key in shell_fields)
                for key, item in value.items()
            }
        return self._render_nested(value, shell=False)

    def _render_nested(self, value: Any, *, shell: bool) -> Any:
        if isinstance(value, str):
            return self._render_string(value, shell=shell)
        if isinstance(value, Mapping):
            return {key: self._render_nested(item, shell=shell) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            items = [self._render_nested(item, shell=shell) for item in value]
            return items if isinstance(value, list) else tuple(items)
        return value

    def _render_string(self, text: str, *, shell: bool) -> Any:
        if not has_template(text):
            return text
        single = None if shell else _SINGLE_EXPRESSION.fullmatch(text)
        if single is None:
            return self.render_text(text, shell=shell)
        with self._errors(text):
            value = _expression(single.group(1))(**self._context)
            _reject_unknown(value)
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
        return f"{owner!r} has no attribute {name!r} in template {template!r}{hint}"


def _did_you_mean(name: str, options: Mapping[Any, Any]) -> str:
    close = difflib.get_close_matches(name, [str(k) for k in options], n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _owner_of(name: str, template: str) -> str | None:
    """The expression in `template` whose attribute `name` is missing: `params` for
    `params.servce`."""
    escaped = re.escape(name)
    pattern = rf"([A-Za-z_][\w.\-\[\]'\"]*?)(?:\.{escaped}\b|\[\s*['\"]?{escaped}['\"]?\s*\])"
    for block in _BLOCK.finditer(template):
        m = re.search(pattern, block.group(2))
        if m:
            return m.group(1)
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
    for block in _BLOCK.finditer(template):
        code = block.group(2)
        for m in _CHAIN.finditer(code):
            chain = m.group(0)
            if re.match(r"\s*\(", code[m.end() :]) and "." in chain:
                chain = chain.rsplit(".", 1)[0]  # `x.output.split()`: the method is not data
            if m.group(1) in namespace and _holds_unknown(_resolve(chain, namespace)):
                return chain
    return None
