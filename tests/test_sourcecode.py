"""Lint runs as part of the test suite (as asyncpg's test__sourcecode.py does)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.fail("ruff is not installed; install the test extras: pip install -e '.[test]'")
    proc = subprocess.run([ruff, "check", "src", "tests", "bench"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_compiled_core_has_a_stub_and_mirrors_the_package_path() -> None:
    import batchops._scheduler as core

    assert core.__file__.endswith((".so", ".pyd")), "the scheduler core must be compiled"
    assert (ROOT / "ext" / "batchops" / "_scheduler.pyx").exists()
    assert (ROOT / "ext" / "batchops" / "_scheduler.pxd").exists()
    assert (ROOT / "src" / "batchops" / "_scheduler.pyi").exists()


def _tool(name: str) -> str:
    path = shutil.which(name) or str(Path(sys.executable).with_name(name))
    if not Path(path).exists():
        pytest.fail(f"{name} is not installed; install the test extras: pip install -e '.[test]'")
    return path


def test_the_layers_hold() -> None:
    """cli → schedule → execute → operations → manifest | results → storage → model
    (the contract in pyproject.toml): a lower layer never imports a higher one."""
    proc = subprocess.run([_tool("lint-imports")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 kept, 0 broken" in proc.stdout


def test_no_module_imports_itself_back() -> None:
    """No import cycles between modules, not even inside one layer."""
    import grimp

    graph = grimp.build_graph("batchops")
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            if imported == module:
                pytest.fail(f"{module} imports itself")
            chain = graph.find_shortest_chain(importer=imported, imported=module)
            assert chain is None, f"import cycle: {module} -> {' -> '.join(chain)}"


def test_mypy_is_clean() -> None:
    proc = subprocess.run([_tool("mypy")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_no_module_level_mutable_state() -> None:
    """Module globals are constants: no list, dict or set assigned at module level (a
    read-only MappingProxyType or frozenset is fine), and no `global` statement."""
    import ast

    offenders = []
    for path in sorted((ROOT / "src" / "batchops").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Global):
                offenders.append(f"{path.name}:{node.lineno} global")
        for node in tree.body:
            value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
            if isinstance(node, ast.Assign) and [getattr(t, "id", "") for t in node.targets] \
                    == ["__all__"]:
                continue
            if isinstance(value, (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp,
                                  ast.SetComp)):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, "module-level mutable state: " + ", ".join(offenders)
