"""The soak's figures (requests and latency by kind, flows by final state, kills, Σ per
currency, drift, stuck flows, the combined rate through both APIs) and their table."""

from __future__ import annotations

from typing import Any

from bench.soak_client import Client
from bench.soak_http import Recorder
from bench.soak_oracle import EndState
from bench.soak_stack import SoakStack
from bench.stats import percentile

API_KINDS = {"user", "topup", "order_wallet", "order_split", "refund", "donation",
             "withdrawal", "decision", "payout_account", "status"}


def by_kind(rec: Recorder) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for kind, seconds in sorted(rec.latency.items()):
        ms = sorted(s * 1000 for s in seconds)
        out[kind] = {"requests": len(ms), "p50_ms": round(percentile(ms, 50), 1),
                     "p99_ms": round(percentile(ms, 99), 1), "retried": rec.retries[kind],
                     "statuses": {str(k): v for k, v in sorted(rec.statuses[kind].items())}}
    return out


def figures(rec: Recorder, end: EndState, clients: list[Client], soak: SoakStack,
            times: dict[str, float]) -> dict[str, Any]:
    load_s = times["load_s"]
    api_requests = sum(len(v) for k, v in rec.latency.items() if k in API_KINDS)
    flows = sum(len(c.book.flows) for c in clients)
    return {
        "requests": by_kind(rec),
        "flows_by_final_state": {k: dict(v) for k, v in sorted(rec.finals.items())},
        "kills": soak.kills,
        "sum_per_currency": {cur: s["posted"] for cur, s in end.sums.items()},
        "pending_per_currency": {cur: s["pending_in"] - s["pending_out"]
                                 for cur, s in end.sums.items()},
        "negative_user_accounts": end.negative_users,
        "drift": len(end.drifts),
        "ledger_check": "clean" if end.ledger_check[0] == 0 else end.ledger_check[1],
        "stuck_flows": len(end.running) + len(rec.stuck),
        "wrong_answers": len(rec.mismatches),
        "view_mismatches": len(end.view_mismatches),
        "flows": flows,
        "api_requests": api_requests,
        "rate_req_per_s": round(api_requests / load_s, 1) if load_s else 0.0,
        "rate_flows_per_s": round(flows / load_s, 2) if load_s else 0.0,
        "times_s": {k: round(v, 1) for k, v in times.items()},
    }


def table(report: dict[str, Any]) -> str:
    lines = [f"{'kind':<16}{'requests':>10}{'p50 ms':>10}{'p99 ms':>10}{'retried':>9}  statuses"]
    for kind, k in report["requests"].items():
        statuses = " ".join(f"{code}:{n}" for code, n in k["statuses"].items())
        lines.append(f"{kind:<16}{k['requests']:>10}{k['p50_ms']:>10.1f}{k['p99_ms']:>10.1f}"
                     f"{k['retried']:>9}  {statuses}")
    lines.append("")
    for kind, states in report["flows_by_final_state"].items():
        lines.append(f"flows {kind:<12}" + " ".join(f"{s}:{n}" for s, n in states.items()))
    rows = [
        ("worker kills", report["kills"]),
        ("Σ posted per currency", _sums(report["sum_per_currency"])),
        ("Σ pending in − out", _sums(report["pending_per_currency"])),
        ("user accounts below zero", report["negative_user_accounts"]),
        ("reconcile drift", report["drift"]),
        ("ledger check", report["ledger_check"]),
        ("stuck flows", report["stuck_flows"]),
        ("wrong answers", report["wrong_answers"]),
        ("views not matching", report["view_mismatches"]),
        ("API requests (both APIs)", report["api_requests"]),
        ("combined rate", f"{report['rate_req_per_s']} req/s, "
                          f"{report['rate_flows_per_s']} flows/s"),
        ("load / drain", f"{report['times_s']['load_s']} s / {report['times_s']['drain_s']} s"),
    ]
    lines.append("")
    lines += [f"{name:<28}{value}" for name, value in rows]
    return "\n".join(lines)


def _sums(sums: dict[str, int]) -> str:
    return ", ".join(f"{cur} {v}" for cur, v in sums.items()) or "-"
