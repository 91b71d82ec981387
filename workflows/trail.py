"""What a flow reports of itself: its state, why it failed (a typed ``Failure``) and the steps it
has taken, kept in one place and turned into the ``status`` query's ``FlowStatus``; every change
is shown to Temporal too (the ``WalletflowState`` search attribute, upserted, and the current
details the UI shows: what the flow waits for; ``workflows/console.py``). And ``failure_of``: an
activity's refusal as a ``Failure``. Sandbox-pure."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

from contracts.errors import ErrorCode, Failure
from contracts.flow import FlowStatus, FlowStep
from workflows import console


class FlowInput(Protocol):
    """What every flow's input names: the flow, its tenant and its user."""

    @property
    def flow_id(self) -> str: ...

    @property
    def tenant_id(self) -> str: ...

    @property
    def user_id(self) -> str: ...


class FlowTrail:
    def __init__(self, kind: str, state: str,
                 clock: Callable[[], datetime] | None = None) -> None:
        """``clock`` defaults to the workflow's deterministic clock (``workflow.now``); a
        trail given its own clock (a unit test, outside a workflow) tells Temporal nothing."""
        self.kind, self._state = kind, state
        self.failure: Failure | None = None
        self.steps: list[FlowStep] = []
        self.ended = False
        # what the flow waits for, in words, when it knows better than its state (an approval)
        self.waiting: Callable[[], str] | None = None
        self._clock = clock or workflow.now
        self._in_workflow = clock is None
        self._published: str | None = None  # the WalletflowState last upserted

    @property
    def state(self) -> str:
        return self._state

    @state.setter
    def state(self, value: str) -> None:
        self._state = value
        self.publish()

    def step(self, name: str) -> None:
        self.steps.append(FlowStep(name, self._clock().isoformat()))
        self.publish()

    def end(self, state: str, failure: Failure | None = None) -> None:
        """The final state (and why it is not a success), recorded as the last step."""
        self._state, self.failure, self.ended = state, failure, True
        self.step(state)

    def publish(self) -> None:
        """Tell Temporal: the state as the ``WalletflowState`` search attribute (upserted when
        it changed; behind a patch, so histories recorded before it replay) and the current
        details. Never from a query (read-only)."""
        if not self._in_workflow:
            return
        if self._state != self._published and workflow.patched(console.STATE_PATCH):
            workflow.upsert_search_attributes([console.STATE.value_set(self._state)])
            self._published = self._state
        workflow.set_current_details(console.current_details(
            self.kind, self._state, self.steps[-1].name if self.steps else None,
            self.waiting() if self.waiting else None, self.ended))

    @property
    def error(self) -> str | None:
        """The failure's detail, for people."""
        return self.failure.detail if self.failure else None

    @property
    def error_code(self) -> str | None:
        """The failure's ``ErrorCode`` value, for programs."""
        return str(self.failure.code) if self.failure else None

    def status(self, inp: FlowInput, amounts: dict[str, str],
               details: dict[str, str]) -> FlowStatus:
        return FlowStatus(
            flow_id=inp.flow_id, kind=self.kind, state=self.state, tenant_id=inp.tenant_id,
            user_id=inp.user_id, amounts=amounts, steps=list(self.steps),
            created_at=self.steps[0].at if self.steps else "",
            updated_at=self.steps[-1].at if self.steps else "",
            error=self.error, details=details, error_code=self.error_code)


def failure_of(exc: BaseException, default: ErrorCode, context: str | None = None) -> Failure:
    """An activity's refusal as a ``Failure``: its ApplicationError's type is the code and its
    message the detail. A regular activity's failure comes wrapped in an ActivityError, a local
    activity's as it was raised. A failure without a type (a timeout, say) gets ``default``.
    ``context`` prefixes the detail ("payment could not be created: …"); a message that starts
    with its own code ("over_limit: …") loses that prefix, so the code is not said twice."""
    cause = exc.cause if isinstance(exc, ActivityError) and exc.cause else exc
    code = cause.type if isinstance(cause, ApplicationError) and cause.type else default
    detail = cause.message if isinstance(cause, FailureError) else str(cause)
    detail = detail.removeprefix(f"{code}: ")
    return Failure(str(code), f"{context}: {detail}" if context else detail)
