"""The bank test as a command: N clients for T minutes against two API processes and two
worker processes (one Temporal dev server, one PostgreSQL), a worker SIGKILLed every 15 s,
then a drain and the end checks (bench/soak_oracle.py). Prints the figures; exit 1 if any
check failed.

    .venv/bin/python -m bench.soak --clients 8 --minutes 10
    .venv/bin/python -m bench.soak --clients 4 --seconds 60 --json soak.json

The stack (bench/soak_stack.py), the clients (bench/soak_client.py, bench/soak_http.py) and
the checks (bench/soak_oracle.py) are described in bench/README.md, "Soak"."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import ROOT, log
from bench.soak_client import Client
from bench.soak_http import Api, Recorder
from bench.soak_oracle import end_state, failures
from bench.soak_report import figures, table
from bench.soak_stack import SoakStack, check_alive, killer, start_soak_stack
from cli import create_tenant
from db.engine import create_engine, session_factory


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--minutes", type=float, default=None, help="load time (default 1)")
    p.add_argument("--seconds", type=float, default=None, help="load time, in seconds")
    p.add_argument("--kill-every", type=float, default=15.0,
                   help="seconds between worker kills (0: no kills)")
    p.add_argument("--drain", type=float, default=420.0,
                   help="at most this long for the clients' last flows to end")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--state-dir", type=Path, default=ROOT / ".walletflow" / "soak",
                   help="logs (and the embedded PostgreSQL without DATABASE_URL)")
    p.add_argument("--json", type=Path, default=None, help="write the report here too")
    args = p.parse_args(argv)
    args.load = args.seconds if args.seconds is not None else 60 * (args.minutes or 1)
    return args


async def setup_tenant(soak: SoakStack, api: Api) -> tuple[dict[str, str], str]:
    """A tenant (its client and admin keys) and an open, uncapped EUR campaign; the payee
    onboarding route, if the API has one."""
    engine = create_engine(soak.db_url, 1)
    try:
        keys = await create_tenant(session_factory(engine), "soak", "Soak shop", "soak-admin")
    finally:
        await engine.dispose()
    admin = {"Authorization": f"Bearer {keys['admin_key']}"}
    r = await api.call("setup", "POST", "/v1/campaigns", headers=admin, json={
        "campaign_id": "soak-campaign", "name": "Soak", "currency": "EUR",
        "target": "100000000.00", "capped": False,
        "ends_at": (datetime.now(UTC) + timedelta(days=30)).isoformat()})
    r.raise_for_status()
    paths = (await api.call("setup", "GET", "/openapi.json")).json()["paths"]
    api.payout_route = next((p for p in paths if p.endswith("/payout-account")
                             and "post" in paths[p]), None)
    if api.payout_route:
        log(f"the API onboards payees: {api.payout_route} (used before withdrawals)")
    return keys, "soak-campaign"


async def load(soak: SoakStack, api: Api, clients: list[Client], args: argparse.Namespace
               ) -> dict[str, float]:
    """The load with the killer, then the drain: (load seconds, drain seconds)."""
    stop_killing = asyncio.Event()
    kill_task = (asyncio.create_task(killer(soak, args.kill_every, stop_killing))
                 if args.kill_every > 0 else None)
    began = time.monotonic()
    until = began + args.load
    tasks = [asyncio.create_task(c.run(until)) for c in clients]
    progress = asyncio.create_task(report_progress(api.rec, began))
    await asyncio.sleep(args.load)
    stop_killing.set()
    if kill_task:
        await kill_task
    loaded = time.monotonic() - began
    log(f"load over after {loaded:.0f}s ({soak.kills} kills); draining …")
    done, pending = await asyncio.wait(tasks, timeout=args.drain)
    progress.cancel()
    for t in pending:
        t.cancel()
        api.rec.stuck.append(f"a client still busy after the {args.drain:.0f}s drain")
    return {"load_s": loaded, "drain_s": time.monotonic() - began - loaded}


async def report_progress(rec: Recorder, began: float) -> None:
    while True:
        await asyncio.sleep(15)
        n = sum(len(v) for v in rec.latency.values())
        log(f"{n} requests, {sum(sum(c.values()) for c in rec.finals.values())} flows ended, "
            f"{len(rec.mismatches)} wrong answers ({n / (time.monotonic() - began):.1f} req/s)")


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    rec = Recorder()
    async with AsyncExitStack() as stack:
        sk = await start_soak_stack(stack, args.state_dir)
        api = Api(sk.api_urls, sk.standin_url, rec)
        stack.push_async_callback(api.close)
        keys, campaign = await setup_tenant(sk, api)
        clients = [Client(n, api, keys, campaign, args.seed) for n in range(args.clients)]
        times = await load(sk, api, clients, args)
        died = check_alive(sk)
        log("checking …")
        end = await end_state(clients, sk.db_url, sk.temporal.client, sk.env)
        fails = failures(end, rec, died)
        report = figures(rec, end, clients, sk, times)
        report["per_api"] = {u: rec.per_api[u] for u in sk.api_urls}
        fails += [f"{u} answered nothing" for u, n in report["per_api"].items() if not n]
        report["failures"] = fails
        report["config"] = {"clients": args.clients, "load_s": args.load,
                            "kill_every_s": args.kill_every, "seed": args.seed,
                            "payout_route": api.payout_route}
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = asyncio.run(soak(args))
    print(table(report), flush=True)
    print("requests per API: " + ", ".join(f"{u} {n}" for u, n in report["per_api"].items()))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    for f in report["failures"]:
        print(f"FAIL {f}", flush=True)
    print("soak: " + ("FAILED" if report["failures"] else "all checks passed"), flush=True)
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
