"""A failed payout's money back to the platform before the withdrawal voids its hold: the
gateway returned it to the payee's account (Connect: the connected account's balance), so the
flow reverses the transfer (``gateway.reverse_payout``, key ``<flow id>:payout:reversal``).
A refused reversal does not stop the flow — the user is still owed the money, the hold is
voided — but is recorded (step ``payout_reversal_failed``, ``reversal`` in the status's
details), logged and counted for operations (docs/flows.md, "Withdrawals")."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from contracts.errors import ErrorCode
    from contracts.gateway import (
        PAYMENT_FAILED,
        PAYMENT_SUCCEEDED,
        PayoutReversal,
        PayoutReversalRequest,
    )
    from contracts.money import Money, format_amount
    from contracts.withdrawal import WithdrawalInput
    from workflows import activity_refs as act
    from workflows import policies
    from workflows.trail import FlowTrail, failure_of

PATCH = "reverse-failed-payout"


async def reverse_failed_payout(inp: WithdrawalInput, trail: FlowTrail) -> PayoutReversal:
    """Reverse what the failed payout left with the payee; a refusal (or a gateway that stays
    unreachable for the policy's whole window) is a failed reversal, recorded, not raised."""
    req = PayoutReversalRequest(inp.tenant_id, inp.flow_id, inp.amount, inp.method,
                                f"{inp.flow_id}:payout:reversal", inp.gateway)
    try:
        reversal = await workflow.execute_activity(act.reverse_payout, req, **policies.GATEWAY)
    except ActivityError as e:
        reason = failure_of(e, ErrorCode.GATEWAY_UNAVAILABLE, "payout reversal").detail
        reversal = PayoutReversal(inp.gateway, None, PAYMENT_FAILED,
                                  Money(0, inp.amount.currency), reason)
    if reversal.status == PAYMENT_SUCCEEDED:
        trail.step("payout_reversed")
    elif reversal.status == PAYMENT_FAILED:
        trail.step("payout_reversal_failed")
        workflow.logger.error("payout reversal failed for %s, the funds stay with the payee: %s",
                              inp.flow_id, reversal.failure_reason)
    return reversal


def reversal_details(reversal: PayoutReversal | None) -> dict[str, str]:
    """The status's words for it: ``reversal`` (reversed / failed: why / nothing_to_reverse),
    ``reversal_id`` and ``reversed_amount`` when there was one."""
    if reversal is None:
        return {}
    if reversal.status == PAYMENT_FAILED:
        return {"reversal": f"failed: {reversal.failure_reason or 'no reason given'}"}
    details = {"reversal": "reversed" if reversal.status == PAYMENT_SUCCEEDED
               else reversal.status}
    if reversal.reversal_id:
        details["reversal_id"] = reversal.reversal_id
        details["reversed_amount"] = format_amount(reversal.amount.amount,
                                                   reversal.amount.currency)
    return details
