"""Typed outcomes: every refusal or failure carries one ``ErrorCode`` and a human detail.

The code travels end to end: an activity raises ``ApplicationError(detail, type=code)``, the
workflow keeps it as a ``Failure`` in its status and result, and the API maps it to an HTTP
status and title through one table (``api/errors.py``). Details quote amounts as decimals with
their currency ("110.00 EUR"), never minor units.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ErrorCode(StrEnum):
    # -- the request itself ---------------------------------------------------------------------
    BAD_REQUEST = "bad_request"
    VALIDATION_ERROR = "validation_error"
    MALFORMED_JSON = "malformed_json"
    MALFORMED_PAYLOAD = "malformed_payload"
    INVALID_AMOUNT = "invalid_amount"
    INVALID_CURRENCY = "invalid_currency"
    CURRENCY_MISMATCH = "currency_mismatch"
    INVALID_PERIOD = "invalid_period"
    INVALID_CURSOR = "invalid_cursor"
    UNKNOWN_PACKAGE = "unknown_package"
    UNKNOWN_GATEWAY = "unknown_gateway"  # not a gateway this service is configured with
    URL_NOT_ALLOWED = "url_not_allowed"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    IDEMPOTENCY_KEY_MISSING = "idempotency_key_missing"
    IDEMPOTENCY_KEY_INVALID = "idempotency_key_invalid"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    IDEMPOTENCY_IN_PROGRESS = "idempotency_in_progress"
    FLOW_EXISTS = "flow_exists"
    REPLAYED = "replayed"
    # -- who is asking --------------------------------------------------------------------------
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    INSUFFICIENT_SCOPE = "insufficient_scope"
    SIGNATURE_MISSING = "signature_missing"
    SIGNATURE_INVALID = "signature_invalid"
    RATE_LIMITED = "rate_limited"  # the API key sent more than its rate limit allows
    # -- what it names --------------------------------------------------------------------------
    NOT_FOUND = "not_found"
    USER_NOT_FOUND = "user_not_found"
    ORDER_NOT_FOUND = "order_not_found"
    PURCHASE_NOT_FOUND = "purchase_not_found"
    FLOW_NOT_FOUND = "flow_not_found"
    CAMPAIGN_NOT_FOUND = "campaign_not_found"
    CAMPAIGN_EXISTS = "campaign_exists"
    ENDPOINT_NOT_FOUND = "endpoint_not_found"
    DELIVERY_NOT_FOUND = "delivery_not_found"
    REFUND_NOT_FOUND = "refund_not_found"
    WITHDRAWAL_NOT_FOUND = "withdrawal_not_found"
    STORE_NOT_FOUND = "store_not_found"
    STORE_EXISTS = "store_exists"
    # -- business refusals (a flow's typed outcome) ----------------------------------------------
    INSUFFICIENT_FUNDS = "insufficient_funds"
    REFUND_EXCEEDS_PAID = "refund_exceeds_paid"
    NOT_REFUNDABLE = "not_refundable"
    OVER_LIMIT = "over_limit"
    CAMPAIGN_CLOSED = "campaign_closed"
    EXCEEDS_TARGET = "exceeds_target"
    DECISION_REFUSED = "decision_refused"
    REQUESTER_CANNOT_APPROVE = "requester_cannot_approve"
    REJECTED = "rejected"
    EXPIRED = "expired"
    GATEWAY_REFUSED = "gateway_refused"
    PAYMENT_FAILED = "payment_failed"
    PAYOUT_FAILED = "payout_failed"
    REFUND_FAILED = "refund_failed"
    LEDGER_CONFLICT = "ledger_conflict"
    ACCOUNT_MISSING = "account_missing"
    # -- outbound webhook deliveries (never an API answer) ------------------------------------
    DELIVERY_FAILED = "delivery_failed"
    ENDPOINT_GONE = "endpoint_gone"
    ENDPOINT_DISABLED = "endpoint_disabled"
    # -- dependencies -----------------------------------------------------------------------------
    TEMPORAL_UNAVAILABLE = "temporal_unavailable"
    DB_UNAVAILABLE = "db_unavailable"
    GATEWAY_UNAVAILABLE = "gateway_unavailable"
    LEDGER_RETRY = "ledger_retry"  # a transient ledger race: retried
    INTERNAL_ERROR = "internal_error"


@dataclass
class Failure:
    """Why a flow (or a step of it) did not succeed: a code from ``ErrorCode`` and a detail."""

    code: str  # an ErrorCode value (kept as str so any recorded history still decodes)
    detail: str

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"
