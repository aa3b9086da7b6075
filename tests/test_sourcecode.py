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
