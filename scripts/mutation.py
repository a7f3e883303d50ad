"""Mutants of one Python module: small changes a test suite should notice, made on the AST.

Each mutant replaces one span of the source text with new text, so the mutated file keeps
its line numbers and comments, and a survivor can be shown as the line it changed. The
operators (the changes a deleted or shifted guard would make):
  comparison swapped      < <=, > >=, == !=, in / not in, is / is not
  integer shifted         n -> n+1 and n -> n-1
  boolean operator        and <-> or
  `not` removed           not x -> x
  boolean flipped         True <-> False
  `if` forced             the condition -> True, and -> False
  return value dropped    return x -> return None
  string emptied          "x" -> "" (not docstrings, f-string text or exception messages)
  guard exit removed      a `raise` or `return` directly inside an `if` -> pass
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from typing import NamedTuple

COMPARISON_SWAPS: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In,
    ast.Is: ast.IsNot, ast.IsNot: ast.Is,
}
COMPARISON_TEXT = {
    ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
    ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not",
}


class Mutant(NamedTuple):
    line: int  # 1-based line of the change
    description: str
    start: int  # the replaced span of the source, as character offsets
    end: int
    replacement: str
    original_line: str  # the source line, stripped: with the description, a stable id
    mutated_line: str  # that line after the change, stripped (its first line if several)

    def apply(self, source: str) -> str:
        return source[:self.start] + self.replacement + source[self.end:]


def mutants_of(source: str) -> list[Mutant]:
    """Every mutant of the module's source, in source order; each one parses."""
    tree = ast.parse(source)
    offsets = _Offsets(source)
    found = []
    for node, description, replacement in _Walker().changes(tree):
        start, end = offsets.span(node)
        mutant = _mutant(source, offsets, node.lineno, description, start, end, replacement)
        if _parses(mutant.apply(source)):
            found.append(mutant)
    return sorted(found, key=lambda m: (m.start, m.end, m.description))


def _mutant(source: str, offsets: _Offsets, line: int, description: str, start: int,
            end: int, replacement: str) -> Mutant:
    original = offsets.line_text(line)
    line_start = offsets.line_starts[line - 1]
    after = source[line_start:start] + replacement + source[end:]
    mutated = after.split("\n", 1)[0]
    return Mutant(line, description, start, end, replacement, original.strip(), mutated.strip())


def _parses(source: str) -> bool:
    try:
        ast.parse(source)
    except SyntaxError:
        return False
    return True


class _Offsets:
    """AST positions (line, UTF-8 byte column) as character offsets into the source."""

    def __init__(self, source: str) -> None:
        self.lines = source.splitlines(keepends=True)
        self.line_starts = []
        total = 0
        for text in self.lines:
            self.line_starts.append(total)
            total += len(text)

    def line_text(self, line: int) -> str:
        return self.lines[line - 1].rstrip("\r\n")

    def offset(self, line: int, byte_column: int) -> int:
        text = self.lines[line - 1].encode()[:byte_column].decode()
        return self.line_starts[line - 1] + len(text)

    def span(self, node: ast.AST) -> tuple[int, int]:
        return (self.offset(node.lineno, node.col_offset),
                self.offset(node.end_lineno, node.end_col_offset))


class _Walker:
    """Finds the changes: (node whose source span is replaced, description, new text)."""

    def changes(self, tree: ast.Module) -> Iterator[tuple[ast.AST, str, str]]:
        yield from self._visit(tree, skip=_skipped_nodes(tree))

    def _visit(self, node: ast.AST, skip: set[int]) -> Iterator[tuple[ast.AST, str, str]]:
        if id(node) in skip:
            return
        yield from self._changes_of(node)
        for child in ast.iter_child_nodes(node):
            yield from self._visit(child, skip)

    def _changes_of(self, node: ast.AST) -> Iterator[tuple[ast.AST, str, str]]:
        if isinstance(node, ast.Compare):
            yield from _comparison_swaps(node)
        elif isinstance(node, ast.Constant):
            yield from _constant_changes(node)
        elif isinstance(node, ast.BoolOp):
            swapped = ast.BoolOp(ast.Or() if isinstance(node.op, ast.And) else ast.And(),
                                 node.values)
            before, after = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
            yield node, f"`{before}` -> `{after}`", f"({ast.unparse(swapped)})"
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            yield node, "`not` removed", f"({ast.unparse(node.operand)})"
        elif isinstance(node, ast.If):
            yield node.test, "`if` condition -> True", "True"
            yield node.test, "`if` condition -> False", "False"
            for statement in node.body + node.orelse:
                if isinstance(statement, ast.Raise | ast.Return):
                    kind = "raise" if isinstance(statement, ast.Raise) else "return"
                    yield statement, f"`{kind}` in guard removed", "pass"
        elif isinstance(node, ast.Return) and node.value is not None:
            if not (isinstance(node.value, ast.Constant) and node.value.value is None):
                yield node.value, "`return x` -> `return None`", "None"


def _comparison_swaps(node: ast.Compare) -> Iterator[tuple[ast.AST, str, str]]:
    for index, op in enumerate(node.ops):
        swapped = COMPARISON_SWAPS[type(op)]
        ops = node.ops[:index] + [swapped()] + node.ops[index + 1:]
        mutated = ast.Compare(node.left, ops, node.comparators)
        description = f"`{COMPARISON_TEXT[type(op)]}` -> `{COMPARISON_TEXT[swapped]}`"
        yield node, description, f"({ast.unparse(mutated)})"


def _constant_changes(node: ast.Constant) -> Iterator[tuple[ast.AST, str, str]]:
    value = node.value
    if isinstance(value, bool):
        yield node, f"{value} -> {not value}", str(not value)
    elif isinstance(value, int):
        yield node, f"{value} -> {value + 1}", f"({value + 1})"
        yield node, f"{value} -> {value - 1}", f"({value - 1})"
    elif isinstance(value, str) and value:
        yield node, f"string {_short(value)} -> ''", "''"


def _short(text: str, shown_max: int = 24) -> str:
    shown = repr(text)
    return shown if len(shown) <= shown_max else shown[:shown_max - 4] + "...'"


def _skipped_nodes(tree: ast.Module) -> set[int]:
    """Subtrees no mutant touches: docstrings, annotations, f-strings (their text and the
    positions of their parts are not worth a mutant) and exception messages."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        documented = ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
        if (isinstance(node, documented) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            skipped.add(id(body[0]))
        if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            skipped.add(id(node.annotation))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
            skipped.add(id(node.returns))
        if isinstance(node, ast.JoinedStr):
            skipped.add(id(node))
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            skipped.update(id(arg) for arg in node.exc.args)
    return skipped
