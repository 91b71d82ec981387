#!/usr/bin/env python3
"""Install what is needed, lint (ruff), type-check (mypy), and run the whole test suite (real
PostgreSQL, real Temporal)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bootstrap import ROOT, ensure_venv  # noqa: E402

if __name__ == "__main__":
    import subprocess

    py = str(ensure_venv())
    lint = subprocess.call([py, "-m", "ruff", "check", str(ROOT)], cwd=ROOT)
    types = subprocess.call([py, "-m", "mypy"], cwd=ROOT)  # the files: pyproject [tool.mypy]
    tests = subprocess.call([py, "-m", "pytest", *sys.argv[1:]], cwd=ROOT)
    sys.exit(tests or lint or types)
