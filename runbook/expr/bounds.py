"""The bounds of a template render: how big, how long and how much work it may be.

Templates are small programs (`{% for %}`, macros, filters) that an author writes
and that run on data nobody controls, so a render is held to a budget, charged as it
goes: every loop pass, call and filter is a step (at most MAX_TEMPLATE_STEPS); every
value a filter, call or operator builds, and every value printed, is work by its size
(at most MAX_TEMPLATE_WORK in all); the output is at most MAX_TEMPLATE_OUTPUT, and so
is any value built, unless it is no bigger than what it was made from (a step's large
output may be filtered, never amplified); `range()` is at most MAX_RANGE long;
and the clock is read at every charge against the render's deadline (at most
MAX_RENDER_SECONDS, sooner when the run's or step's deadline is). Where an operation
could build far more than its inputs (`center(10**9)`, `'%0999999999d' % 1`,
`'{0}{0}{0}'.format(s)`, `join` with a huge separator), the size is estimated from
its arguments and refused before any memory is taken. Going past a bound raises
TemplateLimit, naming the bound.

`runbook.expr.templating` installs all this in its sandboxed environment
(`install`, `bound_nodes`, `check_call`, `checked_result`, `check_operator`,
`bounded_template`, `printed`) and opens a budget per render (`render_budget`). The
budget lives in a ContextVar, so renders on other threads have their own; outside a
render (Jinja folding constants while it compiles) only the size checks apply.
"""

from __future__ import annotations

import contextvars
import functools
import re
import string
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

from runbook.errors import TemplateError
from runbook.expr.values import MAX_SEQUENCE_LENGTH, size_of

__all__ = [
    "MAX_RANGE",
    "MAX_RENDER_SECONDS",
    "MAX_TEMPLATE_OUTPUT",
    "MAX_TEMPLATE_STEPS",
    "MAX_TEMPLATE_WORK",
    "TemplateLimit",
    "bound_nodes",
    "bounded_iteration",
    "bounded_template",
    "check_call",
    "check_operator",
    "checked_result",
    "install",
    "printed",
    "render_budget",
]

MAX_TEMPLATE_OUTPUT: Final = 2 * 1024 * 1024
"""Characters a render may produce, and the size of any value it builds (items count
too): twice the 1 MiB an executor keeps of its output, so a step's whole output can
always be rendered while nothing bigger can be made."""
MAX_TEMPLATE_WORK: Final = 16 * MAX_TEMPLATE_OUTPUT
"""Characters and items built in all during one render."""
MAX_TEMPLATE_STEPS: Final = 100_000
"""Loop passes, calls and filters applied during one render."""
MAX_RANGE: Final = 10_000
"""The longest `range()` a template may make."""
MAX_RENDER_SECONDS: Final = 2.0
"""The longest a render may take when no deadline of the run comes sooner."""
MAX_POWER: Final = 1000
"""The largest exponent of `**`."""
MAX_INT_BITS: Final = 100_000
"""The largest number `*` and `**` may make, in bits."""

LOOP_FILTER: Final = "_runbook_loop"
CONCAT_FILTER: Final = "_runbook_concat"


class TemplateLimit(TemplateError):
    """A render went past one of its bounds; `bound` names it for the log and the operator.

    `bound` is "template size", "template loop" or "template time"; a render stopped
    by the clock (its own time bound or the run's deadline) is `timed_out`.
    """

    def __init__(self, message: str, bound: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.bound = bound
        self.timed_out = timed_out


# --- the budget of one render ---------------------------------------------------------------


class _Budget:
    """What one render has spent so far, and its deadline (monotonic clock)."""

    __slots__ = ("deadline", "seconds", "steps", "work")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.steps = 0
        self.work = 0

    def charge(self, steps: int, work: int) -> None:
        self.steps += steps
        self.work += work
        if self.steps > MAX_TEMPLATE_STEPS:
            raise TemplateLimit(
                f"template made more than {MAX_TEMPLATE_STEPS:,} loop passes, calls and "
                "filter uses (template loop bound)",
                "template loop",
            )
        if self.work > MAX_TEMPLATE_WORK:
            raise TemplateLimit(
                f"template built more than {_mib(MAX_TEMPLATE_WORK)} of values in one render "
                "(template size bound)",
                "template size",
            )
        if time.monotonic() > self.deadline:
            raise TemplateLimit(
                f"template rendering took longer than {self.seconds:.3g}s (template time bound)",
                "template time",
                timed_out=True,
            )


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "runbook_render_budget", default=None
)


@contextmanager
def render_budget(deadline: float | None = None) -> Iterator[None]:
    """Open the budget of one render (unless one is open: nested renders share it).

    `deadline` (monotonic) ends the render sooner than MAX_RENDER_SECONDS.
    """
    if _BUDGET.get() is not None:
        yield
        return
    seconds = MAX_RENDER_SECONDS
    if deadline is not None:
        seconds = max(min(seconds, deadline - time.monotonic()), 0.0)
    token = _BUDGET.set(_Budget(seconds))
    try:
        _charge(0, 0)  # a render that starts past its deadline does not start
        yield
    finally:
        _BUDGET.reset(token)


def _charge(steps: int = 1, work: int = 0) -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.charge(steps, work)


# --- sizes ----------------------------------------------------------------------------------


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):g} MiB"


def _too_big(what: str, size: int) -> TemplateLimit:
    return TemplateLimit(
        f"{what} would be {size:,} characters or more; a template may make values and "
        f"output of at most {_mib(MAX_TEMPLATE_OUTPUT)} (template size bound)",
        "template size",
    )


def _grow(what: str, estimate: int, *inputs: Any) -> None:
    """Refuse a result of `estimate` characters/items past the size bound that would be
    bigger than every input it is made from."""
    if estimate > MAX_TEMPLATE_OUTPUT and all(size_of(i, estimate) < estimate for i in inputs):
        raise _too_big(what, estimate)


def _built(what: str, value: Any, *inputs: Any) -> None:
    """Check a value an operation built against the size bound and charge it as work."""
    size = size_of(value, MAX_TEMPLATE_WORK)
    _grow(what, size, *inputs)
    _charge(0, size)


def printed(value: Any) -> None:
    """Check and charge a value about to be printed by `{{ }}`: nothing over the size
    bound is ever turned into text."""
    size = len(value) if type(value) is str else size_of(value, MAX_TEMPLATE_OUTPUT)
    if size > MAX_TEMPLATE_OUTPUT:
        raise _too_big("the printed value", size)
    _charge(0, size)


def bounded_template(template: Any, context: Mapping[str, Any]) -> str:
    """Render `template` (a jinja2 Template), stopping once the text passes the size bound."""
    pieces: list[str] = []
    size = 0
    for piece in template.generate(context):
        size += len(piece)
        if size > MAX_TEMPLATE_OUTPUT:
            raise _too_big("the rendered text", size)
        pieces.append(piece)
    return "".join(pieces)


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _number(what: str, digits: str) -> None:
    """Refuse a width or precision (written as `digits`) past the size bound."""
    number = int(digits) if len(digits) < 30 else 10**30
    if number > MAX_TEMPLATE_OUTPUT:
        raise _too_big(what, number)


def _numbers_among(values: Any) -> list[int]:
    """The integers a `*` width or a nested `{}` spec of a format could take."""
    if isinstance(values, Mapping):
        items: Any = values.values()
    elif isinstance(values, (list, tuple)):
        items = values
    else:
        items = [values]
    return [item for item in items if isinstance(item, int)]


# --- formats --------------------------------------------------------------------------------


def _printf_widths(fmt: str) -> Iterator[str]:
    """Each `%` conversion's width and precision (digits or `*`, "" when absent); a linear
    scan, so a long format string costs no more than its length."""
    i = 0
    while (i := fmt.find("%", i)) != -1:
        i += 1
        if fmt.startswith("%", i):
            i += 1
            continue
        if fmt.startswith("(", i):
            close = fmt.find(")", i)
            if close == -1:
                return
            i = close + 1
        while i < len(fmt) and fmt[i] in "-#0 +":
            i += 1
        for precision in (False, True):
            if precision:
                if not fmt.startswith(".", i):
                    break
                i += 1
            start = i
            if fmt.startswith("*", i):
                i += 1
            while i < len(fmt) and fmt[i].isdigit():
                i += 1
            yield fmt[start:i]


def _check_printf(fmt: Any, values: Any) -> None:
    """`'%0999999999d' % 1`, `'%s%s%s' % (s, s, s)`, the `format` filter."""
    if not isinstance(fmt, (str, bytes)):
        return
    text = fmt if isinstance(fmt, str) else fmt.decode("latin-1")
    conversions = 0
    for width in _printf_widths(text):
        conversions += 1
        if width == "*":
            for number in _numbers_among(values):
                _number("a '%' conversion", str(number))
        elif width:
            _number("a '%' conversion", width)
    largest = size_of(values, MAX_TEMPLATE_WORK)
    _grow("the formatted text", len(text) + conversions * largest, fmt, values)


def _check_format(fmt: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """`'{:>999999999}'.format(1)`, `'{0}{0}{0}'.format(s)`, `format_map`."""
    try:
        specs = [spec for _, name, spec, _ in string.Formatter().parse(fmt) if name is not None]
    except ValueError:
        return  # str.format says what is wrong
    values = [*args, *kwargs.values()]
    if len(args) == 1 and isinstance(args[0], Mapping) and not kwargs:  # format_map
        values += list(args[0].values())
    for spec in specs:
        if spec and "{" in spec:
            for number in _numbers_among(values):
                _number("a format width", str(number))
        for digits in re.findall(r"\d+", spec or ""):
            _number("a format width", digits)
    largest = max((size_of(v, MAX_TEMPLATE_WORK) for v in values), default=0)
    _grow("the formatted text", len(fmt) + len(specs) * largest, fmt, *values)


# --- operators, calls, filters, loops -------------------------------------------------------


def check_operator(operator: str, left: Any, right: Any) -> None:
    """Refuse `'x' * 10**9`, `9 ** 9 ** 9`, `'%0999999999d' % 1`, or `s + s` past the
    size bound, before they take the memory or the CPU."""
    if operator == "**" and isinstance(right, int) and abs(right) > MAX_POWER:
        raise TemplateError(f"exponent {right} is larger than {MAX_POWER}")
    if operator in ("*", "**") and isinstance(left, int) and isinstance(right, int):
        bits = left.bit_length() + right.bit_length()
        if operator == "**":
            bits = left.bit_length() * right
        if bits > MAX_INT_BITS:
            raise TemplateError(f"result would be a number of more than {MAX_INT_BITS:,} bits")
    if operator == "*":
        for sequence, count in ((left, right), (right, left)):
            if (
                isinstance(count, int)
                and isinstance(sequence, (str, bytes, list, tuple))
                and size_of(sequence, MAX_SEQUENCE_LENGTH) * count > MAX_SEQUENCE_LENGTH
            ):
                raise TemplateError(f"result would be longer than {MAX_SEQUENCE_LENGTH} items")
    elif operator == "%":
        _check_printf(left, right)
    elif operator == "+" and isinstance(left, (str, bytes, list, tuple)):
        total = size_of(left, MAX_TEMPLATE_WORK) + size_of(right, MAX_TEMPLATE_WORK)
        _grow("the sum", total, left, right)
    _charge()


def check_call(function: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, ...]:
    """Charge a call and refuse one that would build something huge: `'x'.ljust(10**9)`,
    a `join` with a huge separator, `'{:>999999999}'.format(1)`, `lipsum(10**6)`.

    Returns `args`, with an iterable that needs counting turned into a list.
    """
    _charge()
    name = getattr(function, "__name__", "")
    owner = getattr(function, "__self__", None)
    first: Any = args[0] if args else None
    if isinstance(owner, (str, bytes, bytearray)):
        if name in ("center", "ljust", "rjust", "zfill"):
            _grow(f".{name}()", _int(first if args else kwargs.get("width")), owner)
        elif name == "expandtabs":
            tabs = owner.count("\t" if isinstance(owner, str) else b"\t")  # type: ignore[arg-type]
            size = _int(first if args else kwargs.get("tabsize", 8))
            _grow(".expandtabs()", len(owner) + tabs * size, owner)
        elif name == "replace" and len(args) >= 2 and type(args[0]) is type(args[1]):
            old, new = args[0], args[1]
            if isinstance(old, (str, bytes)) and isinstance(new, (str, bytes)):
                hits = len(owner) + 1 if not old else owner.count(old)  # type: ignore[arg-type]
                _grow(".replace()", len(owner) + hits * len(new), owner)
        elif name == "join" and args:
            items = list(first)
            args = (items, *args[1:])
            estimate = size_of(items, MAX_TEMPLATE_WORK) + len(owner) * max(len(items) - 1, 0)
            _grow(".join()", estimate, *items)
        elif name == "translate" and isinstance(first, Mapping):
            longest = max((size_of(v, MAX_TEMPLATE_WORK) for v in first.values()), default=1)
            _grow(".translate()", len(owner) * max(longest, 1), owner)
    wrapped = getattr(function, "__wrapped__", None)  # str.format, as the sandbox wraps it
    if name in ("format", "format_map") and isinstance(getattr(wrapped, "__self__", None), str):
        _check_format(wrapped.__self__, args, kwargs)  # type: ignore[union-attr]
    if name == "generate_lorem_ipsum":  # the `lipsum` global: paragraphs of up to `max` words
        named = dict(zip(("n", "html", "min", "max"), args, strict=False))
        given = {"n": 5, "max": 100, **named, **kwargs}
        _grow("lipsum()", _int(given["n"]) * _int(given["max"]) * 12)
    return args


def checked_result(value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    """Check and charge what a call returned (a macro's text, a method's result)."""
    _built("the result of a call", value, *args, *kwargs.values())
    return value


def _check_filter(name: str, args: list[Any], kwargs: Mapping[str, Any]) -> None:
    """Refuse a filter whose result would be far bigger than its inputs, from its arguments
    alone; `args[0]` (the filtered value) may be replaced by a list when it must be counted."""
    value, rest = args[0], args[1:]

    def arg(index: int, key: str, default: Any) -> Any:
        return rest[index] if len(rest) > index else kwargs.get(key, default)

    text = value if isinstance(value, str) else None
    if name == "center":
        _grow("center()", _int(arg(0, "width", 80)), value)
    elif name == "indent" and text is not None:
        width = arg(0, "width", 4)
        unit = len(width) if isinstance(width, str) else _int(width)
        _grow("indent()", len(text) + unit * (text.count("\n") + 1), text)
    elif name == "wordwrap" and text is not None:
        wrap = str(arg(2, "wrapstring", None) or "\n")
        lines = len(text) // max(_int(arg(0, "width", 79)), 1) + len(text.split()) + 1
        _grow("wordwrap()", len(text) + lines * len(wrap), text)
    elif name == "format":
        _check_printf(value, dict(kwargs) or tuple(rest))
    elif name == "replace" and text is not None:
        old, new, count = arg(0, "old", ""), arg(1, "new", ""), arg(2, "count", None)
        if isinstance(old, str) and isinstance(new, str):
            hits = len(text) + 1 if old == "" else text.count(old)
            if isinstance(count, int) and count >= 0:
                hits = min(hits, count)
            _grow("replace()", len(text) + hits * len(new), text)
    elif name == "join":
        items = list(value)
        args[0] = items
        separator = size_of(arg(0, "d", ""), MAX_TEMPLATE_WORK)
        estimate = size_of(items, MAX_TEMPLATE_WORK) + separator * max(len(items) - 1, 0)
        _grow("join()", estimate, *items)
    elif name in ("batch", "slice"):
        parts = _int(arg(0, "linecount" if name == "batch" else "slices", 0))
        if parts > MAX_RANGE:
            raise TemplateLimit(
                f"{name}() into {parts:,} parts is more than {MAX_RANGE:,} (template loop bound)",
                "template loop",
            )
    elif name == "tojson":
        indent = arg(0, "indent", None)
        width = len(indent) if isinstance(indent, str) else _int(indent)
        _grow("tojson()", size_of(value, MAX_TEMPLATE_WORK) * (width + 2), value)
    elif name == "sum" and not isinstance(arg(1, "start", 0), (int, float)):
        items = list(value)
        args[0] = items
        size = size_of(items, MAX_TEMPLATE_WORK)
        _grow("sum()", size, *items)
        _charge(0, size * len(items))  # adding lists one by one copies the total each time


def _guarded(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """`function` (a filter) with its arguments checked first and its result charged."""
    skip = 0 if getattr(function, "jinja_pass_arg", None) is None else 1

    @functools.wraps(function)
    def filter_within_bounds(*args: Any, **kwargs: Any) -> Any:
        _charge()
        values = list(args[skip:])
        if values:
            _check_filter(name, values, kwargs)
        result = function(*args[:skip], *values, **kwargs)
        _built(f"the result of the '{name}' filter", result, *values, *kwargs.values())
        return result

    return filter_within_bounds


def _loop(context: Any, iterable: Any, literal: int = 0) -> Iterator[Any]:
    """Every `{% for %}` iterates through this (`bound_nodes` puts it there)."""
    return bounded_iteration(iterable, literal)


def bounded_iteration(iterable: Any, literal: int = 0) -> Iterator[Any]:
    """`iterable`, charging a step per pass plus the text the loop body writes itself
    (`literal`), which is output, or a set-block's buffer, on every pass."""
    budget = _BUDGET.get()
    for item in iterable:
        if budget is not None:
            budget.charge(1, literal)
        yield item


def _concat(context: Any, parts: list[Any]) -> str:
    """`a ~ b`: Jinja's concatenation, with the size of the result known before it is made."""
    texts = [str(part) for part in parts]
    total = sum(len(text) for text in texts)
    _grow("the joined text", total, *texts)
    _charge(1, total)
    return "".join(texts)


def install(environment: Any) -> None:
    """Bound `environment` (a jinja2 sandbox): every filter guarded, `range` and `lipsum`
    limited, and the filters `bound_nodes` routes loops and `~` through."""
    from jinja2 import pass_context
    from jinja2.utils import generate_lorem_ipsum

    def bounded_range(*args: int) -> range:
        numbers = range(*args)
        if len(numbers) > MAX_RANGE:
            raise TemplateLimit(
                f"range() of {len(numbers):,} numbers is longer than {MAX_RANGE:,} "
                "(template loop bound)",
                "template loop",
            )
        _charge(0, len(numbers))
        return numbers

    environment.filters = {
        name: _guarded(name, function) for name, function in environment.filters.items()
    }
    environment.filters[LOOP_FILTER] = pass_context(_loop)
    environment.filters[CONCAT_FILTER] = pass_context(_concat)
    environment.globals["range"] = bounded_range
    environment.globals["lipsum"] = generate_lorem_ipsum  # checked by name in check_call


def bound_nodes(tree: Any, environment: Any) -> Any:
    """Rewrite a parsed template so every `{% for %}` iterates through LOOP_FILTER and
    every `~` joins through CONCAT_FILTER (Jinja offers no hook for either)."""
    from jinja2 import nodes
    from jinja2.visitor import NodeTransformer

    def internal(node: Any, name: str, args: list[Any]) -> Any:
        wrapped = nodes.Filter(node, name, args, [], None, None, lineno=node.lineno)
        return wrapped.set_lineno(node.lineno).set_environment(environment)

    class Bound(NodeTransformer):
        def visit_For(self, node: Any) -> Any:  # noqa: N802 - jinja2's visitor names
            self.generic_visit(node)
            literal = sum(len(data.data) for data in node.find_all(nodes.TemplateData))
            node.iter = internal(node.iter, LOOP_FILTER, [nodes.Const(literal)])
            return node

        def visit_Concat(self, node: Any) -> Any:  # noqa: N802
            self.generic_visit(node)
            return internal(nodes.List(node.nodes, lineno=node.lineno), CONCAT_FILTER, [])

    return Bound().visit(tree)
