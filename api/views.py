"""Response models: what every operation answers (api/openapi.py attaches them to the OpenAPI
document; the contract test checks real answers against them). Every state a flow can report,
and its typed error, are enums in the schema."""

from __future__ import annotations

from typing import Annotated, Any, Literal

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


# -- errors -----------------------------------------------------------------------------------


class Problem(BaseModel):
    """Every error answer (application/problem+json, RFC 9457). ``code`` is for programs,
    ``detail`` for people; some answers add fields (``flow_id``, ``order_id``)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["https://walletflow.dev/problems/insufficient_funds"])
    title: str = Field(examples=["Insufficient funds"])
    status: int = Field(ge=400, le=599)
    detail: str = Field(examples=["available 20.00 EUR"])
    code: ErrorCode
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="validation_error: each invalid field (loc, msg)")


# -- shared pieces ----------------------------------------------------------------------------

Dec = Annotated[str, Field(description="decimal string in major units", examples=["25.00"])]


class AmountView(BaseModel):
    amount: Dec
    currency: str


class RazorpayCheckoutView(BaseModel):
    """What Razorpay's checkout.js is opened with; its handler's answer goes to verify_url."""

    key_id: str
    order_id: str
    amount: int = Field(description="minor units (paise), as checkout.js takes it")
    currency: str
    display_amount: Dec
    verify_url: str | None = None


class PaymentView(BaseModel):
    """What the payer needs to pay at the gateway."""

    gateway: str
    payment_id: str
    client_secret: str | None = None
    checkout_url: str | None = None
    razorpay: RazorpayCheckoutView | None = None


class PartsView(BaseModel):
    wallet: Dec
    card: Dec
    points: str


# -- flows started by a POST (201 done, 202 still running, 200 replay of a closed flow) ------


class TopUpView(BaseModel):
    flow_id: str
    kind: str
    state: str
    user_id: str
    amount: Dec
    currency: str
    credit: AmountView
    status_url: str
    package: str | None = None
    payment: PaymentView | None = None
    expires_at: str | None = None


class OrderStartView(BaseModel):
    flow_id: str
    order_id: str
    user_id: str
    state: str
    method: str
    amount: Dec
    currency: str
    parts: PartsView
    status_url: str
    payment: PaymentView | None = None
    expires_at: str | None = None


class OrderView(BaseModel):
    order_id: str
    flow_id: str
    user_id: str
    status: str
    error: str | None
    method: str
    amount: Dec
    currency: str
    parts: PartsView
    refunded: Dec
    refundable: Dec
    payment_id: str | None
    created_at: str
    updated_at: str
    flow: FlowStatusView | None = None


class RefundStartView(BaseModel):
    flow_id: str
    order_id: str
    amount: Dec
    currency: str
    destination: str
    needs_approval: bool
    status_url: str
    state: str


class WithdrawalStartView(BaseModel):
    flow_id: str
    user_id: str
    amount: Dec
    currency: str
    method: str
    approvals_required: int
    status_url: str
    state: str


class DonationView(BaseModel):
    flow_id: str
    state: str
    campaign_id: str | None = None
    amount: Dec | None = None
    currency: str | None = None
    points_earned: str | None = None
    campaign_closed: bool | None = None


class DecisionView(BaseModel):
    flow_id: str
    decision: str
    admin: str


# -- campaigns, users, wallets, flows ----------------------------------------------------------


class CampaignView(BaseModel):
    campaign_id: str
    name: str
    currency: str
    target: Dec
    capped: bool
    ends_at: str
    status: str
    closed_reason: str | None
    raised: Dec
    donors: int
    percent_of_target: str


class CampaignList(BaseModel):
    data: list[CampaignView]
    next_cursor: str | None


class DonationItem(BaseModel):
    flow_id: str
    campaign_id: str
    amount: Dec
    currency: str
    created_at: str


class DonationList(BaseModel):
    data: list[DonationItem]
    next_cursor: str | None


class WithdrawalItem(BaseModel):
    flow_id: str
    user_id: str
    status: str
    amount: Dec
    currency: str
    method: str
    requested_by: str
    created_at: str


class WithdrawalList(BaseModel):
    data: list[WithdrawalItem]
    next_cursor: str | None


class UserView(BaseModel):
    user_id: str
    email: str | None
    created_at: str


class NextTierView(BaseModel):
    name: str
    threshold: str = Field(description="lifetime points that reach it")
    points_needed: str


class UserDetailView(UserView):
    tier: str = Field(examples=["silver"])
    lifetime_points: str = Field(description="every point ever credited (posted), "
                                 "whatever was spent since")
    next_tier: NextTierView | None = Field(description="None at the top tier")


class BalanceView(BaseModel):
    account: str
    currency: str
    posted: Dec
    pending_in: Dec
    pending_out: Dec
    available: Dec


class CashbackView(BaseModel):
    currency: str
    pending: Dec
    available: Dec


class WalletView(BaseModel):
    user_id: str
    balances: list[BalanceView]
    cashback: list[CashbackView]


class TransactionView(BaseModel):
    transfer_id: int
    kind: str
    state: str
    direction: Literal["debit", "credit"]
    amount: Dec
    currency: str
    balance_after: str | None
    counterparty: str
    flow_id: str | None
    created_at: str


class TransactionPage(BaseModel):
    data: list[TransactionView]
    next_cursor: str | None


class SystemAccountView(BalanceView):
    owner: str


class SystemAccounts(BaseModel):
    data: list[SystemAccountView]


class FlowItem(BaseModel):
    flow_id: str
    kind: str
    user_id: str | None
    idempotency_key: str
    created_at: str


class FlowPage(BaseModel):
    data: list[FlowItem]
    next_cursor: str | None

