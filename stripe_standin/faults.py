"""Fault injection: what a test may ask for through ``/_standin/faults`` (5xx or 400 answers,
timeouts and late answers on API operations; dropped or duplicated webhooks) and the queue of
armed faults that calls and events consume."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from stripe_standin.calls import WEBHOOK
from stripe_standin.wire import JSON, new_id

API_MODES = ("error_500", "error_400", "timeout", "delay")
WEBHOOK_MODES = ("drop", "duplicate")


class FaultMatch(BaseModel):
    flow_id: str | None = None


class FaultSpec(BaseModel):
    operation: Literal["payment_intents.create", "payment_intents.retrieve",
                       "payment_intents.cancel", "refunds.create", "refunds.retrieve",
                       "payouts.create", "payouts.retrieve", "payment_intents.list",
                       "refunds.list", "payouts.list", "webhook",
                       "accounts.create", "accounts.retrieve", "accounts.list",
                       "account_links.create", "transfers.create", "transfers.retrieve",
                       "balance.retrieve", "transfers.list", "transfers.reversals.create",
                       "checkout.sessions.create",
                       "checkout.sessions.retrieve", "checkout.sessions.expire",
                       "checkout.sessions.list"]
    mode: Literal["error_500", "error_400", "timeout", "delay", "drop", "duplicate"]
    count: int = Field(1, ge=1)
    delay_seconds: float = Field(5.0, ge=0, le=600)
    copies: int = Field(2, ge=1, le=20)
    match: FaultMatch | None = None

    @model_validator(mode="after")
    def _mode_fits_operation(self) -> FaultSpec:
        allowed = WEBHOOK_MODES if self.operation == WEBHOOK else API_MODES
        if self.mode not in allowed:
            raise ValueError(f"mode {self.mode!r} does not apply to {self.operation!r}; "
                             f"use one of {', '.join(allowed)}")
        return self


@dataclass
class Fault:
    id: str
    spec: FaultSpec
    remaining: int

    def to_json(self) -> JSON:
        return {"id": self.id, **self.spec.model_dump(), "remaining": self.remaining}


class Faults:
    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, spec: FaultSpec) -> Fault:
        fault = Fault(new_id("fault", 12), spec, spec.count)
        self._faults.append(fault)
        return fault

    def clear(self) -> None:
        self._faults.clear()

    def snapshot(self) -> list[JSON]:
        return [f.to_json() for f in self._faults]

    def take(self, operation: str, flow_id: str | None) -> FaultSpec | None:
        """Consume one use of the oldest fault matching this call or event."""
        for fault in self._faults:
            wanted = fault.spec.match.flow_id if fault.spec.match else None
            if fault.spec.operation == operation and (wanted is None or wanted == flow_id):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault.spec
        return None
