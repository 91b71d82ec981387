"""Admin decisions on flows that wait for approval (withdrawals, large refunds): the `decide`
update with a validator, so the caller — the API or the CLI — gets a clear answer."""

from __future__ import annotations

import secrets
from typing import Any

from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.errors import ProblemError
from contracts.approvals import ApprovalDecision


async def decide(client: Any, flow_id: str, admin: str, approve: bool, note: str | None) -> str:
    """Send a decision as ``admin``; a refusal by the workflow's validator becomes 403
    (requester, not an admin) or 409 (already decided, not waiting)."""
    decision = ApprovalDecision(admin=admin, approve=approve,
                                decision_id=f"update-{secrets.token_hex(6)}", reason=note)
    try:
        return await client.get_workflow_handle(flow_id).execute_update(
            "decide", decision, result_type=str)
    except WorkflowUpdateFailedError as e:
        cause = e.cause
        detail = cause.message if isinstance(cause, ApplicationError) else str(cause or e)
        status = 403 if ("requester" in detail or "not an admin" in detail) else 409
        code = "requester_cannot_approve" if "requester" in detail else "decision_refused"
        raise ProblemError(status, code, detail) from None
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise ProblemError(409, "decision_refused", "the flow is closed") from e
        raise ProblemError(503, "temporal_unavailable", "try again later") from e
