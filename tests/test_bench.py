"""The benchmark scripts run as the README documents them: ``python
bench/echo.py`` with a Python that lacks serverlink finds the project's .venv
(or says in one line how to make it), and the C reference server they measure
against ships with the project."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def base_python() -> str:
    """The interpreter the virtual environment was made from: no serverlink."""
    return str(getattr(sys, "_base_executable", sys.executable))


@pytest.mark.parametrize("script", ["echo.py", "memory_per_session.py"])
def test_bench_scripts_find_the_project(script: str) -> None:
    python = base_python()
    has_it = subprocess.run([python, "-c", "import serverlink"], capture_output=True).returncode
    if has_it == 0:
        pytest.skip(f"{python} has serverlink itself")
    out = subprocess.run(
        [python, f"bench/{script}", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    if (ROOT / ".venv" / "bin" / "python").exists():
        assert out.returncode == 0, out.stderr  # it re-ran itself with .venv
        assert "usage:" in out.stdout
    else:
        assert out.returncode == 1 and "serverlink is not installed" in out.stderr
        assert "Traceback" not in out.stderr


def test_the_reference_server_ships_and_builds(tmp_path: Path) -> None:
    source = ROOT / "bench" / "netbench.c"
    assert source.exists()
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    subprocess.run([cc, "-O2", "-o", str(tmp_path / "netbench"), str(source)], check=True)
    assert (tmp_path / "netbench").exists()
