"""The test suite's own shape: test modules share builders and fakes only through the factory
modules (``tests/factories.py``, ``logfactory.py``, ``fakes.py`` ...), never by importing each
other, so running or changing one test module never depends on another."""

from __future__ import annotations

import ast

from tests.conftest import REPO


def _imported_modules(tree: ast.Module) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_no_test_module_imports_another() -> None:
    tests = REPO / "tests"
    offenders = {}
    for path in sorted(tests.rglob("*.py")):
        names = _imported_modules(ast.parse(path.read_text(), str(path)))
        bad = sorted(n for n in names if n.split(".")[-1].startswith("test_"))
        if bad:
            offenders[str(path.relative_to(REPO))] = bad
    assert not offenders, f"import shared helpers from a factory module instead: {offenders}"
