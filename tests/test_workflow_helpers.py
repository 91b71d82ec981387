"""The workflows' shared pieces, as plain Python: the trail (state, failure, steps → FlowStatus),
``failure_of``, GatewayEvents, the approvals, the payment track, the ledger transfers, the named
policies, and the typed activity references against the worker's implementations."""

from __future__ import annotations

import asyncio
import inspect
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    RetryState,
    TimeoutError,
    TimeoutType,
)

import worker
from contracts.approvals import ApprovalDecision
from contracts.errors import ErrorCode, Failure
from contracts.gateway import (
    PAYMENT_FAILED,
    PAYMENT_PENDING,
    PAYMENT_SUCCEEDED,
    GatewayPayment,
    GatewayRefund,
    PaymentEvent,
    RefundEvent,
)
from contracts.money import POINTS, Money
from contracts.order import OrderPaymentInput
from contracts.topup import TopUpInput
from workflows import activity_refs, policies
from workflows.approvals import Approvals, ending
from workflows.gateway_events import GatewayEvents, GatewayWord, gateway_word
from workflows.payment import PaymentTrack
from workflows.trail import FlowTrail, failure_of
from workflows.transfers import order_card_capture, order_holds, topup_credit

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def _topup(**kw: Any) -> TopUpInput:
    return TopUpInput(**{"tenant_id": "t", "user_id": "u1", "flow_id": "t:topup:1",
                         "charge": Money(11000, "EUR"), "credit": Money(11000, "EUR"), **kw})


# -- the trail ---------------------------------------------------------------------------------

def test_trail_reports_state_steps_and_a_typed_failure() -> None:
    trail = FlowTrail("topup", "created", clock=Clock())
    trail.step("started")
    trail.state = "awaiting_payment"
    status = trail.status(_topup(), {"charge": "110.00"}, {"gateway": "stripe"})
    assert (status.kind, status.state, status.error, status.error_code) == (
        "topup", "awaiting_payment", None, None)
    trail.end("expired", Failure(ErrorCode.EXPIRED, "no payment before the expiry"))
    status = trail.status(_topup(), {}, {})
    assert [s.name for s in status.steps] == ["started", "expired"]
    assert (status.flow_id, status.tenant_id, status.user_id) == ("t:topup:1", "t", "u1")
    assert (status.created_at, status.updated_at) == (status.steps[0].at, status.steps[1].at)
    assert (status.state, status.error, status.error_code) == (
        "expired", "no payment before the expiry", "expired")
    assert type(status.error_code) is str


def test_an_empty_trail_has_no_times() -> None:
    status = FlowTrail("refund", "requested", clock=Clock()).status(_topup(), {}, {})
    assert (status.created_at, status.updated_at, status.steps) == ("", "", [])


# -- failure_of --------------------------------------------------------------------------------

def _activity_error(cause: BaseException | None) -> ActivityError:
    err = ActivityError("activity error", scheduled_event_id=5, started_event_id=6,
                        identity="w", activity_type="refunds.reserve", activity_id="1",
                        retry_state=RetryState.NON_RETRYABLE_FAILURE)
    err.__cause__ = cause
    return err


def test_failure_of_keeps_the_activitys_code_and_detail() -> None:
    refused = ApplicationError("only 110.00 EUR can still be refunded",
                               type="refund_exceeds_paid", non_retryable=True)
    assert failure_of(_activity_error(refused), ErrorCode.INTERNAL_ERROR) == Failure(
        "refund_exceeds_paid", "only 110.00 EUR can still be refunded")
    # a local activity's failure arrives unwrapped
    assert failure_of(refused, ErrorCode.INTERNAL_ERROR).code == "refund_exceeds_paid"


def test_failure_of_says_the_code_once_and_adds_context() -> None:
    doubled = ApplicationError("over_limit: the daily limit is 500.00 EUR", type="over_limit")
    assert failure_of(_activity_error(doubled), ErrorCode.INTERNAL_ERROR).detail == (
        "the daily limit is 500.00 EUR")
    refused = ApplicationError("stripe refused: amount_too_large", type="gateway_refused")
    assert failure_of(refused, ErrorCode.GATEWAY_REFUSED, "payment could not be created") == \
        Failure("gateway_refused", "payment could not be created: stripe refused: "
                                   "amount_too_large")


def test_failure_of_an_untyped_failure_takes_the_default_code() -> None:
    timeout = TimeoutError("activity timeout", type=TimeoutType.START_TO_CLOSE,
                           last_heartbeat_details=[])
    assert failure_of(_activity_error(timeout), ErrorCode.PAYMENT_FAILED) == Failure(
        "payment_failed", "activity timeout")
    assert failure_of(ApplicationError("boom"), ErrorCode.INTERNAL_ERROR).code == "internal_error"


# -- gateway events ----------------------------------------------------------------------------

def _events() -> GatewayEvents[PaymentEvent]:
    return GatewayEvents(lambda e: e.payment_id, "payment",
                         lambda e: "amount differs" if e.amount == Money(1, "EUR") else None)


def test_gateway_events_hold_early_ones_and_keep_the_first_decisive() -> None:
    events = _events()
    assert not events.receive(PaymentEvent("e1", "pi_1", PAYMENT_PENDING))
    assert not events.receive(PaymentEvent("e2", "pi_1", PAYMENT_FAILED, failure_reason="no"))
    assert events.decisive is None  # held until the payment is known
    assert events.expect("pi_1")
    assert events.decisive is not None and events.decisive.event_id == "e2"
    assert not events.receive(PaymentEvent("e3", "pi_1", PAYMENT_SUCCEEDED))
    assert events.decisive.event_id == "e2"


def test_gateway_events_deduplicate_and_ignore_others() -> None:
    events = _events()
    events.expect("pi_1")
    assert not events.receive(PaymentEvent("e1", "pi_2", PAYMENT_SUCCEEDED))
    assert not events.receive(PaymentEvent("e2", "pi_1", PAYMENT_SUCCEEDED, Money(1, "EUR")))
    assert events.receive(PaymentEvent("e3", "pi_1", PAYMENT_SUCCEEDED))
    assert not events.receive(PaymentEvent("e3", "pi_1", PAYMENT_SUCCEEDED))
    assert events.ignored == ["e1: other payment pi_2", "e2: amount differs"]
    assert events.details() == {"ignored_events": "e1: other payment pi_2; e2: amount differs"}
    assert _events().details() == {}


def test_gateway_word_is_the_created_objects_own_when_already_decided() -> None:
    events: GatewayEvents[RefundEvent] = GatewayEvents(lambda e: e.refund_id, "refund")

    async def ask() -> GatewayRefund:
        raise AssertionError("nothing to ask")

    created = GatewayRefund("stripe", "re_1", PAYMENT_FAILED, Money(500, "EUR"), "expired_card")
    word = asyncio.run(gateway_word(events, timedelta(days=1), ask, created=created))
    assert word == GatewayWord(PAYMENT_FAILED, "expired_card", asked=False)


# -- the payment track -------------------------------------------------------------------------

def test_payment_track_records_the_decision_and_says_why_unpaid() -> None:
    trail = FlowTrail("topup", "created", clock=Clock())
    track = PaymentTrack(trail, check_amount=True, record_decision=True)
    assert track.refusal("payment", "no payment before the expiry") == Failure(
        "expired", "no payment before the expiry")
    track.receive(PaymentEvent("e1", "pi_1", PAYMENT_FAILED, failure_reason="card_declined"))
    track.created(GatewayPayment("stripe", "pi_1", PAYMENT_PENDING, Money(11000, "EUR"),
                                 client_secret="s"))
    assert [s.name for s in trail.steps] == ["gateway_failed"]
    assert track.refusal("payment", "late") == Failure("payment_failed",
                                                       "payment failed: card_declined")
    assert track.refusal("payment", "late", asked=True).code == "expired"
    assert track.details() == {"payment_id": "pi_1"}
    info = track.checkout("t:topup:1", "2026-01-01T00:30:00+00:00")
    assert (info.payment_id, info.client_secret) == ("pi_1", "s")
    assert track.ref().currency == "EUR"


def test_payment_track_ignores_another_amount() -> None:
    track = PaymentTrack(FlowTrail("order_payment", "pending", clock=Clock()), check_amount=True)
    track.created(GatewayPayment("stripe", "pi_1", PAYMENT_PENDING, Money(11000, "EUR")))
    track.receive(PaymentEvent("e1", "pi_1", PAYMENT_SUCCEEDED, Money(100, "EUR")))
    assert track.events.decisive is None
    assert track.events.ignored == ["e1: amount 1.00 EUR differs"]


# -- approvals ---------------------------------------------------------------------------------

def test_approvals_check_record_and_summarise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workflow, "now", lambda: T0)
    approvals = Approvals(["alice", "bob", "carol"], "bob", 2, "withdrawal")
    assert approvals.check(ApprovalDecision("alice", True)) == "not awaiting a decision"
    approvals.open = True
    assert approvals.check(ApprovalDecision("mallory", True)) == (
        "'mallory' is not an admin of this tenant")
    assert approvals.check(ApprovalDecision("bob", True)) == (
        "the requester cannot approve their own withdrawal")
    assert approvals.from_signal(ApprovalDecision("alice", True, "d1")) == "approved_by_alice"
    assert approvals.from_signal(ApprovalDecision("alice", True, "d1")) is None  # a duplicate
    assert approvals.from_signal(ApprovalDecision("alice", True, "d2")) is None
    assert approvals.answer(ApprovalDecision("alice", True)) == "approved (1 of 2)"
    assert not approvals.done
    approvals.record(ApprovalDecision("carol", False, reason="not this one"), "update")
    assert approvals.done and approvals.rejection == "rejected by carol: not this one"
    summary = approvals.summary()
    assert summary["approvals"] == "1 of 2" and "alice already decided" in summary["ignored"]


def test_a_failed_approval_ends_expired_or_rejected() -> None:
    assert ending(Failure(ErrorCode.EXPIRED, "no decision")) == "expired"
    assert ending(Failure(ErrorCode.REJECTED, "rejected by carol")) == "rejected"


# -- ledger transfers --------------------------------------------------------------------------

def test_topup_credits_the_wallet_or_issues_points() -> None:
    [credit] = topup_credit(_topup())
    assert (credit.idempotency_key, credit.credit.kind, credit.amount) == (
        "t:topup:1:credit", "user_wallet", 11000)
    charge, points = topup_credit(_topup(credit=Money(550, POINTS), package="p550"))
    assert (charge.credit.kind, charge.amount, charge.currency) == ("merchant_revenue", 11000,
                                                                    "EUR")
    assert (points.debit.kind, points.credit.kind, points.amount, points.metadata) == (
        "points_issuance", "user_points", 550, {"package": "p550"})


def test_an_order_holds_its_wallet_and_points_parts() -> None:
    inp = OrderPaymentInput("t", "t:order:1", "o1", "u1", Money(5000, "EUR"), "split",
                            wallet_amount=2000, card_amount=3000)
    assert [(h.idempotency_key, h.amount) for h in order_holds(inp)] == [
        ("t:order:1:hold:wallet", 2000)]
    [card] = order_card_capture(inp)
    assert (card.debit.kind, card.amount, card.metadata) == ("gateway_clearing", 3000,
                                                             {"order_id": "o1"})
    points = OrderPaymentInput("t", "t:order:2", "o2", "u1", Money(300, POINTS), "points",
                               points=300)
    assert [h.currency for h in order_holds(points)] == [POINTS]


# -- named policies ----------------------------------------------------------------------------

def test_named_policies_keep_their_values() -> None:
    assert policies.LEDGER == {
        "start_to_close_timeout": timedelta(seconds=10),
        "retry_policy": RetryPolicy(
            initial_interval=timedelta(milliseconds=200), backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=10),
            non_retryable_error_types=["insufficient_funds", "ledger_conflict",
                                       "account_missing"])}
    assert (policies.GATEWAY["start_to_close_timeout"],
            policies.GATEWAY["schedule_to_close_timeout"]) == (timedelta(seconds=15),
                                                               timedelta(hours=6))
    assert policies.WEBHOOK_DELIVERY["retry_policy"].non_retryable_error_types == [
        "endpoint_gone", "endpoint_disabled"]


# -- typed activity references -------------------------------------------------------------------

def _implementations() -> dict[str, activity._Definition]:
    """Every @activity.defn method of the activity classes the worker registers."""
    found = {}
    for cls in vars(worker).values():
        if inspect.isclass(cls) and cls.__module__.startswith("activities."):
            for _, fn in inspect.getmembers(cls, inspect.isfunction):
                defn = activity._Definition.from_callable(fn)
                if defn is not None and defn.name:
                    found[defn.name] = defn
    return found


def _references() -> list[activity._Definition]:
    return [d for _, fn in inspect.getmembers(activity_refs, inspect.iscoroutinefunction)
            if (d := activity._Definition.from_callable(fn)) is not None]


def test_every_reference_names_a_registered_activity_with_its_types() -> None:
    implementations, references = _implementations(), _references()
    assert len(references) >= 20
    for ref in references:
        impl = implementations.get(ref.name or "")
        assert impl is not None, f"{ref.name}: no implementation in activities/"
        assert (ref.arg_types, ref.ret_type) == (impl.arg_types, impl.ret_type), ref.name
