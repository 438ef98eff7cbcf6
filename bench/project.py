"""What every bench script does first: run under a Python that has serverlink.

``python bench/echo.py`` with a Python that lacks serverlink (the system's,
pyenv's) re-runs itself with the project's virtual environment
(``.venv/bin/python``, made by the README's commands) when there is one, and
otherwise says in one line how to make it. The servers and clients the script
starts (``sys.executable -m serverlink ...``) then run with the same Python.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"


def ensure_serverlink() -> None:
    try:
        import serverlink  # noqa: F401
    except ImportError:
        python = VENV / "bin" / "python"
        if python.exists() and Path(sys.prefix).resolve() != VENV.resolve():
            os.execv(python, [str(python), *sys.argv])
        script = Path(sys.argv[0]).name
        sys.exit(
            f"{script}: serverlink is not installed for {sys.executable}: in {ROOT} run "
            "`python3 -m venv .venv && .venv/bin/pip install -e .` (this script then uses "
            ".venv by itself)"
        )
