"""`RazorpayStandin`: the store, the faults and the webhook sender of one app, and the actions
that cause events (a payment captured or failed, a refund created, processed or failed)."""

from __future__ import annotations

import asyncio
from collections import deque

from razorpay_standin.config import RazorpayStandinConfig
from razorpay_standin.faults import Faults
from razorpay_standin.store import JSON, RazorpayError, Store, checkout_signature
from razorpay_standin.webhooks import WebhookSender


class RazorpayStandin:
    def __init__(self, config: RazorpayStandinConfig) -> None:
        self.config = config
        self.store = Store(account_id=config.account_id)
        self.faults = Faults()
        self.webhooks = WebhookSender(config, self.faults)
        self.calls: deque[JSON] = deque(maxlen=10_000)

    async def fault(self, operation: str, flow_id: str | None) -> None:
        """Raise the armed fault for this API call, if any (a timeout answers late, then 500)."""
        self.calls.append({"operation": operation, "flow_id": flow_id})
        fault = self.faults.take(operation, flow_id)
        if fault is None:
            return
        self.calls[-1]["fault"] = fault.mode
        if fault.mode == "timeout":
            await asyncio.sleep(fault.delay_seconds)
        if fault.mode == "error_400":
            raise RazorpayError(400, "injected fault: bad request")
        raise RazorpayError(500, "injected fault: server error", code="SERVER_ERROR")

    def pay(self, order_id: str) -> JSON:
        """The customer paid: payment.captured and order.paid; what checkout.js hands back."""
        payment = self.store.attempt(order_id, succeed=True)
        order = self.store.order(order_id)
        self.webhooks.dispatch(self.store.record_event("payment.captured",
                                                       {"payment": payment}))
        self.webhooks.dispatch(self.store.record_event("order.paid",
                                                       {"payment": payment, "order": order}))
        return {"razorpay_payment_id": payment["id"], "razorpay_order_id": order_id,
                "razorpay_signature": checkout_signature(order_id, payment["id"],
                                                         self.config.key_secret)}

    def decline(self, order_id: str, reason: str | None = None) -> JSON:
        """A declined attempt: payment.failed (the order stays payable, as at Razorpay)."""
        payment = self.store.attempt(order_id, succeed=False, reason=reason)
        self.webhooks.dispatch(self.store.record_event("payment.failed", {"payment": payment}))
        return payment

    def create_refund(self, payment_id: str, body: JSON) -> JSON:
        refund = self.store.create_refund(payment_id, body)
        payment = self.store.payment(payment_id)
        self.webhooks.dispatch(self.store.record_event("refund.created",
                                                       {"refund": refund, "payment": payment}))
        if self.config.auto_process_refunds:
            answer = dict(refund)
            self.resolve_refund(refund["id"], processed=True)
            return answer
        return refund

    def resolve_refund(self, refund_id: str, processed: bool) -> JSON:
        refund = self.store.resolve_refund(refund_id, processed)
        payment = self.store.payment(refund["payment_id"])
        kind = "refund.processed" if processed else "refund.failed"
        self.webhooks.dispatch(self.store.record_event(kind,
                                                       {"refund": refund, "payment": payment}))
        return refund

    async def aclose(self) -> None:
        await self.webhooks.aclose()
