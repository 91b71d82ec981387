"""The hosted "payment page" for humans in the dev stack: ``/`` lists payments, ``/checkout/{id}``
shows one with Pay and Decline buttons that succeed or fail it like the control API does;
``/c/pay/{cs_id}`` is a Checkout Session's hosted page (its ``url``): Pay completes it and
returns the payer to its success URL, Decline leaves it open (as Stripe does: the payer may try
again), Cancel returns to its cancel URL (the session stays open until it expires)."""

from __future__ import annotations

import html
from typing import Literal

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from stripe_standin.checkout_sessions import Sessions
from stripe_standin.service import Standin
from stripe_standin.wire import JSON, StandinError, format_amount


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:32em;margin:3em auto}"
        "button{font-size:1.1em;margin-right:1em;padding:.4em 1.2em}</style></head>"
        f"<body>{body}</body></html>", status_code=status)


def _amount(pi: JSON) -> str:
    return html.escape(format_amount(pi["amount"], pi["currency"]))


def _checkout_page(pi_id: str, pi: JSON) -> HTMLResponse:
    pid = html.escape(pi_id)
    buttons = ""
    if pi["status"] not in ("succeeded", "canceled"):
        buttons = (f"<form method='post' action='/checkout/{pid}/pay' style='display:inline'>"
                   "<button type='submit'>Pay</button></form>"
                   f"<form method='post' action='/checkout/{pid}/decline' "
                   "style='display:inline'><button type='submit'>Decline</button></form>")
    description = html.escape(pi.get("description") or "")
    return _page("Checkout", (
        f"<h1>Pay {_amount(pi)}</h1>"
        f"<p>{description}</p><p>Payment <code>{pid}</code>: "
        f"status <strong>{html.escape(pi['status'])}</strong></p>{buttons}"))


async def _act(svc: Standin, pi_id: str, action: Literal["succeed", "fail"]) -> HTMLResponse:
    back = f"<p><a href='/checkout/{html.escape(pi_id)}'>Back to the payment</a></p>"
    try:
        result = await svc.transition(pi_id, action)
    except StandinError as e:
        return _page("Not possible", f"<h1>Not possible</h1><p>{html.escape(e.message)}</p>"
                     f"{back}", e.status)
    pi = result["payment_intent"]
    headline = "Payment succeeded" if action == "succeed" else "Payment declined"
    return _page(headline, f"<h1>{headline}</h1><p>{html.escape(pi['id'])}: "
                 f"{_amount(pi)}, "
                 f"status <strong>{html.escape(pi['status'])}</strong></p>{back}")


def checkout_routes(app: FastAPI, svc: Standin) -> None:
    """Register ``/`` and the ``/checkout/...`` pages."""
    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        rows = "".join(
            f"<li><a href='{html.escape(svc.checkout_url(pi['id']))}'>{html.escape(pi['id'])}</a>"
            f" {_amount(pi)}"
            f" — {html.escape(pi['status'])}</li>"
            for pi in reversed(list(svc.store.payment_intents.values())))
        return _page("Stripe stand-in", f"<h1>Stripe stand-in</h1><ul>{rows}</ul>")

    @app.get("/checkout/{pi_id}", response_class=HTMLResponse)
    async def checkout(pi_id: str) -> HTMLResponse:
        pi = svc.store.payment_intents.get(pi_id)
        if pi is None:
            return _page("Not found", f"<h1>No such payment: {html.escape(pi_id)}</h1>", 404)
        return _checkout_page(pi_id, pi)

    @app.post("/checkout/{pi_id}/pay", response_class=HTMLResponse)
    async def pay(pi_id: str) -> HTMLResponse:
        return await _act(svc, pi_id, "succeed")

    @app.post("/checkout/{pi_id}/decline", response_class=HTMLResponse)
    async def decline(pi_id: str) -> HTMLResponse:
        return await _act(svc, pi_id, "fail")


def _session_page(session: JSON, note: str = "") -> HTMLResponse:
    sid = html.escape(session["id"])
    buttons = ""
    if session["status"] == "open":
        buttons = "".join(
            f"<form method='post' action='/c/pay/{sid}/{action}' style='display:inline'>"
            f"<button type='submit'>{label}</button></form>"
            for action, label in (("pay", "Pay"), ("decline", "Decline"), ("cancel", "Cancel")))
    amount = html.escape(format_amount(session["amount_total"], session["currency"]))
    return _page("Checkout", (
        f"<h1>Pay {amount}</h1>{note}<p>Checkout Session <code>{sid}</code>: status "
        f"<strong>{html.escape(session['status'])}</strong> "
        f"({html.escape(session['payment_status'])})</p>{buttons}"))


def session_page_routes(app: FastAPI, sessions: Sessions) -> None:
    """Register ``/c/pay/{cs_id}`` (the session's ``url``) and its buttons."""
    store = sessions.svc.store

    def missing(cs_id: str) -> HTMLResponse:
        return _page("Not found", f"<h1>No such session: {html.escape(cs_id)}</h1>", 404)

    @app.get("/c/pay/{cs_id}", response_class=HTMLResponse)
    async def session_page(cs_id: str) -> HTMLResponse:
        session = store.checkout_sessions.get(cs_id)
        return missing(cs_id) if session is None else _session_page(session)

    @app.post("/c/pay/{cs_id}/{action}")
    async def session_action(cs_id: str, action: Literal["pay", "decline", "cancel"]) -> Response:
        session = store.checkout_sessions.get(cs_id)
        if session is None:
            return missing(cs_id)
        if action == "decline" and session["status"] == "open":
            return _session_page(session, "<p><strong>Your card was declined.</strong></p>")
        if action == "cancel" and session["status"] == "open":
            return RedirectResponse(session["cancel_url"] or session["success_url"], 303)
        try:
            done = (await sessions.transition(cs_id, "pay"))["checkout_session"]
        except StandinError as e:
            return _page("Not possible", f"<h1>Not possible</h1><p>{html.escape(e.message)}</p>",
                         e.status)
        return RedirectResponse(
            done["success_url"].replace("{CHECKOUT_SESSION_ID}", done["id"]), 303)
