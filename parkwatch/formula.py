"""Virtual meters: a meter's ``formula`` (e.g. ``a1-main - a1-pv``) parsed once and evaluated
over numpy arrays.

A formula is arithmetic (``+ - * /``, parentheses, numbers) over meter ids. Meter ids are slugs
and may contain ``-``, so they are read as whole words first: ``a1-main - a1-pv`` names two
meters, ``a1-main-a1-pv`` would be one (and must exist). Anything else — calls, attributes,
names that are not meters of the park — is refused when the site is loaded, with the reason.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)|(?P<id>[a-z0-9][a-z0-9_-]*)|(?P<op>[-+*/()]))"
)
_OPS: dict[type[ast.operator], Callable[[FloatArray, FloatArray], FloatArray]] = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.divide,
}


class FormulaError(ValueError):
    pass


@dataclass(frozen=True)
class Formula:
    text: str
    meters: tuple[str, ...]  # the meters it reads, in order of first appearance
    _tree: ast.expr

    def evaluate(self, values: Mapping[str, FloatArray]) -> FloatArray:
        """The formula over arrays of the same shape (NaN in, NaN out: a gap stays a gap)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(self._eval(self._tree, values), dtype=np.float64)

    def _eval(self, node: ast.expr, values: Mapping[str, FloatArray]) -> FloatArray | float:
        if isinstance(node, ast.Constant):
            return float(node.value)  # type: ignore[arg-type]  # numbers only: checked at parse
        if isinstance(node, ast.Name):
            return values[self.meters[int(node.id[1:])]]
        if isinstance(node, ast.UnaryOp):
            inner = self._eval(node.operand, values)
            return -inner if isinstance(node.op, ast.USub) else inner
        assert isinstance(node, ast.BinOp)
        left = self._eval(node.left, values)
        right = self._eval(node.right, values)
        return _OPS[type(node.op)](np.asarray(left), np.asarray(right))

    def is_linear_sum(self) -> bool:
        """Only ``+``/``-`` of meters (and no constants): counters stay counters."""

        def ok(node: ast.expr) -> bool:
            if isinstance(node, ast.Name):
                return True
            if isinstance(node, ast.UnaryOp):
                return ok(node.operand)
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
                return ok(node.left) and ok(node.right)
            return False

        return ok(self._tree)


def parse_formula(text: str, known: Collection[str]) -> Formula:
    """Parse ``text``; every id must be in ``known``."""
    pieces: list[str] = []
    meters: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise FormulaError(f"formula {text!r}: cannot read {text[pos : pos + 20]!r}")
        pos = match.end()
        if match["id"] is not None:
            ident = match["id"]
            if ident not in known:
                raise FormulaError(f"formula {text!r}: {ident!r} is not a meter of this park")
            if ident not in meters:
                meters.append(ident)
            pieces.append(f"m{meters.index(ident)}")
        else:
            pieces.append(match["num"] or match["op"])
    if not meters:
        raise FormulaError(f"formula {text!r} names no meter")
    try:
        tree = ast.parse(" ".join(pieces), mode="eval").body
    except SyntaxError as exc:
        raise FormulaError(f"formula {text!r} is not arithmetic: {exc.msg}") from None
    for node in ast.walk(tree):
        allowed = (
            ast.BinOp,
            ast.UnaryOp,
            ast.Name,
            ast.Constant,
            ast.operator,
            ast.unaryop,
            ast.Load,
        )
        if not isinstance(node, allowed):
            raise FormulaError(f"formula {text!r}: {type(node).__name__} is not allowed")
        if isinstance(node, ast.BinOp) and type(node.op) not in _OPS:
            raise FormulaError(f"formula {text!r}: only + - * / are allowed")
        if isinstance(node, ast.UnaryOp) and not isinstance(node.op, ast.USub | ast.UAdd):
            raise FormulaError(f"formula {text!r}: only + - * / are allowed")
    return Formula(text, tuple(meters), tree)
