"""Maker-checker bookkeeping for flows that wait for admins (refunds above a threshold,
withdrawals): who may decide, who decided, what was ignored. Sandbox-pure; `ApprovalMessages`
holds the Temporal handlers the flows inherit, so the API's update, the CLI, the Temporal UI's
signal and `temporal workflow signal` all mean the same."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from contracts.approvals import ApprovalDecision, DecisionRecord
    from contracts.errors import ErrorCode, Failure
    from workflows import console
    from workflows.trail import FlowTrail

# A decision signalled before the flow waits for decisions (funds still being held) is kept and
# applied when it starts waiting; before this patch it was ignored.
EARLY_PATCH = "early-decisions"


class Approvals:
    def __init__(self, admins: list[str], requester: str, required: int, what: str,
                 trail: FlowTrail | None = None) -> None:
        """``trail``: shown, while the flow waits, who may decide and what to send."""
        self.admins, self.requester = admins, requester
        self.required, self.what = required, what
        self.trail = trail
        self.open = False  # the flow sets it while it waits for decisions
        self.finished = False  # the wait is over (approved, rejected or expired)
        self.decisions: list[DecisionRecord] = []
        self.ignored: list[str] = []
        self._seen: set[str] = set()
        self._early: list[tuple[ApprovalDecision, str]] = []  # (decision, via), until it waits

    @property
    def early(self) -> bool:
        """The flow does not wait for decisions yet (it is still holding or reserving)."""
        return not self.open and not self.finished

    def keep(self, d: ApprovalDecision, via: str) -> None:
        """An early decision, applied (checked, deduplicated) when the flow starts waiting."""
        self._early.append((d, via))

    def repeats(self, d: ApprovalDecision) -> bool:
        """The admin already decided the same way: a retried decision, answered again and
        counted once."""
        return any(x.admin == d.admin and x.approve == d.approve for x in self.decisions)

    def check(self, d: ApprovalDecision) -> str | None:
        """Why this decision cannot count, or None."""
        refusal = self.refusal(d)
        return refusal.detail if refusal else None

    def refusal(self, d: ApprovalDecision, early: bool = False) -> Failure | None:
        """Why this decision cannot count, with its code, or None; ``early``: a decision may
        also be kept while the flow does not wait yet."""
        if not (self.open or (early and self.early)) or self.done:
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
        self._apply_early()
        try:
            await workflow.wait_condition(lambda: self.done,
                                          timeout=timedelta(seconds=window_seconds))
        except TimeoutError:
            return Failure(ErrorCode.EXPIRED, "no decision within the approval window")
        finally:
            self.finished = True
            self._waiting(False)
        if self.rejection:
            return Failure(ErrorCode.REJECTED, self.rejection)
        return None

    def _apply_early(self) -> None:
        """The decisions that came before the flow waited, in their order, checked now."""
        early, self._early = self._early, []
        for d, via in early:
            if via == "signal":
                step = self.from_signal(d)
            else:
                step = None if self.refusal(d) else self.record(d, via)
            if step and self.trail is not None:
                self.trail.step(step)

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
        """Approve or reject (API: the admin is the admin key's holder; CLI: the operator).
        The same admin's same decision again is answered again, counted once; one sent while
        the flow still holds the funds is kept until it waits for decisions."""
        a = self._approvals
        assert a is not None
        if a.early and not a.repeats(d):
            a.keep(d, "update")
            await workflow.wait_condition(lambda: not a.early or self._trail.ended)
            if not a.repeats(d):
                refusal = a.refusal(d) or Failure(ErrorCode.DECISION_REFUSED,
                                                  "not awaiting a decision")
                raise ApplicationError(refusal.detail, type=refusal.code)
        elif not a.repeats(d):
            self._trail.step(a.record(d, "update"))
        if a.done:  # answer once the flow has acted on it, so a read agrees
            await workflow.wait_condition(lambda: self._trail.state != "awaiting_approval")
        return a.answer(d)

    @decide.validator
    def _validate_decide(self, d: ApprovalDecision) -> None:
        a = self._approvals
        if a is not None and a.repeats(d):
            return
        refusal = (a.refusal(d, early=self._may_keep()) if a
                   else Failure(ErrorCode.DECISION_REFUSED, "not started"))
        if refusal:
            raise ApplicationError(refusal.detail, type=refusal.code)

    def _may_keep(self) -> bool:
        """Whether a decision that comes early may wait for the flow: it will wait for
        decisions (a refund needs them only above the threshold) and has not ended."""
        inp = getattr(self, "_input", None)
        return bool(getattr(inp, "needs_approval", True)) and not self._trail.ended

    @workflow.signal(name="decision", description=console.DECISION)
    def decision(self, d: ApprovalDecision) -> None:
        """The same decision from the Temporal UI ("Send a Signal") or `temporal workflow
        signal`: {"admin": "alice", "approve": true, "decision_id": "…", "reason": "…"}.
        Deduplicated on decision_id; a decision that fails the checks is ignored and recorded.
        One that comes before the flow waits for decisions is kept and applied then."""
        a = self._approvals
        if (a is None or a.early) and self._may_keep() and workflow.patched(EARLY_PATCH):
            if a is None:  # with the start, before the flow set up its approvals
                asyncio.create_task(self._when_ready(d))
            else:
                a.keep(d, "signal")
            return
        if a and (step := a.from_signal(d)):
            self._trail.step(step)

    async def _when_ready(self, d: ApprovalDecision) -> None:
        await workflow.wait_condition(lambda: self._approvals is not None)
        self.decision(d)
