"""Connect's HTTP side: the ``/v1`` routes (accounts, account links, transfers, balance; the
payout routes of `stripe_api` take the ``Stripe-Account`` header through `payout_executors`),
the control routes (``/_standin/accounts/…``) and the hosted onboarding page for humans
(``/connect/onboarding/{acct}``, the account link's ``url``)."""

from __future__ import annotations

import copy
import html
from urllib.parse import parse_qsl, urlparse

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from stripe_standin import connect
from stripe_standin.connect_ops import (
    ACCOUNT_CREATE,
    ACCOUNT_LINK_CREATE,
    ACCOUNT_LIST,
    ACCOUNT_RETRIEVE,
    BALANCE_RETRIEVE,
    REVERSAL_CREATE,
    TRANSFER_CREATE,
    TRANSFER_LIST,
    TRANSFER_RETRIEVE,
    ConnectOps,
)
from stripe_standin.service import Standin, params_flow_id
from stripe_standin.stripe_api import api_call, error_response, json_response
from stripe_standin.wire import StandinError


def connect_api_routes(app: FastAPI, svc: Standin) -> None:
    """``/v1/accounts``, ``/v1/account_links``, ``/v1/transfers`` (`_transfer_routes`),
    ``/v1/balance``."""
    ops = ConnectOps(svc)

    @app.post("/v1/accounts")
    async def create_account(request: Request) -> Response:
        return await api_call(svc, request, ACCOUNT_CREATE, ops.create_account, lambda _: None)

    @app.get("/v1/accounts/{acct_id}")
    async def retrieve_account(request: Request, acct_id: str) -> Response:
        return await api_call(svc, request, ACCOUNT_RETRIEVE, ops.retrieve_account(acct_id),
                              lambda _: None)

    @app.get("/v1/accounts")
    async def list_accounts(request: Request) -> Response:
        return await api_call(svc, request, ACCOUNT_LIST, ops.list_accounts, lambda _: None)

    @app.post("/v1/account_links")
    async def create_account_link(request: Request) -> Response:
        return await api_call(svc, request, ACCOUNT_LINK_CREATE, ops.create_account_link,
                              lambda _: None)

    _transfer_routes(app, svc, ops)

    @app.get("/v1/balance")
    async def retrieve_balance(request: Request) -> Response:
        return await api_call(svc, request, BALANCE_RETRIEVE,
                              ops.balance(request.headers.get("stripe-account")), lambda _: None)


def _transfer_routes(app: FastAPI, svc: Standin, ops: ConnectOps) -> None:
    """``/v1/transfers``: create, retrieve, list, and a transfer's reversals."""
    def transfer_flow(tr_id: str) -> str | None:
        transfer = svc.store.connect.get("transfers", {}).get(tr_id, {})
        flow_id: str | None = transfer.get("metadata", {}).get("flow_id")
        return flow_id

    @app.post("/v1/transfers")
    async def create_transfer(request: Request) -> Response:
        return await api_call(svc, request, TRANSFER_CREATE, ops.create_transfer)

    @app.get("/v1/transfers/{tr_id}")
    async def retrieve_transfer(request: Request, tr_id: str) -> Response:
        return await api_call(svc, request, TRANSFER_RETRIEVE, ops.retrieve_transfer(tr_id),
                              lambda _: transfer_flow(tr_id))

    @app.get("/v1/transfers")
    async def list_transfers(request: Request) -> Response:
        return await api_call(svc, request, TRANSFER_LIST, ops.list_transfers,
                              lambda p: p.get("transfer_group") if isinstance(
                                  p.get("transfer_group"), str) else None)

    @app.post("/v1/transfers/{tr_id}/reversals")
    async def create_reversal(request: Request, tr_id: str) -> Response:
        return await api_call(svc, request, REVERSAL_CREATE, ops.create_reversal(tr_id),
                              lambda p: params_flow_id(p) or transfer_flow(tr_id))


def connect_control_routes(app: FastAPI, svc: Standin) -> None:
    """``/_standin/accounts`` (list), ``…/{id}/complete_onboarding``, ``…/{id}/restrict``,
    ``/_standin/transfers`` (list; ``?destination=``, ``?flow_id=``) and the onboarding page."""
    ops = ConnectOps(svc)

    async def change(acct_id: str, what: str) -> Response:
        try:
            return json_response(await ops.update_account(acct_id, what))
        except StandinError as e:
            return error_response(e)

    @app.post("/_standin/accounts/{acct_id}/complete_onboarding")
    async def complete_onboarding(acct_id: str) -> Response:
        return await change(acct_id, "complete")

    @app.post("/_standin/accounts/{acct_id}/restrict")
    async def restrict(acct_id: str) -> Response:
        return await change(acct_id, "restrict")

    @app.get("/_standin/accounts")
    async def list_accounts() -> Response:
        return json_response({"data": copy.deepcopy(list(
            connect.state(svc.store)["accounts"].values()))})

    @app.get("/_standin/transfers")
    async def list_transfers(destination: str | None = None,
                             flow_id: str | None = None) -> Response:
        data = [copy.deepcopy(t) for t in connect.state(svc.store)["transfers"].values()
                if destination in (None, t["destination"])
                and flow_id in (None, t["metadata"].get("flow_id"))]
        return json_response({"data": data})

    _onboarding_page(app, svc, ops)


def _onboarding_page(app: FastAPI, svc: Standin, ops: ConnectOps) -> None:
    @app.get("/connect/onboarding/{acct_id}", response_class=HTMLResponse)
    async def onboarding(acct_id: str, return_url: str = "") -> HTMLResponse:
        account = connect.state(svc.store)["accounts"].get(acct_id)
        if account is None:
            return HTMLResponse("<h1>No such account</h1>", status_code=404)
        aid, back = html.escape(acct_id), html.escape(return_url, quote=True)
        return HTMLResponse(
            "<!doctype html><html><head><meta charset='utf-8'><title>Onboarding</title></head>"
            f"<body><h1>Payout account {aid}</h1><p>Payouts enabled: "
            f"<strong>{account['payouts_enabled']}</strong></p>"
            f"<form method='post' action='/connect/onboarding/{aid}/complete'>"
            f"<input type='hidden' name='return_url' value='{back}'>"
            "<button type='submit'>Complete onboarding</button></form></body></html>")

    @app.post("/connect/onboarding/{acct_id}/complete")
    async def complete(request: Request, acct_id: str) -> Response:
        try:
            await ops.update_account(acct_id, "complete")
        except StandinError as e:
            return HTMLResponse(f"<h1>{html.escape(e.message)}</h1>", status_code=e.status)
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        back = form.get("return_url", "")
        if urlparse(back).scheme in ("http", "https"):
            return RedirectResponse(back, status_code=303)
        return HTMLResponse("<h1>Onboarding complete</h1>")
