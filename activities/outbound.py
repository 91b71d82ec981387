"""Outbound webhook activities (Standard Webhooks): deliver one delivery signed (`webhook-id`,
`webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`), with
both secrets during a rotation; record each attempt and the outcome. The dispatcher that fans
the outbox out into deliveries is dispatcher.py.

Every attempt checks its destination again (`contracts.destinations`: https, and public
addresses only unless the tenant is in development mode) and connects to the address it checked
(`activities.pinned_http`); a refused destination fails the delivery before anything is sent.
Redirects are never followed: a 3xx is a failed attempt."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.pinned_http import ALLOW_PRIVATE, DestinationRefused, PinnedTransport, Resolver
from contracts.destinations import url_refusal
from contracts.errors import ErrorCode
from contracts.events import EMIT_EVENT, EventOut
from contracts.webhooks import DELIVER_WEBHOOK, GIVE_UP_WEBHOOK, DeliveryInput
from db.outbox import emit
from db.webhook_endpoints import DeliveryRepository


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def _request(delivery_id: str, d: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The body and the signed headers of one attempt."""
    body = json.dumps({"type": d["type"], "timestamp": d["created_at"].isoformat(),
                       "data": d["payload"]}, separators=(",", ":"))
    ts = int(time.time())
    signatures = [sign(d["secret"], delivery_id, ts, body)]
    if d["previous_secret"] and d["previous_valid"]:
        signatures.append(sign(d["previous_secret"], delivery_id, ts, body))
    return body, {"webhook-id": delivery_id, "webhook-timestamp": str(ts),
                  "webhook-signature": " ".join(signatures),
                  "content-type": "application/json", "user-agent": "walletflow-webhooks/1"}


def _result(status: int | None) -> str:
    """The attempt's outcome as the delivery metric labels it."""
    if status is not None and 200 <= status < 300:
        return "delivered"
    return "gone" if status == 410 else "error" if status is None else f"http_{status}"


class WebhookActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession],
                 http: httpx.AsyncClient | None = None, resolve: Resolver | None = None):
        self.sessions = sessions
        transport = PinnedTransport(resolve) if resolve else PinnedTransport()
        self.http = http or httpx.AsyncClient(timeout=15, follow_redirects=False,
                                              transport=transport)

    @activity.defn(name=DELIVER_WEBHOOK)
    async def deliver(self, inp: DeliveryInput) -> str:
        async with self.sessions() as session:
            d = await DeliveryRepository(session).load(inp.delivery_id)
        if d["disabled_at"] is not None:
            await self._finish(inp.delivery_id, "disabled", "the endpoint is disabled")
            raise ApplicationError("endpoint disabled", type=ErrorCode.ENDPOINT_DISABLED.value,
                                   non_retryable=True)
        body, headers = _request(inp.delivery_id, d)
        started = time.monotonic()
        status, error, refused = await self._send(d, body, headers)
        await self._attempt(inp.delivery_id, status, refused or error, started)
        activity.metric_meter().create_counter(
            "walletflow_webhook_deliveries", "Outbound webhook delivery attempts").add(
            1, {"result": "refused" if refused else _result(status)})
        if refused:
            await self._finish(inp.delivery_id, "failed", refused)
            raise ApplicationError(refused, type=ErrorCode.URL_NOT_ALLOWED.value,
                                   non_retryable=True)
        if status is not None and 200 <= status < 300:
            await self._finish(inp.delivery_id, "delivered", None)
            return "delivered"
        if status == 410:
            async with self.sessions.begin() as session:
                await DeliveryRepository(session).disable_endpoint(inp.delivery_id, "410 Gone")
            await self._finish(inp.delivery_id, "disabled", "410 Gone")
            raise ApplicationError("the endpoint answered 410 Gone",
                                   type=ErrorCode.ENDPOINT_GONE.value, non_retryable=True)
        raise ApplicationError(f"endpoint answered {status or error}",
                               type=ErrorCode.DELIVERY_FAILED.value)

    async def _send(self, d: dict[str, Any], body: str, headers: dict[str, str]
                    ) -> tuple[int | None, str | None, str | None]:
        """One attempt: (HTTP status, what went wrong, why the destination was refused)."""
        why = url_refusal(d["url"], d["development"])
        if why is not None:
            return None, None, f"destination refused: {why}"
        try:
            async with self.http.stream(
                    "POST", d["url"], content=body, headers=headers, follow_redirects=False,
                    extensions={ALLOW_PRIVATE: True} if d["development"] else {}) as r:
                status, location = r.status_code, r.headers.get("location")
        except DestinationRefused as e:
            return None, None, f"destination refused: {e}"
        except httpx.HTTPError as e:
            return None, f"{type(e).__name__}: {e}"[:300], None
        if 300 <= status < 400:
            return status, f"redirect to {location} not followed"[:300], None
        return status, None, None

    @activity.defn(name=EMIT_EVENT)
    async def emit(self, event: EventOut) -> None:
        async with self.sessions.begin() as session:
            await emit(session, event.tenant_id, event.key, event.type, dict(event.payload))

    @activity.defn(name=GIVE_UP_WEBHOOK)
    async def give_up(self, inp: DeliveryInput, reason: str) -> None:
        async with self.sessions.begin() as session:
            await DeliveryRepository(session).give_up(inp.delivery_id, reason)

    async def _attempt(self, delivery_id: str, status: int | None, error: str | None,
                       started: float) -> None:
        async with self.sessions.begin() as session:
            await DeliveryRepository(session).record_attempt(
                delivery_id, status, error, int((time.monotonic() - started) * 1000))

    async def _finish(self, delivery_id: str, status: str, error: str | None) -> None:
        async with self.sessions.begin() as session:
            await DeliveryRepository(session).finish(delivery_id, status, error)

    async def close(self) -> None:
        await self.http.aclose()
