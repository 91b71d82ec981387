"""A refund takes back the cashback its order earned: a still-pending cashback is reduced by
its own purchase flow (a signal), an available one is clawed back from the wallet. Sandbox-pure."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.money import Money
    from contracts.purchase import StoreEvent
    from contracts.refund import ClawbackRequest
    from workflows import activity_refs as act
    from workflows.steps import db_step


async def claw_back(tenant_id: str, refund_flow_id: str, order_id: str,
                    refund: Money) -> str | None:
    """The step for the refund's history ("cashback_clawed_back" …), or None: no cashback."""
    result = await db_step(act.claw_back_cashback, ClawbackRequest(
        tenant_id, refund_flow_id, order_id, refund))
    if result.action == "signal_purchase" and result.purchase_flow_id:
        await workflow.get_external_workflow_handle(result.purchase_flow_id).signal(
            "store_event", StoreEvent(f"refund:{refund_flow_id}", "refunded", refund=refund))
    return None if result.action == "none" else f"cashback_{result.action}"
