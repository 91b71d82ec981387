"""Purchase-credit: a store reports a purchase; the user earns cashback, pending through the
store's return window, then available — or reversed when the store cancels or refunds first."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.flow import FlowStatus
    from contracts.money import format_amount
    from contracts.purchase import PurchaseEvaluation, PurchaseInput, PurchaseStep, StoreEvent
    from contracts.rewards import cashback_for, points_for
    from workflows import activity_refs as act
    from workflows import console, policies
    from workflows.trail import FlowTrail


@workflow.defn(name="PurchaseCreditWorkflow")
class PurchaseCreditWorkflow:
    def __init__(self) -> None:
        self._input: PurchaseInput | None = None
        self._eval: PurchaseEvaluation | None = None
        self._events: list[StoreEvent] = []
        self._seen: set[str] = set()
        self._late: list[str] = []
        self._trail = FlowTrail("purchase", "received")
        self._cashback = 0
        self._points = 0
        self._refunded = 0
        self._release_at = ""
        self._hold_key: str | None = None
        self._holds = 0

    @workflow.run
    async def run(self, inp: PurchaseInput) -> str:
        self._input = inp
        self._trail.step("received")
        self._eval = ev = await workflow.execute_activity(act.evaluate_purchase, inp,
                                                          **policies.LEDGER)
        self._trail.step(f"attributed_{ev.method}")
        self._cashback, self._points = ev.cashback, ev.points
        if not ev.eligible or (ev.cashback == 0 and ev.points == 0):
            return await self._finish("not_eligible")

        # Pending through the return window: a durable timer that survives any restart.
        deadline = workflow.now() + timedelta(seconds=ev.return_window_seconds)
        self._release_at = deadline.isoformat()
        await self._apply(state="pending", hold=ev.cashback, release_at=self._release_at)
        while (remaining := (deadline - workflow.now()).total_seconds()) > 0:
            try:
                await workflow.wait_condition(lambda: bool(self._events), timeout=remaining)
            except TimeoutError:
                break
            event = self._events.pop(0)
            self._refunded = min(inp.amount.amount, max(
                self._refunded + _refund(event),
                event.refunded_total.amount if event.refunded_total else 0))
            if event.kind == "cancelled" or self._refunded >= inp.amount.amount:
                self._cashback = self._points = 0
                await self._apply(state="reversed", void=True)
                return await self._finish("reversed")
            kept = inp.amount.amount - self._refunded
            self._cashback = cashback_for(kept, ev.rate)
            self._points = points_for(kept, inp.amount.currency, ev.points_per_unit)
            await self._apply(state="pending", void=True, hold=self._cashback)
            self._trail.step("reduced_by_refund")

        await self._apply(state="available", post=True, points=self._points)
        return await self._finish("available")

    async def _apply(self, state: str, void: bool = False, post: bool = False, hold: int = 0,
                     points: int = 0, release_at: str | None = None) -> None:
        inp = self._input
        assert inp is not None
        new_key = None
        if hold > 0:
            new_key = f"{inp.flow_id}:cashback:{self._holds}"
            self._holds += 1
        await workflow.execute_activity(act.apply_purchase_step, PurchaseStep(
            tenant_id=inp.tenant_id, flow_id=inp.flow_id, store_order_id=inp.store_order_id,
            user_id=inp.user_id, currency=inp.amount.currency, state=state,
            void_key=self._hold_key if void else None,
            post_key=self._hold_key if post else None,
            hold_key=new_key, hold_amount=hold, points=points, refunded=self._refunded,
            release_at=release_at,
        ), **policies.LEDGER)
        if void or new_key:
            self._hold_key = new_key
        self._trail.state = state
        self._trail.step(state)

    async def _finish(self, state: str) -> str:
        self._trail.state = state
        if not self._trail.steps or self._trail.steps[-1].name != state:
            self._trail.step(state)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return state

    @workflow.signal(name="store_event", description=console.STORE_EVENT)
    def store_event(self, event: StoreEvent) -> None:
        """A cancellation or refund reported by the store; deduplicated on the event id. After
        the cashback became available (or was reversed) it is recorded and changes nothing."""
        if event.event_id in self._seen:
            return
        self._seen.add(event.event_id)
        if self._trail.state in ("available", "reversed", "not_eligible"):
            self._late.append(f"{event.event_id}: {event.kind} after {self._trail.state}")
            return
        self._events.append(event)

    @workflow.query(name="status", description=console.STATUS)
    def status(self) -> FlowStatus:
        inp = self._input
        assert inp is not None
        cur = inp.amount.currency
        details = {"store_order_id": inp.store_order_id, "platform": inp.platform,
                   "release_at": self._release_at}
        if self._eval:
            details.update(attribution=self._eval.method, confidence=self._eval.confidence,
                           tier=self._eval.tier, cashback_rate=self._eval.rate)
        if self._late:
            details["late_events"] = "; ".join(self._late[-10:])
        return self._trail.status(inp, {
            "order": format_amount(inp.amount.amount, cur), "currency": cur,
            "cashback": format_amount(self._cashback, cur),
            "refunded": format_amount(self._refunded, cur), "points": str(self._points)}, details)


def _refund(event: StoreEvent) -> int:
    return event.refund.amount if event.refund else 0
