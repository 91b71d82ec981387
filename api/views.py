"""Response models of the status endpoints: every state a flow can report, and its typed
error, are enums in the OpenAPI schema."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from contracts.errors import ErrorCode
from contracts.flow import FlowState


class FlowStepView(BaseModel):
    name: str
    at: str = Field(description="ISO 8601")


class FlowStatusView(BaseModel):
    """A flow's status (its workflow's `status` query). A flow past the workflow history's
    retention is `archived`, with only what the database remembers."""

    model_config = ConfigDict(extra="allow")

    flow_id: str
    kind: str
    state: FlowState
    tenant_id: str | None = None
    user_id: str | None = None
    amounts: dict[str, Any] = Field(default_factory=dict)
    steps: list[FlowStepView] = Field(default_factory=list)
    created_at: str | None = None
    updated_at: str | None = None
    error: str | None = Field(default=None, description="why it failed, for people")
    error_code: ErrorCode | None = Field(default=None, description="why it failed, for programs")
    details: dict[str, Any] = Field(default_factory=dict)
