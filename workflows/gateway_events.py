"""Gateway webhook events about one object (a payment, a refund, a payout) as a flow receives
them by signal: at least once, possibly before the flow knows the object's id, possibly about
another object. One place deduplicates them, holds the early ones, matches them and keeps the
first decisive (not pending) one. And ``gateway_word``: wait for that event, or at the
deadline ask the gateway itself, so a missed webhook never loses an outcome. Sandbox-pure."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Generic, Protocol, TypeVar

from temporalio import workflow

from contracts.gateway import PAYMENT_PENDING


class _Outcome(Protocol):
    """A gateway's word on an object: a webhook event or the object as the gateway reports it."""

    @property
    def status(self) -> str: ...

    @property
    def failure_reason(self) -> str | None: ...


class _Event(_Outcome, Protocol):
    @property
    def event_id(self) -> str: ...


E = TypeVar("E", bound=_Event)


class GatewayEvents(Generic[E]):
    def __init__(self, object_id: Callable[[E], str], what: str,
                 check: Callable[[E], str | None] | None = None) -> None:
        """``object_id`` reads the event's object id; ``check`` returns why a matching event
        must still be ignored (e.g. another amount), or None."""
        self._object_id, self._what, self._check = object_id, what, check
        self._seen: set[str] = set()
        self._early: list[E] = []
        self.expected: str | None = None
        self.decisive: E | None = None
        self.ignored: list[str] = []

    def receive(self, event: E) -> bool:
        """A delivered event; True when it is the decisive one."""
        if event.event_id in self._seen:
            return False
        self._seen.add(event.event_id)
        if self.expected is None:
            self._early.append(event)
            return False
        return self._apply(event)

    def expect(self, object_id: str) -> bool:
        """The object exists now: the events held until now are matched against it."""
        self.expected = object_id
        early, self._early = self._early, []
        return any([self._apply(e) for e in early])

    def details(self) -> dict[str, str]:
        """For the flow's status: the last ignored events, if any."""
        return {"ignored_events": "; ".join(self.ignored[-10:])} if self.ignored else {}

    def _apply(self, event: E) -> bool:
        if self._object_id(event) != self.expected:
            self.ignored.append(f"{event.event_id}: other {self._what} {self._object_id(event)}")
            return False
        problem = self._check(event) if self._check else None
        if problem:
            self.ignored.append(f"{event.event_id}: {problem}")
            return False
        if self.decisive is None and event.status != PAYMENT_PENDING:
            self.decisive = event
            return True
        return False


@dataclass
class GatewayWord:
    status: str  # PAYMENT_SUCCEEDED / PAYMENT_FAILED / PAYMENT_CANCELED / PAYMENT_PENDING
    reason: str | None
    asked: bool  # no decisive webhook by the deadline: the gateway was asked


async def gateway_word(events: GatewayEvents[E], wait: timedelta,
                       ask: Callable[[], Awaitable[_Outcome]],
                       created: _Outcome | None = None) -> GatewayWord:
    """The decisive webhook when it comes within ``wait``; else what ``ask`` (a retrieve
    activity) answers at the deadline. ``created``: the object as the gateway created it; when
    it is already decided (not pending), that is the word and nothing is awaited."""
    if created is not None and created.status != PAYMENT_PENDING:
        return GatewayWord(created.status, created.failure_reason, asked=False)
    try:
        await workflow.wait_condition(lambda: events.decisive is not None, timeout=wait)
    except TimeoutError:
        answer = await ask()
        return GatewayWord(answer.status, answer.failure_reason, asked=True)
    decisive = events.decisive
    assert decisive is not None
    return GatewayWord(decisive.status, decisive.failure_reason, asked=False)
