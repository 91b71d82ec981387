"""Request bodies. Amounts are decimal strings (or exact JSON numbers) → minor units later."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from api.errors import ProblemError
from contracts.errors import ErrorCode
from contracts.money import Money, MoneyError, parse_amount
from contracts.settings import checkout_return_urls

USER_ID = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
ORDER_ID = r"^[A-Za-z0-9][A-Za-z0-9._:#-]{0,127}$"


def _decimal_text(value: object) -> object:
    """Keep amounts exact: Decimal (from JSON numbers) and int become plain decimal text."""
    if isinstance(value, bool):
        return value  # refused by the str type below
    if isinstance(value, Decimal):
        if not value.is_finite() or abs(value.adjusted()) > 30:  # never expand 1e999999999
            return "out-of-range"
        return format(value, "f")
    if isinstance(value, int):
        return str(value)
    return value


def money(amount: str, currency: str) -> Money:
    """A request's amount as Money; 422 ``invalid_amount`` when it cannot be."""
    try:
        return Money(parse_amount(amount, currency), currency)
    except MoneyError as e:
        raise ProblemError(ErrorCode.INVALID_AMOUNT, str(e)) from None


# A positive decimal in major units: the syntax contracts.money.parse_amount accepts. The
# currency's rules (its decimal places, the largest amount) answer 422 invalid_amount.
AMOUNT_PATTERN = r"^(?:[0-9]*[1-9][0-9]*(?:\.[0-9]+)?|0+\.[0-9]*[1-9][0-9]*)$"
Amount = Annotated[str, BeforeValidator(_decimal_text), Field(
    max_length=40, description="a positive decimal string in major units, e.g. \"89.50\", with "
    "at most the currency's decimal places (2 for EUR, 0 for JPY and PTS)",
    examples=["25.00"], json_schema_extra={"pattern": AMOUNT_PATTERN})]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", examples=["EUR"])]


# Where a hosted checkout (gateway "stripe_checkout") returns the payer: an absolute http(s) URL
# ("{flow_id}" is replaced by the flow's id; Stripe's "{CHECKOUT_SESSION_ID}" is kept).
ReturnUrl = Annotated[str, Field(
    max_length=2000, pattern=r"^https?://[A-Za-z0-9.\[\]:-]+(?:[/?#][^\s]*)?$",
    description="a hosted checkout's return URL (https; http outside production)",
    examples=["https://shop.example/paid?flow={flow_id}"])]


def return_urls(success_url: str | None, cancel_url: str | None, production: bool,
                tenant_settings: dict[str, Any] | None = None) -> tuple[str | None, str | None]:
    """The request's return URLs, else the tenant's (settings group ``payments``), else None
    (the gateway's default); 422 ``validation_error`` for http in production."""
    default_success, default_cancel = checkout_return_urls(tenant_settings or {})
    success_url, cancel_url = success_url or default_success, cancel_url or default_cancel
    for url in (success_url, cancel_url):
        if production and url is not None and not url.startswith("https://"):
            raise ProblemError(ErrorCode.VALIDATION_ERROR,
                               "checkout return URLs must be https in production")
    return success_url, cancel_url


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class UserCreate(Strict):
    user_id: str = Field(pattern=USER_ID, examples=["user-42"])
    email: str | None = Field(default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")


GATEWAY = r"^[a-z][a-z0-9_]{0,39}$"
GATEWAY_DOC = ("the payment gateway (one of the configured: stripe, razorpay, ...); default: the "
               "tenant's payments.gateway setting, else stripe")


class TopUpCreate(Strict):
    """An amount and its currency, or a points package."""

    model_config = ConfigDict(json_schema_extra={"oneOf": [
        {"title": "an amount", "required": ["amount", "currency"],
         "properties": {"amount": {"type": "string"}, "currency": {"type": "string"},
                        "package": {"type": "null"}}},
        {"title": "a points package", "required": ["package"],
         "properties": {"package": {"type": "string"}, "amount": {"type": "null"},
                        "currency": {"type": "null"}}}]})

    user_id: str = Field(pattern=USER_ID, examples=["user-42"])
    amount: Amount | None = None
    currency: Currency | None = None
    package: str | None = Field(default=None, max_length=40, description="a PTS points package",
                                examples=["premium"])
    gateway: str | None = Field(default=None, pattern=GATEWAY, description=GATEWAY_DOC,
                                examples=["stripe"])
    success_url: ReturnUrl | None = None
    cancel_url: ReturnUrl | None = None


class PurchaseReport(Strict):
    """A purchase as a store reports it (server-to-server or from the widget)."""

    order_id: str = Field(pattern=ORDER_ID, examples=["ORD_12345"])
    user_id: str = Field(pattern=USER_ID, examples=["user-42"])
    amount: Amount
    currency: Currency
    email: str | None = Field(default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    shop_name: str | None = Field(default=None, max_length=200, examples=["Amazon"])
    session_id: str | None = Field(default=None, max_length=128)
    occurred_at: datetime | None = Field(default=None, description="when the order was placed")


class RefundReport(Strict):
    amount: Amount
    currency: Currency


class InteractionReport(Strict):
    kind: Literal["view", "click", "chat"]
    user_id: str | None = Field(default=None, pattern=USER_ID)
    email: str | None = Field(default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    session_id: str | None = Field(default=None, max_length=128)
    occurred_at: datetime | None = None


StoreSecret = Annotated[str, Field(min_length=8, max_length=300, pattern=r"^\S+$", description=(
    "the secret the platform signs its webhooks with (Shopify: the app's API secret key; "
    "WooCommerce: the webhook's secret)"))]


class StoreCredentialCreate(Strict):
    """The widget's public key and secret are generated; a shop's public key is its domain or
    URL and its secret is the one the platform signs with (both required)."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"properties": {"platform": {"const": "widget"}, "secret": {"type": "null"}}},
        {"required": ["public_key", "secret"],
         "properties": {"platform": {"enum": ["shopify", "woocommerce"]},
                        "public_key": {"type": "string", "pattern": "\\S"},
                        "secret": {"type": "string"}}}]})

    platform: Literal["widget", "shopify", "woocommerce"]
    public_key: str | None = Field(default=None, max_length=300, description=(
        "Shopify shop domain or WooCommerce store URL; generated for the widget"))
    secret: StoreSecret | None = None


class StoreRotate(Strict):
    """Shopify and WooCommerce: the platform's new secret (required); the widget: none (a new
    one is generated)."""

    secret: StoreSecret | None = None


Rate = Annotated[str, Field(pattern=r"^(0(\.[0-9]{1,4})?|1(\.0{1,4})?)$", examples=["0.10"])]


class RewardsSettings(Strict):
    """A tenant's cashback and points rules (any field left out keeps its current value)."""

    cashback_rate: Rate | None = None
    return_window_seconds: int | None = Field(default=None, ge=0, le=366 * 86400)
    min_confidence: Rate | None = None
    points_per_unit: int | None = Field(default=None, ge=0, le=10_000)
    tier_thresholds: dict[Literal["silver", "gold", "platinum"], int] | None = None
    tier_bonus: dict[Literal["bronze", "silver", "gold", "platinum"], Rate] | None = None


class OrderCreate(Strict):
    """Pay an order: from the wallet, in points (currency PTS), by card, or split wallet + card."""

    order_id: str = Field(pattern=ORDER_ID, examples=["order-1001"])
    user_id: str = Field(pattern=USER_ID, examples=["user-42"])
    amount: Amount
    currency: Currency
    method: Literal["wallet", "points", "card", "split"]
    wallet_amount: Amount | None = Field(default=None, description="split: the wallet's part")
    gateway: str | None = Field(default=None, pattern=GATEWAY,
                                description=GATEWAY_DOC + " (card, split)", examples=["stripe"])
    success_url: ReturnUrl | None = None
    cancel_url: ReturnUrl | None = None


class RefundCreate(Strict):
    amount: Amount
    currency: Currency
    destination: Literal["wallet", "original"] = "original"
    reason: str | None = Field(default=None, max_length=500)


class DecisionBody(Strict):
    reason: str | None = Field(default=None, max_length=500)


class CampaignCreate(Strict):
    campaign_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
                             examples=["clean-water"])
    name: str = Field(min_length=1, max_length=200)
    currency: Currency
    target: Amount
    ends_at: datetime
    capped: bool = True


class DonationCreate(Strict):
    user_id: str = Field(pattern=USER_ID)
    amount: Amount
    currency: Currency


class WithdrawalCreate(Strict):
    user_id: str = Field(pattern=USER_ID)
    amount: Amount
    currency: Currency
    method: Literal["bank_transfer", "mobile_money", "paypal", "crypto"]
    destination: str | None = Field(
        default=None, min_length=1, max_length=200,
        description="bank_transfer: leave out (the user's payout account, onboarded with POST "
                    "/v1/users/{user_id}/payout-account), or that account's id (acct_…); bank "
                    "details are refused")


class WebhookEndpointCreate(Strict):
    url: str = Field(max_length=2000, pattern=r"^https?://", examples=["https://shop.example/hooks"])
    event_types: list[str] = Field(default_factory=list, max_length=50,
                                   description="empty: every event")


class WebhookEndpointUpdate(Strict):
    """What to change (a field left out keeps its value)."""

    url: str | None = Field(default=None, max_length=2000, pattern=r"^https?://")
    event_types: list[str] | None = Field(default=None, max_length=50,
                                          description="empty: every event")
