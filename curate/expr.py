"""Row filters as short expressions: ``keep and level == 5``, ``stat_aesthetic >= 6``.

Contract: ``parse(text)`` returns ``(expression, columns)``: a ``pyarrow.compute.Expression``
and the column names it reads. The language is a safe subset of Python's expression
syntax: column names, numbers, strings, ``True``/``False``/``None``; ``and``/``or``/``not``;
comparisons ``== != < <= > >=`` (chains allowed), ``in``/``not in`` a list of constants,
``is None``/``is not None``; ``+ - * /``. Anything else (calls, attributes, subscripts) is an
``ExprError`` naming what was found. A null compared to anything is null, and a filter keeps
only rows where the expression is true: a row a stage never measured does not pass.
"""
from __future__ import annotations

import ast
import operator

import pyarrow as pa
import pyarrow.compute as pc


class ExprError(ValueError):
    """A filter expression that cannot be parsed or uses what the language does not allow."""


_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge}
_ARITH = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _constant(node: ast.AST):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)) or (
        isinstance(node, ast.Constant) and node.value is None
    ):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        return -node.operand.value
    raise ExprError(f"expected a constant, found {ast.unparse(node)!r}")


class _Builder:
    def __init__(self) -> None:
        self.columns: list[str] = []

    def build(self, node: ast.AST) -> pc.Expression:
        if isinstance(node, ast.BoolOp):
            parts = [self.build(v) for v in node.values]
            out = parts[0]
            for p in parts[1:]:
                out = (out & p) if isinstance(node.op, ast.And) else (out | p)
            return out
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return ~self.build(node.operand)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return pc.scalar(_constant(node))
        if isinstance(node, ast.Compare):
            return self._compare(node)
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
            return _ARITH[type(node.op)](self.build(node.left), self.build(node.right))
        if isinstance(node, ast.Name):
            if node.id not in self.columns:
                self.columns.append(node.id)
            return pc.field(node.id)
        if isinstance(node, ast.Constant):
            return pc.scalar(_constant(node))
        raise ExprError(f"not allowed in a filter: {ast.unparse(node)!r}")

    def _compare(self, node: ast.Compare) -> pc.Expression:
        out = None
        left = node.left
        for op, right in zip(node.ops, node.comparators):
            if isinstance(op, (ast.In, ast.NotIn)):
                if not isinstance(right, (ast.List, ast.Tuple, ast.Set)):
                    raise ExprError(f"`in` needs a list of constants, found {ast.unparse(right)!r}")
                values = [_constant(e) for e in right.elts]
                term = self.build(left).isin(pa.array(values))
                term = ~term if isinstance(op, ast.NotIn) else term
            elif isinstance(op, (ast.Is, ast.IsNot)):
                if _constant(right) is not None:
                    raise ExprError("`is` only compares with None")
                term = self.build(left).is_null()
                term = ~term if isinstance(op, ast.IsNot) else term
            elif type(op) in _COMPARE:
                term = _COMPARE[type(op)](self.build(left), self.build(right))
            else:
                raise ExprError(f"operator not allowed: {type(op).__name__}")
            out = term if out is None else (out & term)
            left = right
        return out


def parse(text: str) -> tuple[pc.Expression, list[str]]:
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as err:
        raise ExprError(f"cannot parse filter {text!r}: {err.msg}") from None
    builder = _Builder()
    return builder.build(tree.body), builder.columns
