"""Pytest-style explanations of a failed expectation (`assert 503 == 200 (status)`).

After `runbook.expr.expression` has evaluated an expression and found it false,
these methods walk the tree again, using the value the evaluation remembered
for each node, to show the part that made it false with its values and the
source it came from. It is separate from the evaluator because it only formats
what the evaluation already computed; `_Evaluation` inherits it as a mixin.
"""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Any

from runbook.expr.compile import _COMPARE
from runbook.expr.values import UNKNOWN, _short_repr

if TYPE_CHECKING:
    from runbook.expr.expression import Expression


class _Explainer:
    """The explaining half of `_Evaluation`: reads its `values` and `failed_link`."""

    expr: Expression
    values: dict[int, Any]
    failed_link: dict[int, int]

    if TYPE_CHECKING:

        def src(self, node: ast.expr) -> str: ...

    # --- explanations ------------------------------------------------------------------------

    def explain(self) -> str:
        """`assert <values> (<sources>)` for the part of the expression that made it false."""
        text, sources = self._explain(self.expr._tree.body)
        unique = list(dict.fromkeys(sources))
        return f"assert {text}" + (f" ({', '.join(unique)})" if unique else "")

    def _explain(self, node: ast.expr) -> tuple[str, list[str]]:
        if isinstance(node, ast.Compare):
            return self._explain_compare(node)
        if isinstance(node, ast.BoolOp):
            return self._explain_boolop(node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            text, sources = self._explain(node.operand)
            nested = isinstance(node.operand, (ast.Compare, ast.BoolOp, ast.BinOp))
            return (f"not ({text})" if nested else f"not {text}"), sources
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
            return self._explain_operands(node.left, ["matches"], [node.right])
        return self._explain_operands(node, [], [])

    def _explain_compare(self, node: ast.Compare) -> tuple[str, list[str]]:
        link = self.failed_link.get(id(node))
        if link is None:  # the comparison held (e.g. under `not`): show the whole chain
            return self._explain_operands(
                node.left, [_COMPARE[type(op)][0] for op in node.ops], node.comparators
            )
        left = node.left if link == 0 else node.comparators[link - 1]
        return self._explain_operands(
            left, [_COMPARE[type(node.ops[link])][0]], [node.comparators[link]]
        )

    def _explain_operands(
        self, first: ast.expr, symbols: list[str], rest: list[ast.expr]
    ) -> tuple[str, list[str]]:
        parts, sources = [self._value_text(first)], []
        for symbol, operand in zip(symbols, rest, strict=True):
            parts += [symbol, self._value_text(operand)]
        for operand in (first, *rest):
            if not _is_literal(operand):
                sources.append(self.src(operand))
        return " ".join(parts), sources

    def _value_text(self, node: ast.expr) -> str:
        return _short_repr(self.values[id(node)]) if id(node) in self.values else "?"

    def _explain_boolop(self, node: ast.BoolOp) -> tuple[str, list[str]]:
        evaluated = [n for n in node.values if id(n) in self.values]
        if isinstance(node.op, ast.And):
            for operand in evaluated:
                value = self.values[id(operand)]
                if value is not UNKNOWN and not value:
                    return self._explain(operand)
        texts, sources = [], []
        for operand in evaluated:
            text, found = self._explain(operand)
            texts.append(text)
            sources += found
        return " or ".join(texts), sources


def _is_literal(node: ast.expr) -> bool:
    """Whether `node` is written-out data (`200`, `-1`, `[200, 204]`), whose source adds nothing."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.UnaryOp):
        return isinstance(node.operand, ast.Constant)
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return all(_is_literal(item) for item in node.elts)
    if isinstance(node, ast.Dict):
        return all(k is not None and _is_literal(k) for k in node.keys) and all(
            _is_literal(v) for v in node.values
        )
    return False
