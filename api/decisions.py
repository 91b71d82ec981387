"""Admin decisions on flows that wait for approval (withdrawals, large refunds): the `decide`
update with a validator, so the caller — the API or the CLI — gets a clear answer."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.errors import ProblemError
from api.flows import own_flow
from contracts.approvals import ApprovalDecision
from contracts.errors import ErrorCode as E
from db.tenants import Principal

DECIDE_TIMEOUT = timedelta(seconds=10)  # bounded: past it, 503


def _refused(detail: str, kind: str | None) -> ProblemError:
    """The validator's typed refusal: forbidden / requester_cannot_approve (403), or
    decision_refused (409: already decided, not waiting)."""
    return ProblemError(E(kind) if kind is not None and kind in set(E) else E.DECISION_REFUSED,
                        detail)


def decision_update_id(admin: str, approve: bool) -> str:
    """The `decide` update's id (and the decision's), the same for every retry of one admin's
    decision on one flow: Temporal attaches a retried update to the first (one that timed out
    here may still land), and the workflow answers a repeat of a recorded decision again
    (``Approvals.repeats``) instead of refusing it as "already decided"."""
    return f"decide:{admin}:{'approve' if approve else 'reject'}"


async def decide(client: Any, flow_id: str, admin: str, approve: bool, note: str | None) -> str:
    """Send a decision as ``admin`` (idempotent: the same admin's same decision again answers
    the same); a refusal by the workflow's validator becomes 403 (requester, not an admin) or
    409 (decided the other way, not waiting)."""
    decision_id = decision_update_id(admin, approve)
    decision = ApprovalDecision(admin=admin, approve=approve, decision_id=decision_id,
                                reason=note)
    try:
        result: str = await client.get_workflow_handle(flow_id).execute_update(
            "decide", decision, id=decision_id, result_type=str, rpc_timeout=DECIDE_TIMEOUT)
        return result
    except WorkflowUpdateRPCTimeoutOrCancelledError as e:
        raise ProblemError(E.TEMPORAL_UNAVAILABLE, "the decision was not confirmed in time; "
                           "send it again: the same decision is counted once") from e
    except WorkflowUpdateFailedError as e:
        cause = e.cause
        if isinstance(cause, ApplicationError):
            raise _refused(cause.message, cause.type) from None
        raise _refused(str(cause or e), None) from None
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise ProblemError(E.DECISION_REFUSED, "the flow is closed") from e
        raise ProblemError(E.TEMPORAL_UNAVAILABLE, "try again later") from e


async def decide_flow(session: AsyncSession, temporal: Client, principal: Principal,
                      flow_id: str, kind: str, approve: bool, note: str | None
                      ) -> dict[str, Any]:
    """The API's decision: the caller's admin key's holder decides the tenant's flow."""
    await own_flow(session, principal, flow_id, kind)
    result = await decide(temporal, flow_id, principal.actor, approve, note)
    return {"flow_id": flow_id, "decision": result, "admin": principal.actor}
