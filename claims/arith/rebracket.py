"""Re-bracketing: the same operands and operators under another parenthesisation.

A parenthesised expression of the fixture's data (``41-((6+9)-7)=``) is a binary tree over
*terms* (an operand, or a product ``a*b`` of two literals, which never nests) joined by ``+`` and
``-``; every operation except the outermost is wrapped in parentheses. Any other tree over the
same terms and operators, written the same way, has the same number of parenthesis pairs, so
the same characters and the same token length, but its own value:
``41-((6+9)-7)`` (33) and ``(41-(6+9))-7`` (19) differ only in where the parentheses sit.

Such a pair is the study's clean/corrupt pair for patching: what differs is the bracketing
alone, which is what a head that "carries parentheses" must carry.
"""

from __future__ import annotations

import random
from functools import lru_cache

__all__ = ["terms_and_operators", "bracketings", "rebracket", "inside_parentheses", "value"]


def _tokens(body: str) -> list[str]:
    out: list[str] = []
    for ch in body:
        if ch.isdigit() and out and out[-1].isdigit():
            out[-1] += ch
        else:
            out.append(ch)
    return out


def terms_and_operators(expression: str) -> tuple[list[str], list[str]]:
    """``"41-((6+9)-2*3)="`` -> (["41", "6", "9", "2*3"], ["-", "+", "-"]): the terms (operands
    and products of two literals) and the ``+``/``-`` operators between them, in order."""
    body = expression.removesuffix("=")
    if not body or set(body) - set("0123456789+-*()"):
        raise ValueError(f"{expression!r} is not an arithmetic expression over digits, + - * and parentheses")
    flat = [t for t in _tokens(body) if t not in "()"]
    terms, ops = [flat[0]], []
    i = 1
    while i < len(flat):
        op, operand = flat[i], flat[i + 1]
        if op == "*":
            terms[-1] += "*" + operand
        else:
            ops.append(op)
            terms.append(operand)
        i += 2
    return terms, ops


@lru_cache(maxsize=None)
def _shapes(n: int) -> tuple[tuple, ...]:
    """Every binary tree over `n` leaves: None for a leaf, (left, right) for a node."""
    if n == 1:
        return (None,)
    return tuple((a, b) for k in range(1, n) for a in _shapes(k) for b in _shapes(n - k))


def _render(shape, terms: list[str], ops: list[str], top: bool) -> tuple[str, list[str], list[str]]:
    if shape is None:
        term = terms[0]
        return (term if top or "*" not in term else f"({term})"), terms[1:], ops
    left, terms, ops = _render(shape[0], terms, ops, False)
    op, ops = ops[0], ops[1:]
    right, terms, ops = _render(shape[1], terms, ops, False)
    body = left + op + right
    return (body if top else f"({body})"), terms, ops


def bracketings(expression: str) -> list[str]:
    """Every bracketing of the expression's terms and operators, in the data's style (each
    operation but the outermost wrapped), as prompts ending in ``=``; the expression's own is
    among them."""
    terms, ops = terms_and_operators(expression)
    return [_render(shape, terms, ops, True)[0] + "=" for shape in _shapes(len(terms))]


def value(prompt: str) -> int:
    """The integer value of a prompt (with or without the trailing ``=``)."""
    return int(eval(prompt.removesuffix("="), {"__builtins__": {}}, {}))  # digits and operators only


def rebracket(expression: str, rng: random.Random, *, max_abs: int = 999) -> str | None:
    """Another bracketing of `expression` with a different value (``|value| <= max_abs``),
    drawn with `rng`; None when there is none (e.g. ``1+2+3``: every bracketing is worth 6)."""
    own = value(expression)
    options = [b for b in bracketings(expression)
               if b != expression and len(b) == len(expression) and value(b) != own and abs(value(b)) <= max_abs]
    return rng.choice(options) if options else None


def inside_parentheses(expression: str) -> list[bool]:
    """Per character: True inside some parenthesis pair (the parentheses included)."""
    depth, out = 0, []
    for ch in expression:
        depth += ch == "("
        out.append(depth > 0)
        depth -= ch == ")"
    return out
