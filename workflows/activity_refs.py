"""Typed references to the activities the workflows call: one stub per activity, with the
activity's registered name and its parameter and result types, so
``workflow.execute_activity(post_transfers, req, **policies.LEDGER)`` is checked by mypy and
decodes the result as the declared type. The implementations are the ``@activity.defn`` methods
of the classes in ``activities/`` (tests/test_workflow_helpers.py checks that every stub matches
its implementation). Sandbox-pure: only temporalio and contracts."""

from __future__ import annotations

from typing import NoReturn

from temporalio import activity

from contracts.donation import (
    CAMPAIGN_CLOSE,
    DONATION_AWARD_POINTS,
    DONATION_TRANSFER,
    CampaignInput,
    DonationInput,
    DonationMoved,
)
from contracts.events import EMIT_EVENT, EventOut
from contracts.gateway import (
    CANCEL_PAYMENT,
    CREATE_PAYMENT,
    CREATE_PAYOUT,
    CREATE_REFUND,
    RETRIEVE_PAYMENT,
    RETRIEVE_PAYOUT,
    RETRIEVE_REFUND,
    REVERSE_PAYOUT,
    CreatePaymentRequest,
    CreateRefundRequest,
    GatewayPayment,
    GatewayPayout,
    GatewayRefund,
    PaymentRef,
    PayoutRef,
    PayoutRequest,
    PayoutReversal,
    PayoutReversalRequest,
    RefundRef,
)
from contracts.ledger import (
    POST_TRANSFERS,
    RESOLVE_TRANSFERS,
    PostedTransfer,
    PostTransfersRequest,
    ResolveTransfersRequest,
)
from contracts.order import ORDER_RECORD, OrderStatusUpdate
from contracts.purchase import (
    PURCHASE_APPLY,
    PURCHASE_EVALUATE,
    PurchaseEvaluation,
    PurchaseInput,
    PurchaseStep,
)
from contracts.reconcile import (
    NUDGE_PAID,
    RECONCILE,
    REMOVE_ORPHANS,
    Drift,
    JanitorInput,
    ReconcileInput,
    ReconcileReport,
)
from contracts.refund import (
    REFUND_CLAWBACK,
    REFUND_RESERVE,
    REFUND_SETTLE,
    ClawbackRequest,
    ClawbackResult,
    RefundPlan,
    RefundReservation,
    RefundSettlement,
)
from contracts.webhooks import DELIVER_WEBHOOK, GIVE_UP_WEBHOOK, DeliveryInput
from contracts.withdrawal import WITHDRAWAL_HOLD, WITHDRAWAL_SETTLE, WithdrawalStep


def _stub() -> NoReturn:
    raise NotImplementedError("a reference: the worker runs the activity's implementation")


# -- ledger and events -------------------------------------------------------------------------

@activity.defn(name=POST_TRANSFERS)
async def post_transfers(req: PostTransfersRequest) -> list[PostedTransfer]:
    _stub()


@activity.defn(name=RESOLVE_TRANSFERS)
async def resolve_transfers(req: ResolveTransfersRequest) -> list[PostedTransfer]:
    _stub()


@activity.defn(name=EMIT_EVENT)
async def emit_event(event: EventOut) -> None:
    _stub()


# -- payment gateway ---------------------------------------------------------------------------

@activity.defn(name=CREATE_PAYMENT)
async def create_payment(req: CreatePaymentRequest) -> GatewayPayment:
    _stub()


@activity.defn(name=RETRIEVE_PAYMENT)
async def retrieve_payment(ref: PaymentRef) -> GatewayPayment:
    _stub()


@activity.defn(name=CANCEL_PAYMENT)
async def cancel_payment(ref: PaymentRef) -> GatewayPayment:
    _stub()


@activity.defn(name=CREATE_REFUND)
async def create_refund(req: CreateRefundRequest) -> GatewayRefund:
    _stub()


@activity.defn(name=RETRIEVE_REFUND)
async def retrieve_refund(ref: RefundRef) -> GatewayRefund:
    _stub()


@activity.defn(name=CREATE_PAYOUT)
async def create_payout(req: PayoutRequest) -> GatewayPayout:
    _stub()


@activity.defn(name=RETRIEVE_PAYOUT)
async def retrieve_payout(ref: PayoutRef) -> GatewayPayout:
    _stub()


@activity.defn(name=REVERSE_PAYOUT)
async def reverse_payout(req: PayoutReversalRequest) -> PayoutReversal:
    _stub()


# -- orders, refunds, withdrawals ----------------------------------------------------------------

@activity.defn(name=ORDER_RECORD)
async def record_order_status(update: OrderStatusUpdate) -> None:
    _stub()


@activity.defn(name=REFUND_RESERVE)
async def reserve_refund(req: RefundReservation) -> RefundPlan:
    _stub()


@activity.defn(name=REFUND_SETTLE)
async def settle_refund(s: RefundSettlement) -> str:
    _stub()


@activity.defn(name=REFUND_CLAWBACK)
async def claw_back_cashback(req: ClawbackRequest) -> ClawbackResult:
    _stub()


@activity.defn(name=WITHDRAWAL_HOLD)
async def hold_withdrawal(step: WithdrawalStep) -> None:
    _stub()


@activity.defn(name=WITHDRAWAL_SETTLE)
async def settle_withdrawal(step: WithdrawalStep) -> None:
    _stub()


# -- purchases, campaigns ------------------------------------------------------------------------

@activity.defn(name=PURCHASE_EVALUATE)
async def evaluate_purchase(inp: PurchaseInput) -> PurchaseEvaluation:
    _stub()


@activity.defn(name=PURCHASE_APPLY)
async def apply_purchase_step(step: PurchaseStep) -> None:
    _stub()


@activity.defn(name=DONATION_TRANSFER)
async def transfer_donation(inp: DonationInput) -> DonationMoved:
    _stub()


@activity.defn(name=DONATION_AWARD_POINTS)
async def award_donation_points(inp: DonationInput) -> int:
    _stub()


@activity.defn(name=CAMPAIGN_CLOSE)
async def close_campaign(inp: CampaignInput) -> bool:
    _stub()


# -- outbound webhooks ---------------------------------------------------------------------------

@activity.defn(name=DELIVER_WEBHOOK)
async def deliver_webhook(inp: DeliveryInput) -> str:
    _stub()


@activity.defn(name=GIVE_UP_WEBHOOK)
async def give_up_webhook(inp: DeliveryInput, reason: str) -> None:
    _stub()


# -- reconciliation and the janitor ---------------------------------------------------------------

@activity.defn(name=RECONCILE)
async def reconcile(inp: ReconcileInput) -> ReconcileReport:
    _stub()


@activity.defn(name=NUDGE_PAID)
async def nudge_paid(drifts: list[Drift]) -> list[str]:
    _stub()


@activity.defn(name=REMOVE_ORPHANS)
async def remove_orphans(inp: JanitorInput) -> list[str]:
    _stub()
