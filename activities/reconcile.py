"""Reconciliation and the janitor's fixes. ``Reconciler.report`` compares the ledger with the
gateway's own objects (its list calls): per payment, refund and payout, a success with no
ledger movement, a movement with no success, amounts that differ, a succeeded object of ours
never recorded, a gateway movement in the ledger with no object. The `walletflow reconcile`
command and the scheduled janitor (``workflows/janitor.py``) both run it; the janitor then
signals each flow still waiting for a payment the gateway says succeeded (the webhook's own
``payment_event``, event id ``janitor:<payment id>``, so repeats are deduplicated) and removes
claimed flow rows that never got a workflow."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.gateways import GatewayRefused, GatewayUnavailable, PaymentGateway
from contracts.errors import ErrorCode
from contracts.gateway import PAYMENT_SUCCEEDED, PaymentEvent
from contracts.money import Money
from contracts.reconcile import (
    AMOUNT_DIFFERS,
    KINDS,
    LEDGER_WITHOUT_OBJECT,
    LEDGER_WITHOUT_SUCCESS,
    NUDGE_PAID,
    RECONCILE,
    REMOVE_ORPHANS,
    SUCCEEDED_WITHOUT_LEDGER,
    UNRECORDED_OBJECT,
    Drift,
    JanitorInput,
    LedgerOnly,
    ReconcileInput,
    ReconcileReport,
    RecordedObject,
    SeenObject,
)
from db.flows import FlowRepository
from db.reconcile import ReconcileRepository

log = logging.getLogger(__name__)
LISTING_SLACK = 300  # seconds: a gateway creates an object a little before the flow records it
REPORTED = 1000  # drifts a report carries at most (all are logged)


def object_drift(rec: RecordedObject, seen: SeenObject | None) -> Drift | None:
    """What is wrong with one recorded object, given the gateway's listing of it."""
    succeeded = seen is not None and seen.status == PAYMENT_SUCCEEDED
    moved = Money(rec.moved, rec.amount.currency)
    what = f"{rec.kind} {rec.object_id} of {rec.flow_id}"
    said = seen.amount if seen is not None else None

    def drift(problem: str, detail: str) -> Drift:
        return Drift(problem, rec.kind, rec.object_id, rec.flow_id, rec.tenant_id,
                     f"{what}: {detail}", said)

    if succeeded and rec.moved == 0:
        return drift(SUCCEEDED_WITHOUT_LEDGER,
                     f"the gateway says {PAYMENT_SUCCEEDED} ({said}), the ledger moved nothing")
    if not succeeded and rec.moved:
        status = seen.status if seen is not None else "nothing (it does not list it)"
        return drift(LEDGER_WITHOUT_SUCCESS, f"the ledger moved {moved}, the gateway says "
                                             f"{status}")
    if succeeded and not (said == rec.amount == moved):
        return drift(AMOUNT_DIFFERS, f"the gateway says {said}, the flow recorded "
                                     f"{rec.amount}, the ledger moved {moved}")
    return None


def compare(recorded: list[RecordedObject], seen: list[SeenObject], ledger_only: list[LedgerOnly],
            tenant_id: str | None, window: tuple[int, int]) -> list[Drift]:
    """Every drift between what flows recorded and moved and what the gateway lists;
    ``window``: (from, to) unix seconds in which an unrecorded object counts."""
    listed = {(s.gateway, s.kind, s.object_id): s for s in seen}
    drifts = [d for r in recorded
              if (d := object_drift(r, listed.pop((r.gateway, r.kind, r.object_id), None)))]
    for s in listed.values():
        ours = s.tenant_id is not None and tenant_id in (None, s.tenant_id)
        if ours and s.status == PAYMENT_SUCCEEDED and window[0] <= s.created < window[1]:
            drifts.append(Drift(UNRECORDED_OBJECT, s.kind, s.object_id, s.flow_id, s.tenant_id,
                                f"{s.kind} {s.object_id} ({s.amount}, flow {s.flow_id}) "
                                "succeeded at the gateway; no flow recorded it", s.amount))
    drifts += [Drift(LEDGER_WITHOUT_OBJECT, o.kind, None, o.flow_id, o.tenant_id,
                     f"flow {o.flow_id} moved {o.moved} as a {o.kind} through the gateway's "
                     f"account; it recorded no {o.kind}") for o in ledger_only]
    return drifts


class Reconciler:
    """Given the gateways, the database and (for the janitor's fixes) a Temporal client."""

    def __init__(self, gateways: dict[str, PaymentGateway],
                 sessions: async_sessionmaker[AsyncSession], client: Client | None = None):
        self.gateways, self.sessions, self.client = gateways, sessions, client

    async def report(self, inp: ReconcileInput,
                     progress: Callable[[str], None] = lambda _: None) -> ReconcileReport:
        now = int(time.time())
        async with self.sessions() as session:
            repo = ReconcileRepository(session)
            recorded = await repo.recorded(inp.tenant_id, inp.since_seconds, inp.settle_seconds)
            ledger_only = await repo.ledger_only(inp.tenant_id, inp.since_seconds,
                                                 inp.settle_seconds)
        progress(f"{len(recorded)} gateway objects recorded by flows in the window")
        seen: list[SeenObject] = []
        for name, gateway in self.gateways.items():
            for kind in KINDS:
                listed = await gateway.list_objects(kind, now - inp.since_seconds - LISTING_SLACK)
                progress(f"{name}: {len(listed)} {kind}s listed")
                seen += listed
        drifts = compare(recorded, seen, ledger_only, inp.tenant_id,
                         (now - inp.since_seconds, now - inp.settle_seconds))
        return ReconcileReport(len(recorded) + len(ledger_only), drifts)

    @activity.defn(name=RECONCILE)
    async def reconcile(self, inp: ReconcileInput) -> ReconcileReport:
        """The report, each drift logged and the count a metric (``walletflow_reconcile_drift``)."""
        try:
            report = await self.report(inp)
        except GatewayRefused as e:
            raise ApplicationError(str(e), type=ErrorCode.GATEWAY_REFUSED.value,
                                   non_retryable=True) from e
        except GatewayUnavailable as e:
            raise ApplicationError(str(e), type=ErrorCode.GATEWAY_UNAVAILABLE.value) from e
        for d in report.drifts:
            log.warning("reconcile drift %s: %s", d.problem, d.detail,
                        extra={"drift": d.problem, "flow_id": d.flow_id})
        activity.metric_meter().create_gauge(
            "walletflow_reconcile_drift", "gateway objects whose ledger movement drifts"
        ).set(len(report.drifts))
        log.info("reconciled %d objects: %d drifting", report.checked, len(report.drifts))
        report.drifts = report.drifts[:REPORTED]
        return report

    @activity.defn(name=NUDGE_PAID)
    async def nudge_paid(self, drifts: list[Drift]) -> list[str]:
        """Signal each flow whose payment succeeded with no ledger movement yet with the
        gateway's word, as its webhook would; flows that are closed are left (the drift stays
        reported). Returns the flows signalled."""
        assert self.client is not None
        nudged = []
        for d in drifts:
            if d.problem != SUCCEEDED_WITHOUT_LEDGER or d.kind != "payment" or not d.flow_id:
                continue
            assert d.object_id is not None
            event = PaymentEvent(f"janitor:{d.object_id}", d.object_id, PAYMENT_SUCCEEDED,
                                 d.amount)
            try:
                await self.client.get_workflow_handle(d.flow_id).signal("payment_event", event)
            except RPCError as e:
                if e.status != RPCStatusCode.NOT_FOUND:
                    raise
                log.info("janitor: flow %s of paid %s is closed", d.flow_id, d.object_id)
                continue
            log.warning("janitor: %s succeeded with no webhook; signalled %s", d.object_id,
                        d.flow_id)
            nudged.append(d.flow_id)
        return nudged

    @activity.defn(name=REMOVE_ORPHANS)
    async def remove_orphans(self, inp: JanitorInput) -> list[str]:
        """Remove claimed flow rows with no workflow in Temporal (the API died between the
        claim and the start), as a failed start does: their key can be used afresh and the
        flow no longer shows as ``archived``."""
        assert self.client is not None
        async with self.sessions() as session:
            candidates = await FlowRepository(session).orphan_candidates(
                inp.tenant_id, inp.orphan_grace_seconds, inp.orphan_max_age_seconds)
        orphans = [c for c in candidates if not await self._exists(c["flow_id"])]
        removed = []
        async with self.sessions.begin() as session:
            flows = FlowRepository(session)
            for c in orphans:
                if await flows.remove_orphan(c["tenant_id"], c["idempotency_key"], c["flow_id"]):
                    removed.append(c["flow_id"])
        for flow_id in removed:
            log.warning("janitor: removed flow row %s: no workflow was ever started", flow_id)
        return removed

    async def _exists(self, flow_id: str) -> bool:
        assert self.client is not None
        try:
            await self.client.get_workflow_handle(flow_id).describe()
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return True
