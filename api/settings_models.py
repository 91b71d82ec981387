"""The settings routes' bodies and answers. The shapes here document the contract; the rules a
change must keep (and the CLI keeps too) are ``contracts/settings.py``'s. A field left out keeps
its value; a field set to null goes back to its default (no limit, no threshold, off)."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, BeforeValidator, Field

from api.schemas import Amount, ReturnUrl, Strict
from contracts.money import CURRENCY_EXPONENTS
from contracts.settings import MAX_APPROVAL_WINDOW, MIN_APPROVAL_WINDOW

if TYPE_CHECKING:
    KnownCurrency = str
else:  # one of the currency table's codes (an enum in the document)
    KnownCurrency = Literal[tuple(CURRENCY_EXPONENTS)]
PerCurrency = dict[KnownCurrency, Amount]


def _whole(value: object) -> int:
    """A JSON integer (3600, or 3600.0: no fraction); not a string, not a boolean."""
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError("must be an integer")


WindowSeconds = Annotated[int, Field(ge=MIN_APPROVAL_WINDOW, le=MAX_APPROVAL_WINDOW),
                          BeforeValidator(_whole)]


class RefundSettings(Strict):
    """Refunds of one order whose total (reserved so far, those awaiting approval included,
    plus the new one) reaches the currency's threshold wait for an admin."""

    approval_threshold: PerCurrency | None = Field(
        default=None, description="currency → amount, e.g. {\"EUR\": \"100.00\"}")


class WithdrawalSettings(Strict):
    per_request_max: PerCurrency | None = Field(default=None,
                                                description="the most one withdrawal may take")
    daily_max: PerCurrency | None = Field(default=None,
                                          description="the most a user may withdraw per day")
    two_admin_threshold: PerCurrency | None = Field(
        default=None, description="from this amount on, two admins approve")
    approval_window_seconds: WindowSeconds | None = Field(
        default=None,
        description="how long a withdrawal waits for its admins (default 72 h)")


class EventSettings(Strict):
    development: bool | None = Field(
        default=None, strict=True,
        description="outbound webhooks may go to local receivers over plain http "
        "(refused in production)")


class PaymentSettings(Strict):
    """How the tenant's payments go (extensible: one field per payment option)."""

    gateway: str | None = Field(
        default=None, pattern=r"^[a-z][a-z0-9_]{0,39}$",
        description="the gateway a top-up or order uses when its request names none: one of "
        "the configured gateways (\"stripe\", \"razorpay\", ...); null: \"stripe\"")
    checkout_success_url: ReturnUrl | None = None
    checkout_cancel_url: ReturnUrl | None = None


class PaymentSettingsView(BaseModel):
    gateway: str
    checkout_success_url: str | None = None
    checkout_cancel_url: str | None = None


class RefundSettingsView(BaseModel):
    approval_threshold: dict[str, str]


class WithdrawalSettingsView(BaseModel):
    per_request_max: dict[str, str]
    daily_max: dict[str, str]
    two_admin_threshold: dict[str, str]
    approval_window_seconds: int


class EventSettingsView(BaseModel):
    development: bool


class SettingsChange(BaseModel):
    id: str
    group: str
    actor: str = Field(description="the admin key's holder, or cli:<user>")
    key_id: str | None = Field(description="the API key used (null from the CLI)")
    old: dict[str, object]
    new: dict[str, object]
    changed_at: str


class SettingsAuditPage(BaseModel):
    data: list[SettingsChange]
    next_cursor: str | None
