"""The bank test (`python -m bench.soak`, bench/README.md "Soak"), CI-sized: 4 clients for 60 s
of top-ups, wallet and split orders, concurrent refunds, donations and withdrawals decided by
an admin, through two API processes and two `python worker.py` processes, a worker SIGKILLed
every 15 s. Its own Temporal dev server, stand-in, APIs and workers on free ports, its own
database on the session's PostgreSQL server (dropped at the end). At the end each currency
sums to zero, no user account is below zero, every flow ended, every answer a client was given
agrees with the balances and views, `walletflow ledger check` is clean and `walletflow
reconcile` finds no drift: the command's exit status and report say so."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from bench.stack import database_url as on_server

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = os.environ.get("WALLETFLOW_SOAK_CLIENTS", "4")
SECONDS = os.environ.get("WALLETFLOW_SOAK_SECONDS", "60")


async def test_soak_with_worker_kills_reconciles(database_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": on_server(database_url, "postgres")}
    report_path = tmp_path / "soak.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.soak", "--clients", CLIENTS, "--seconds", SECONDS,
        "--kill-every", "15", "--state-dir", str(tmp_path / "state"),
        "--json", str(report_path), cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 1200)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-8000:]
    report = json.loads(report_path.read_text())
    assert report["failures"] == [], report["failures"]
    assert report["kills"] >= 1, text[-3000:]
    assert all(v == 0 for v in report["sum_per_currency"].values()), report
    assert report["negative_user_accounts"] == 0
    assert report["drift"] == 0 and report["stuck_flows"] == 0
    assert report["ledger_check"] == "clean"
    kinds = report["flows_by_final_state"]
    assert {"topup", "order", "withdrawal"} <= set(kinds), kinds
    assert len(report["per_api"]) == 2 and all(report["per_api"].values()), report["per_api"]
