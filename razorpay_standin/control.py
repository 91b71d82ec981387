"""``/_standin/...``: a JSON control API for the dev stack and the tests (not Razorpay's): pay
or decline an order, resolve refunds, arm faults, read events and deliveries, re-sign or
re-send an event, change the webhook target."""

from __future__ import annotations

from typing import Any

from fastapi import Body, FastAPI, Request
from fastapi.responses import JSONResponse

from razorpay_standin.service import RazorpayStandin
from razorpay_standin.store import StoredEvent
from razorpay_standin.webhooks import headers_for


def _event_view(event: StoredEvent) -> dict[str, Any]:
    return {"id": event.id, "type": event.type, "order_id": event.order_id,
            "flow_id": event.flow_id, "created_at": event.created_at}


def _filtered(items: list[dict[str, Any]], request: Request, keys: tuple[str, ...]
              ) -> list[dict[str, Any]]:
    query = request.query_params
    for key in keys:
        if key in query:
            items = [i for i in items if str(i.get(key)) == query[key]]
    if "flow_id" in query:
        items = [i for i in items if (i.get("notes") or {}).get("flow_id") == query["flow_id"]
                 or i.get("flow_id") == query["flow_id"]]
    return items


def control_routes(app: FastAPI, svc: RazorpayStandin) -> None:
    _payment_control(app, svc)
    _event_control(app, svc)


def _payment_control(app: FastAPI, svc: RazorpayStandin) -> None:
    @app.post("/_standin/orders/{order_id}/pay")
    async def pay(order_id: str) -> Any:
        """The customer paid; the answer is what checkout.js hands the page's handler."""
        return svc.pay(order_id)

    @app.post("/_standin/orders/{order_id}/decline")
    async def decline(order_id: str, reason: str | None = None) -> Any:
        return svc.decline(order_id, reason)

    @app.get("/_standin/orders")
    async def orders(request: Request) -> Any:
        return _filtered(list(svc.store.orders.values()), request, ("status", "receipt"))

    @app.get("/_standin/payments")
    async def payments(request: Request) -> Any:
        return _filtered(list(svc.store.payments.values()), request, ("order_id", "status"))

    @app.get("/_standin/refunds")
    async def refunds(request: Request) -> Any:
        return _filtered(list(svc.store.refunds.values()), request, ("payment_id", "status"))

    @app.post("/_standin/refunds/{refund_id}/process")
    async def process(refund_id: str) -> Any:
        return svc.resolve_refund(refund_id, processed=True)

    @app.post("/_standin/refunds/{refund_id}/fail")
    async def fail(refund_id: str) -> Any:
        return svc.resolve_refund(refund_id, processed=False)

    @app.post("/_standin/faults", status_code=201)
    async def arm(spec: dict[str, Any] = Body(...)) -> Any:  # noqa: B008 - FastAPI's way
        try:
            fault = svc.faults.arm(spec)
        except (TypeError, ValueError) as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        return {"operation": fault.operation, "mode": fault.mode, "count": fault.count}

    @app.get("/_standin/faults")
    async def faults() -> Any:
        return svc.faults.listing()

    @app.delete("/_standin/faults")
    async def disarm() -> Any:
        svc.faults.clear()
        return {"deleted": True}

    @app.get("/_standin/calls")
    async def calls() -> Any:
        return list(svc.calls)


def _event_control(app: FastAPI, svc: RazorpayStandin) -> None:
    @app.get("/_standin/events")
    async def events(request: Request) -> Any:
        views = [_event_view(e) for e in svc.store.events]
        return _filtered(views, request, ("order_id", "type"))

    @app.get("/_standin/events/{event_id}/signed")
    async def signed(event_id: str, secret: str | None = None) -> Any:
        """The event's exact body and headers, signed with the configured secret (or
        ``?secret=``): for replays and forgeries."""
        event = svc.store.event(event_id)
        key = secret or svc.config.webhook_secret or ""
        return {"payload": event.payload, "headers": headers_for(event, key)}

    @app.post("/_standin/events/{event_id}/deliver")
    async def deliver(event_id: str) -> Any:
        """Send the event once more, now (no faults, no retries)."""
        result = await svc.webhooks.attempt(svc.store.event(event_id))
        return result or {"ok": False, "error": "no webhook URL or secret configured"}

    @app.get("/_standin/deliveries")
    async def deliveries(event_id: str | None = None) -> Any:
        return [d for d in svc.webhooks.deliveries if event_id in (None, d["event_id"])]

    @app.get("/_standin/config")
    async def config() -> Any:
        return {"webhook_url": svc.config.webhook_url, "key_id": svc.config.key_id,
                "webhook_secret_set": bool(svc.config.webhook_secret)}

    @app.put("/_standin/config")
    async def set_config(change: dict[str, Any] = Body(...)) -> Any:  # noqa: B008
        if "webhook_url" in change:
            svc.config.webhook_url = change["webhook_url"]
        if "webhook_secret" in change:
            svc.config.webhook_secret = change["webhook_secret"]
        return await config()
