"""Payees: where a user's withdrawals are paid. A user gets a Stripe connected account (created
once, idempotently) and a link to Stripe's hosted onboarding, where Stripe — not walletflow —
collects the bank details; the account's ``account.updated`` webhooks keep its status here
(``db/payees.py``). A ``bank_transfer`` withdrawal is then paid to that account
(``api/withdrawals.py``, ``activities/gateways/stripe_connect.py``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

import stripe
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import AnyPrincipal, AppSettings, ClientPrincipal, DbSession, json_body, openapi_body
from api.errors import ProblemError
from api.stripe_events import MalformedEvent, StripeEvent
from api.users import known_user
from contracts.errors import ErrorCode as E
from db.payees import AccountStatus, Payee, PayeeRepository
from db.tenants import Principal
from db.webhook_events import WebhookEventRepository
from settings import Settings

router = APIRouter(tags=["payees"])
ACCOUNT_UPDATED = "account.updated"
ACCOUNT_ID = re.compile(r"^acct_[A-Za-z0-9]{1,64}\Z")
SOURCE = "stripe"


class PayoutAccountCreate(BaseModel):
    model_config = {"extra": "forbid", "str_strip_whitespace": True}
    return_url: str = Field(max_length=2000, pattern=r"^https?://",
                            description="where Stripe sends the user after onboarding")
    refresh_url: str = Field(max_length=2000, pattern=r"^https?://",
                             description="where Stripe sends the user when the link expired")
    country: str = Field("DE", pattern=r"^[A-Z]{2}$", description="the payee's country")


class PayoutAccountView(BaseModel):
    user_id: str
    provider: str = Field(examples=["stripe_connect"])
    account_id: str = Field(examples=["acct_1Nv0FGQ9RKHgCVdK"])
    payouts_enabled: bool
    charges_enabled: bool
    details_submitted: bool
    requirements_due: list[str]
    disabled_reason: str | None = None
    updated_at: str | None = None


class OnboardingView(PayoutAccountView):
    onboarding_url: str = Field(description="Stripe's hosted onboarding (single use)")
    onboarding_expires_at: str


def view(payee: Payee) -> dict[str, Any]:
    return {"user_id": payee.user_id, "provider": payee.provider,
            "account_id": payee.account_id, "payouts_enabled": payee.payouts_enabled,
            "charges_enabled": payee.charges_enabled,
            "details_submitted": payee.details_submitted,
            "requirements_due": list(payee.requirements_due),
            "disabled_reason": payee.disabled_reason,
            "updated_at": payee.updated_at.isoformat() if payee.updated_at else None}


def _client(settings: Settings) -> tuple[stripe.StripeClient, stripe.HTTPXClient]:
    http = stripe.HTTPXClient(timeout=settings.stripe_timeout_seconds)
    base = settings.stripe_api_base
    return stripe.StripeClient(settings.stripe_api_key.get_secret_value(),
                               base_addresses={"api": base} if base else None,
                               http_client=http, max_network_retries=0), http


async def _stripe(call: Any) -> Any:
    try:
        return await call
    except stripe.StripeError as e:
        status = e.http_status or 0
        if 400 <= status < 500 and status not in (409, 429):
            raise ProblemError(E.GATEWAY_REFUSED,
                               f"Stripe refused ({e.code or status}): {e.user_message}") from e
        raise ProblemError(E.GATEWAY_UNAVAILABLE,
                           "Stripe is unavailable; try again shortly") from e


async def _onboard(client: stripe.StripeClient, session: AsyncSession, principal: Principal,
                   user_id: str, body: PayoutAccountCreate) -> tuple[Payee, Any, bool]:
    """The user's payee (its connected account created once) and a fresh onboarding link."""
    payees = PayeeRepository(session)
    await payees.lock_user(principal.tenant_id, user_id)
    payee, created = await payees.get(principal.tenant_id, user_id), False
    if payee is None:
        account = await _stripe(client.v1.accounts.create_async(
            {"type": "express", "country": body.country,
             "capabilities": {"transfers": {"requested": True}},
             "metadata": {"tenant_id": principal.tenant_id, "user_id": user_id}},
            options={"idempotency_key": f"payee:{principal.tenant_id}:{user_id}"}))
        payee, created = await payees.create(principal.tenant_id, user_id, account.id), True
    link = await _stripe(client.v1.account_links.create_async(
        {"account": payee.account_id, "refresh_url": body.refresh_url,
         "return_url": body.return_url, "type": "account_onboarding"}))
    return payee, link, created


@router.post("/v1/users/{user_id}/payout-account", status_code=201,
             openapi_extra=openapi_body(PayoutAccountCreate),
             summary="Create the user's payout account (once) and answer a link to Stripe's "
                     "onboarding")
async def create_payout_account(
        user_id: str, principal: ClientPrincipal, session: DbSession, settings: AppSettings,
        body: Annotated[PayoutAccountCreate, Depends(json_body(PayoutAccountCreate))],
) -> JSONResponse:
    await known_user(session, principal, user_id)
    client, http = _client(settings)
    try:
        payee, link, created = await _onboard(client, session, principal, user_id, body)
    finally:
        await http.close_async()
    expires = datetime.fromtimestamp(int(link.expires_at), UTC).isoformat()
    return JSONResponse({**view(payee), "onboarding_url": link.url,
                         "onboarding_expires_at": expires}, status_code=201 if created else 200)


@router.get("/v1/users/{user_id}/payout-account",
            summary="The user's payout account and its onboarding status")
async def get_payout_account(user_id: str, principal: AnyPrincipal,
                             session: DbSession) -> dict[str, Any]:
    await known_user(session, principal, user_id)
    payee = await PayeeRepository(session).get(principal.tenant_id, user_id)
    if payee is None:
        raise ProblemError(E.NOT_FOUND, f"user {user_id!r} has no payout account yet: POST "
                           f"/v1/users/{user_id}/payout-account to onboard")
    return view(payee)


# -- account.updated (api/webhooks.py, after the signature check) -----------------------------


def _strings(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MalformedEvent(f"{where} is not a list of strings")
    return [v[:200] for v in value[:100]]


def account_status(event: StripeEvent) -> tuple[str, AccountStatus] | None:
    """For an ``account.updated`` event: the account and its status; else None. A malformed
    one raises ``MalformedEvent``."""
    if event.type != ACCOUNT_UPDATED:
        return None
    obj = event.payload["data"]["object"]
    account_id = obj.get("id")
    if obj.get("object") != "account" or not isinstance(account_id, str) or (
            not ACCOUNT_ID.match(account_id)):
        raise MalformedEvent("an account.updated event must carry an account with its id")
    flags = {}
    for name in ("payouts_enabled", "charges_enabled", "details_submitted"):
        flags[name] = obj.get(name) or False
        if not isinstance(flags[name], bool):
            raise MalformedEvent(f"data.object.{name} is not a boolean")
    requirements = obj.get("requirements") or {}
    if not isinstance(requirements, dict):
        raise MalformedEvent("data.object.requirements is not an object")
    reason = requirements.get("disabled_reason")
    if reason is not None and not isinstance(reason, str):
        raise MalformedEvent("data.object.requirements.disabled_reason is not a string")
    due = _strings(requirements.get("currently_due"), "data.object.requirements.currently_due")
    return account_id, AccountStatus(requirements_due=due, disabled_reason=reason, **flags)


async def record_account_update(session: AsyncSession, event: StripeEvent,
                                account_id: str, status: AccountStatus) -> dict[str, Any]:
    """Store the event once, then the account's new status (an account no payee has: ignored).
    Stripe does not promise order: the newest event wins by arrival, and every event states
    the whole status, so a late one is corrected by the next."""
    events = WebhookEventRepository(session)
    if not await events.record(SOURCE, event.id, event.type, None, event.payload):
        return {"received": True, "duplicate": True}
    if await PayeeRepository(session).update_status(account_id, status):
        await events.mark(SOURCE, event.id, "recorded", False)
        return {"received": True, "outcome": "recorded"}
    await events.mark(SOURCE, event.id, "ignored", False, f"no payee has account {account_id}")
    return {"received": True, "outcome": "ignored"}
