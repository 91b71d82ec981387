"""`walletflow reconcile`: the ledger compared with the gateway's own objects, listed through
the SDK's list calls (the stand-in's `GET /v1/payment_intents`, `/v1/refunds`, `/v1/payouts`).
A clean tenant reports nothing and exits 0; a payment that succeeded at the gateway with no
credit (its webhook lost) is reported and exits 1."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
import stripe

from activities.reconcile import compare
from contracts.money import Money
from contracts.reconcile import (
    AMOUNT_DIFFERS,
    LEDGER_WITHOUT_OBJECT,
    LEDGER_WITHOUT_SUCCESS,
    SUCCEEDED_WITHOUT_LEDGER,
    UNRECORDED_OBJECT,
    LedgerOnly,
    RecordedObject,
    SeenObject,
)
from tests.conftest import STRIPE_KEY, TASK_QUEUE
from tests.support import flow_status, topup, wait_state

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def reconcile(database_url, temporal_address, standin):
    """`walletflow reconcile …` as an operator runs it (the CLI's entry point, from the
    repository), its gateway the session's stand-in: (exit code, stdout, stderr)."""
    env = {**os.environ, "DATABASE_URL": database_url, "TEMPORAL_ADDRESS": temporal_address,
           "TEMPORAL_TASK_QUEUE": TASK_QUEUE, "STRIPE_API_BASE": standin.url,
           "STRIPE_API_KEY": STRIPE_KEY}

    async def run(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from cli import entry; entry()", "reconcile", *args,
            cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        return proc.returncode or 0, out.decode(), err.decode()
    return run


async def test_reconcile_is_clean_then_reports_a_paid_payment_without_credit(
        http, stripe_ctl, tenant, reconcile) -> None:
    r = await topup(http, tenant, "paid", amount="4.00", currency="EUR")
    await stripe_ctl.post(f"/_standin/payment_intents/{r.json()['payment']['payment_id']}"
                          "/succeed")
    await wait_state(http, tenant, r.json()["flow_id"], "completed")
    code, out, err = await reconcile("--tenant", tenant.slug, "--since", "1h")
    assert (code, out) == (0, ""), err
    assert "1 checked, 0 drifting" in err

    r = await topup(http, tenant, "lost", amount="6.00", currency="EUR")
    flow_id, payment_id = r.json()["flow_id"], r.json()["payment"]["payment_id"]
    await stripe_ctl.post("/_standin/faults", json={
        "operation": "webhook", "mode": "drop", "count": 50, "match": {"flow_id": flow_id}})
    await stripe_ctl.post(f"/_standin/payment_intents/{payment_id}/succeed")
    code, out, err = await reconcile("--tenant", tenant.slug, "--since", "1h")
    assert code == 1, err
    [line] = out.splitlines()
    assert line.split("\t")[:4] == [SUCCEEDED_WITHOUT_LEDGER, "payment", payment_id, flow_id]
    assert "6.00 EUR" in line
    assert (await flow_status(http, tenant, flow_id))["state"] == "awaiting_payment"


def test_compare_names_each_kind_of_drift() -> None:
    eur = lambda n: Money(n, "EUR")  # noqa: E731
    rec = [RecordedObject("payment", "stripe", "pi_ok", "t", "f1", eur(500), 500),
           RecordedObject("payment", "stripe", "pi_lost", "t", "f2", eur(500), 0),
           RecordedObject("payment", "stripe", "pi_unpaid", "t", "f3", eur(500), 500),
           RecordedObject("refund", "stripe", "re_short", "t", "f4", eur(300), 200),
           RecordedObject("payout", "stripe", "po_gone", "t", "f5", eur(100), 100)]
    seen = [SeenObject("payment", "stripe", "pi_ok", "succeeded", eur(500), "f1", "t", 10),
            SeenObject("payment", "stripe", "pi_lost", "succeeded", eur(500), "f2", "t", 10),
            SeenObject("payment", "stripe", "pi_unpaid", "canceled", eur(500), "f3", "t", 10),
            SeenObject("refund", "stripe", "re_short", "succeeded", eur(300), "f4", "t", 10),
            SeenObject("payout", "stripe", "po_new", "succeeded", eur(100), "f6", "t", 10),
            SeenObject("payout", "stripe", "po_other", "succeeded", eur(100), "g", "u", 10),
            SeenObject("payment", "stripe", "pi_foreign", "succeeded", eur(1), None, None, 10)]
    only = [LedgerOnly("payment", "t", "f7", eur(900))]
    drifts = compare(rec, seen, only, "t", (0, 100))
    assert [(d.problem, d.object_id or d.flow_id) for d in drifts] == [
        (SUCCEEDED_WITHOUT_LEDGER, "pi_lost"), (LEDGER_WITHOUT_SUCCESS, "pi_unpaid"),
        (AMOUNT_DIFFERS, "re_short"), (LEDGER_WITHOUT_SUCCESS, "po_gone"),
        (UNRECORDED_OBJECT, "po_new"), (LEDGER_WITHOUT_OBJECT, "f7")]


async def test_standin_lists_through_the_sdk_newest_first_page_by_page(standin) -> None:
    client = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": standin.url},
                                 http_client=stripe.HTTPXClient())
    made = [await client.v1.payment_intents.create_async(
        {"amount": 100 + n, "currency": "eur"}) for n in range(3)]
    page = await client.v1.payment_intents.list_async({"limit": 2})
    assert page.has_more and [p.id for p in page.data] == [made[2].id, made[1].id]
    newest = [p.id async for p in page.auto_paging_iter()][:3]
    assert newest == [m.id for m in reversed(made)]
    since = await client.v1.payment_intents.list_async(
        {"created": {"gte": made[0].created}, "limit": 100})
    assert {m.id for m in made} <= {p.id for p in since.data}
