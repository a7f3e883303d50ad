"""Who may import whom (docs/DESIGN.md, "Layers"), read from the sources' import statements.

- protocols/ is sans-IO: nothing of switch/ or loadtest/, no asyncio, no Redis;
- the load generator (loadtest/generator/) is a client of the switch: nothing of switch/, and
  nothing of the harness or the command (which do import switch/);
- no import statement inside a function, anywhere: a cycle is broken by moving the shared
  piece down, not by importing late.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("switch", "protocols", "loadtest")
FORBIDDEN = {  # folder -> modules (and their submodules) nothing in it may import
    "protocols": ("switch", "loadtest", "asyncio", "redis"),
    "loadtest/generator": ("switch", "loadtest.harness", "loadtest.cli"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.Module, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, module) of every import in the tree, relative ones resolved; `from X import y`
    names both X and X.y (y may be a submodule)."""
    found = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def late_imports(tree: ast.Module) -> list[int]:
    """Lines of the import statements inside a function (or method)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines += [inner.lineno for inner in ast.walk(node)
                      if isinstance(inner, ast.Import | ast.ImportFrom)]
    return sorted(set(lines))


def forbidden_imports(source: str, module: str, is_package: bool,
                      forbidden: tuple[str, ...]) -> list[str]:
    tree = ast.parse(source)
    return [f"line {line}: imports {name}" for line, name in imported(tree, module, is_package)
            if any(name == bad or name.startswith(bad + ".") for bad in forbidden)]


def sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_it_must_not(folder):
    assert sources(folder), f"no sources under {folder}: the layout changed, fix the test"
    problems = {}
    for path in sources(folder):
        found = forbidden_imports(path.read_text(), module_name(path),
                                  path.name == "__init__.py", FORBIDDEN[folder])
        if found:
            problems[str(path.relative_to(ROOT))] = found
    assert problems == {}


def test_no_import_inside_a_function():
    problems = {}
    for package in PACKAGES:
        for path in sources(package):
            lines = late_imports(ast.parse(path.read_text()))
            if lines:
                problems[str(path.relative_to(ROOT))] = lines
    assert problems == {}


# --- the scanner itself: it must see what it is there to catch ----------------------------


def test_the_scanner_finds_a_forbidden_import_in_every_spelling():
    source = ("import asyncio.events\n"
              "from switch import ledger\n"
              "from ..harness import bench\n"
              "import json\n"
              "from . import stats\n")
    forbidden = ("switch", "loadtest.harness", "asyncio")
    assert forbidden_imports(source, "loadtest.generator.worker", False, forbidden) == [
        "line 1: imports asyncio.events", "line 2: imports switch",
        "line 2: imports switch.ledger", "line 3: imports loadtest.harness",
        "line 3: imports loadtest.harness.bench"]


def test_the_scanner_finds_an_import_inside_a_function_or_method():
    source = ("import os\n"
              "def f():\n"
              "    import uvloop\n"
              "class C:\n"
              "    async def m(self):\n"
              "        from switch import ledger\n"
              "if True:\n"
              "    import json\n")
    assert late_imports(ast.parse(source)) == [3, 6]
