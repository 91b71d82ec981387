#!/usr/bin/env python3
"""Run the whole service: embedded PostgreSQL + Temporal dev server (UI) + worker + API."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bootstrap import run  # noqa: E402

if __name__ == "__main__":
    run(["devstack.py", *sys.argv[1:]])
