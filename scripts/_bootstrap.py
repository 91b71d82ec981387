"""Create .venv if missing and install the project (with dev extras) when pyproject changed.
Needs nothing but Python 3.11."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"


def ensure_venv() -> Path:
    if sys.version_info < (3, 11):  # noqa: UP036 - the bootstrap may run on any python3
        raise SystemExit("walletflow needs Python 3.11 or newer")
    if not PY.exists():
        print("creating .venv …", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / ".walletflow-installed"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:
        print("installing dependencies …", flush=True)
        subprocess.check_call([str(PY), "-m", "pip", "install", "-q", "--upgrade", "pip"])
        subprocess.check_call([str(PY), "-m", "pip", "install", "-q", "-e", f"{ROOT}[dev]"])
        stamp.write_text(digest)
    return PY


def run(args: list[str]) -> None:
    py = ensure_venv()
    os.chdir(ROOT)
    os.execv(str(py), [str(py), *args])
