"""Find what a template or expression refers to, without importing Jinja.

`validate` must say "params.servce is not a parameter" quickly (it runs in
pre-commit hooks), so references are found with a regular expression over the
text instead of a full template parse. It recognises `params.x`, `params['x']`,
`steps.x`, `vars.x`, `target.x` and `inventory.x`; anything fancier is left to
the renderer, which fails loudly (StrictUndefined) at plan time.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from runbook.expr.compile import template_blocks

ROOTS = ("params", "steps", "vars", "target", "inventory")

_REF = re.compile(
    r"(?<![\w.])(?P<root>params|steps|vars|target|inventory)"
    r"(?:\.(?P<dotted>[A-Za-z_][\w-]*)|\[\s*['\"](?P<quoted>[^'\"]+)['\"]\s*\])"
)


class Reference(NamedTuple):
    root: str
    name: str


def expression_refs(text: str) -> list[Reference]:
    """References in a bare expression such as a `when:` or `expect:` entry."""
    found: list[Reference] = []
    for m in _REF.finditer(text):
        name = m.group("dotted") or m.group("quoted")
        # `steps.health-check` is not valid in an expression; take the id up to the first
        # character an id cannot contain so `steps.db.passed` yields `db`.
        found.append(Reference(m.group("root"), name))
    return found


def template_refs(text: str) -> list[Reference]:
    """References inside the `{{ ... }}` and `{% ... %}` blocks of a template string."""
    found: list[Reference] = []
    for start, end in template_blocks(text):  # one pass, however many blocks are unclosed
        found.extend(expression_refs(text[start:end]))
    return found
