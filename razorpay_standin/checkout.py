"""A tiny hosted "payment page" standing in for Razorpay's checkout.js: the order's amount and
status, **Pay** and **Decline**. Paying shows what checkout.js hands the page's handler
(``razorpay_payment_id``, ``razorpay_order_id``, ``razorpay_signature``), which a client then
posts to walletflow's ``/v1/topups/{flow_id}/verify``."""

from __future__ import annotations

import html
import json

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from razorpay_standin.service import RazorpayStandin

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Razorpay stand-in</title>
<style>body{{font-family:sans-serif;max-width:34em;margin:3em auto}}button{{font-size:1.1em;
margin-right:1em}}pre{{background:#eee;padding:1em}}</style></head><body>
<h1>Razorpay stand-in checkout</h1><p>Order <code>{order_id}</code>: <b>{amount}</b>
({status})</p>{body}</body></html>"""
_BUTTONS = """<form method="post" action="/checkout/{order_id}/pay" style="display:inline">
<button>Pay</button></form><form method="post" action="/checkout/{order_id}/decline"
style="display:inline"><button>Decline</button></form>"""


def _amount(order: dict[str, object]) -> str:
    minor = int(str(order["amount"]))
    return f"{minor // 100}.{minor % 100:02d} {order['currency']}"


def checkout_routes(app: FastAPI, svc: RazorpayStandin) -> None:
    def page(order_id: str, body: str) -> HTMLResponse:
        order = svc.store.order(order_id)
        return HTMLResponse(_PAGE.format(order_id=html.escape(order_id),
                                         amount=html.escape(_amount(order)),
                                         status=html.escape(str(order["status"])), body=body))

    @app.get("/checkout/{order_id}", response_class=HTMLResponse)
    async def show(order_id: str) -> HTMLResponse:
        order = svc.store.order(order_id)
        buttons = "" if order["status"] == "paid" else _BUTTONS.format(
            order_id=html.escape(order_id))
        return page(order_id, buttons)

    @app.post("/checkout/{order_id}/pay", response_class=HTMLResponse)
    async def pay(order_id: str) -> HTMLResponse:
        handed = svc.pay(order_id)
        return page(order_id, "<p>Paid. The handler receives:</p><pre>"
                    + html.escape(json.dumps(handed, indent=2)) + "</pre>")

    @app.post("/checkout/{order_id}/decline", response_class=HTMLResponse)
    async def decline(order_id: str) -> HTMLResponse:
        svc.decline(order_id)
        return page(order_id, "<p>Declined: payment.failed was sent. The order can still be "
                    "paid.</p>" + _BUTTONS.format(order_id=html.escape(order_id)))
