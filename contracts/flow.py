"""What every flow reports of itself: its status and the steps it has taken."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FlowStep:
    name: str
    at: str  # ISO 8601


@dataclass
class FlowStatus:
    flow_id: str
    kind: str
    state: str
    tenant_id: str
    user_id: str
    amounts: dict[str, str]
    steps: list[FlowStep]
    created_at: str
    updated_at: str
    error: str | None = None  # the failure's detail, for people
    details: dict[str, str] = field(default_factory=dict)
    error_code: str | None = None  # an ErrorCode value (contracts.errors), for programs
