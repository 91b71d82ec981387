"""Fault injection: armed faults (an API operation answering 500 or 400, or not answering in
time; a webhook dropped or duplicated), used up after ``count`` matching calls or events."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

OPERATIONS = ("orders.create", "orders.fetch", "orders.list", "orders.payments",
              "payments.fetch", "payments.refund", "payments.refunds", "refunds.fetch",
              "refunds.list")
API_MODES = ("error_500", "error_400", "timeout")
WEBHOOK_MODES = ("drop", "duplicate")


@dataclass
class Fault:
    operation: str
    mode: str
    count: int = 1
    delay_seconds: float = 5.0
    copies: int = 2
    match: dict[str, str] = field(default_factory=dict)

    def check(self) -> None:
        modes = WEBHOOK_MODES if self.operation == "webhook" else API_MODES
        if self.operation != "webhook" and self.operation not in OPERATIONS:
            raise ValueError(f"unknown operation {self.operation!r}: one of {OPERATIONS} "
                             "or 'webhook'")
        if self.mode not in modes:
            raise ValueError(f"mode {self.mode!r} is not one of {modes} for {self.operation}")
        if self.count < 1 or self.copies < 1 or not 0 <= self.delay_seconds <= 120:
            raise ValueError("count and copies must be ≥ 1, delay_seconds within 0..120")


class Faults:
    def __init__(self) -> None:
        self.armed: list[Fault] = []

    def arm(self, spec: dict[str, Any]) -> Fault:
        fault = Fault(**spec)
        fault.check()
        self.armed.append(fault)
        return fault

    def take(self, operation: str, flow_id: str | None) -> Fault | None:
        """The first armed fault for this operation (and flow), used once."""
        for fault in self.armed:
            wanted = fault.match.get("flow_id")
            if fault.operation == operation and (wanted is None or wanted == flow_id):
                fault.count -= 1
                if fault.count <= 0:
                    self.armed.remove(fault)
                return fault
        return None

    def listing(self) -> list[dict[str, Any]]:
        return [asdict(f) for f in self.armed]

    def clear(self) -> None:
        self.armed.clear()
