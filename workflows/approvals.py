"""Maker-checker bookkeeping for flows that wait for admins (refunds above a threshold,
withdrawals): who may decide, who decided, what was ignored. Sandbox-pure; `ApprovalMessages`
holds the Temporal handlers the flows inherit, so the API's update, the CLI, the Temporal UI's
signal and `temporal workflow signal` all mean the same."""

from __future__ import annotations

import json
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from contracts.approvals import ApprovalDecision, DecisionRecord
    from contracts.errors import ErrorCode, Failure
    from workflows import console
    from workflows.trail import FlowTrail


class Approvals:
    def __init__(self, admins: list[str], requester: str, required: int, what: str,
                 trail: FlowTrail | None = None) -> None:
        """``trail``: shown, while the flow waits, who may decide and what to send."""
        self.admins, self.requester = admins, requester
        self.required, self.what = required, what
        self.trail = trail
        self.open = False  # the flow sets it while it waits for decisions
        self.decisions: list[DecisionRecord] = []
        self.ignored: list[str] = []
        self._seen: set[str] = set()

    def check(self, d: ApprovalDecision) -> str | None:
        """Why this decision cannot count, or None."""
        refusal = self.refusal(d)
        return refusal.detail if refusal else None

    def refusal(self, d: ApprovalDecision) -> Failure | None:
        """Why this decision cannot count, with its code, or None."""
        if not self.open or self.done:
            return Failure(ErrorCode.DECISION_REFUSED, "not awaiting a decision")
        if d.admin not in self.admins:
            return Failure(ErrorCode.FORBIDDEN, f"{d.admin!r} is not an admin of this tenant")
        if d.admin == self.requester:
            return Failure(ErrorCode.REQUESTER_CANNOT_APPROVE,
                           f"the requester cannot approve their own {self.what}")
        if any(x.admin == d.admin for x in self.decisions):
            return Failure(ErrorCode.DECISION_REFUSED, f"{d.admin} already decided")
        return None

    def record(self, d: ApprovalDecision, via: str) -> str:
        """Count a checked decision; returns the step name for the flow's history."""
        self.decisions.append(DecisionRecord(d.admin, d.approve, workflow.now().isoformat(),
                                             d.reason, via))
        return f"{'approved' if d.approve else 'rejected'}_by_{d.admin}"

    def from_signal(self, d: ApprovalDecision) -> str | None:
        """A signalled decision: deduplicated on decision_id, ignored (and listed) when it fails
        the checks; returns the step name when it counted."""
        if d.decision_id:
            if d.decision_id in self._seen:
                return None
            self._seen.add(d.decision_id)
        problem = self.check(d)
        if problem:
            self.ignored.append(f"{d.admin}: {problem}")
            return None
        return self.record(d, "signal")

    async def wait(self, window_seconds: int) -> Failure | None:
        """Open for decisions until they are done or the window closes: None when approved,
        else why not (expired, or rejected by whom)."""
        self._waiting(True)
        try:
            await workflow.wait_condition(lambda: self.done,
                                          timeout=timedelta(seconds=window_seconds))
        except TimeoutError:
            return Failure(ErrorCode.EXPIRED, "no decision within the approval window")
        finally:
            self._waiting(False)
        if self.rejection:
            return Failure(ErrorCode.REJECTED, self.rejection)
        return None

    def _waiting(self, is_open: bool) -> None:
        self.open = is_open
        if self.trail is not None:
            self.trail.waiting = self.console if is_open else None
            self.trail.publish()

    def console(self) -> str:
        """What the flow waits for, for the Temporal UI: who may still decide, and the exact
        JSON of the `decision` signal that approves (or rejects) it."""
        deciders = [a for a in self.admins if a != self.requester
                    and all(d.admin != a for d in self.decisions)]
        admin = deciders[0] if deciders else "<admin>"
        n = len(self.decisions) + 1
        approve = {"admin": admin, "approve": True, "decision_id": f"{admin}-{n}",
                   "reason": "checked"}
        reject = {**approve, "approve": False, "reason": "why it is rejected"}
        return (f"{self.required - self.approvals} more admin approval(s) of this {self.what} "
                f"({self.approvals} of {self.required} so far). May decide: "
                f"{', '.join(f'`{a}`' for a in deciders) or 'no admin left'} (never the "
                f"requester `{self.requester}`).\n\nSend the signal `decision` (Temporal UI: "
                f"Send a Signal) with\n\n`{json.dumps(approve)}`\n\nto approve, or "
                f"`{json.dumps(reject)}` to reject; the API's approve/reject and `walletflow "
                f"approve` do the same.")

    @property
    def approvals(self) -> int:
        return len({d.admin for d in self.decisions if d.approve})

    @property
    def rejection(self) -> str | None:
        for d in self.decisions:
            if not d.approve:
                return f"rejected by {d.admin}" + (f": {d.note}" if d.note else "")
        return None

    @property
    def done(self) -> bool:
        return self.rejection is not None or self.approvals >= self.required

    def answer(self, d: ApprovalDecision) -> str:
        if not d.approve:
            return "rejected"
        if self.approvals < self.required:
            return f"approved ({self.approvals} of {self.required})"
        return "approved"

    def summary(self) -> dict[str, str]:
        out = {"approvals": f"{self.approvals} of {self.required}",
               "decisions": "; ".join(
                   f"{d.admin} {'approved' if d.approve else 'rejected'} at {d.at} via {d.via}"
                   + (f" ({d.note})" if d.note else "") for d in self.decisions)}
        if self.ignored:
            out["ignored"] = "; ".join(self.ignored[-10:])
        return out


def ending(failure: Failure) -> str:
    """The flow's final state when the decisions did not approve: expired or rejected."""
    return "expired" if failure.code == ErrorCode.EXPIRED else "rejected"


class ApprovalMessages:
    """The Temporal handlers of a flow that waits for admins, shared by refunds and
    withdrawals: the `decide` update (API, CLI) and the `decision` signal (Temporal UI,
    `temporal workflow signal`). The flow sets ``_approvals`` and keeps its ``_trail``."""

    _approvals: Approvals | None
    _trail: FlowTrail

    @workflow.update(name="decide", description=console.DECIDE)
    async def decide(self, d: ApprovalDecision) -> str:
        """Approve or reject (API: the admin is the admin key's holder; CLI: the operator)."""
        assert self._approvals is not None
        self._trail.step(self._approvals.record(d, "update"))
        if self._approvals.done:  # answer once the flow has acted on it, so a read agrees
            await workflow.wait_condition(lambda: self._trail.state != "awaiting_approval")
        return self._approvals.answer(d)

    @decide.validator
    def _validate_decide(self, d: ApprovalDecision) -> None:
        refusal = (self._approvals.refusal(d) if self._approvals
                   else Failure(ErrorCode.DECISION_REFUSED, "not started"))
        if refusal:
            raise ApplicationError(refusal.detail, type=refusal.code)

    @workflow.signal(name="decision", description=console.DECISION)
    def decision(self, d: ApprovalDecision) -> None:
        """The same decision from the Temporal UI ("Send a Signal") or `temporal workflow
        signal`: {"admin": "alice", "approve": true, "decision_id": "…", "reason": "…"}.
        Deduplicated on decision_id; a decision that fails the checks is ignored and recorded."""
        if self._approvals and (step := self._approvals.from_signal(d)):
            self._trail.step(step)
