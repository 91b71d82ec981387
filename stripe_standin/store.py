"""State of the Stripe stand-in: payment intents, refunds, payouts, idempotency records and events,
their Stripe semantics (validation, status transitions, error shapes) and optional JSON
persistence.

Everything lives on a `Store` instance owned by one app; nothing here is module-level state."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import secrets
import string
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

API_VERSION = "2024-06-20"
MIN_AMOUNT = 1
MAX_AMOUNT = 99_999_999
IDEMPOTENCY_TTL_SECONDS = 24 * 3600
STATE_VERSION = 1

_ALNUM = string.ascii_letters + string.digits
_CURRENCY_RE = re.compile(r"^[a-zA-Z]{3}$")
_INT_RE = re.compile(r"^-?\d+$")
_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_CANCELABLE = ("requires_payment_method", "requires_capture", "requires_confirmation",
               "requires_action", "processing")
_CANCELLATION_REASONS = ("duplicate", "fraudulent", "requested_by_customer", "abandoned")
_REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
# Refunds in these states no longer hold any of the charge's amount.
_REFUND_RELEASED = ("failed", "canceled")
REFUND_FAILURE_REASON = "expired_or_canceled_card"
PAYOUT_METHODS = ("standard", "instant")
PAYOUT_ARRIVAL_SECONDS = 2 * 24 * 3600
PAYOUT_FAILURE_CODE = "account_closed"
PAYOUT_FAILURE_MESSAGE = "The bank account has been closed"
STATEMENT_DESCRIPTOR_MAX = 22
ZERO_DECIMAL_CURRENCIES = frozenset({"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga",
                                     "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"})
# Keys whose bracketed sub-keys are names, never list indices.
_MAP_PARAMS = frozenset({"metadata"})

JSON = dict[str, Any]


def random_alnum(length: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


def new_id(prefix: str, length: int = 24) -> str:
    """A Stripe-looking id: ``<prefix>_<length random alphanumerics>``."""
    return f"{prefix}_{random_alnum(length)}"


def now() -> int:
    return int(time.time())


def format_amount(amount: int, currency: str) -> str:
    """Minor units as a human amount, integer arithmetic only: 1999 eur → ``19.99 EUR``."""
    if currency.lower() in ZERO_DECIMAL_CURRENCIES:
        return f"{amount} {currency.upper()}"
    return f"{amount // 100}.{amount % 100:02d} {currency.upper()}"


class StandinError(Exception):
    """An error answered in Stripe's shape: ``{"error": {"type", "code", "message", "param"}}``.

    ``replayable`` says whether the result belongs under an idempotency key: Stripe saves results
    once the endpoint started executing, not parameter-validation failures."""

    def __init__(self, status: int, type_: str, message: str, *, code: str | None = None,
                 param: str | None = None, extra: JSON | None = None,
                 replayable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.code = code
        self.param = param
        self.extra = extra or {}
        self.replayable = replayable

    def body(self) -> JSON:
        error: JSON = {"type": self.type, "message": self.message}
        if self.code is not None:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param is not None:
            error["param"] = self.param
        error.update(self.extra)
        return {"error": error}

    @classmethod
    def invalid(cls, message: str, *, code: str | None = None,
                param: str | None = None) -> StandinError:
        return cls(400, "invalid_request_error", message, code=code, param=param)

    @classmethod
    def missing(cls, object_name: str, object_id: str, param: str = "intent") -> StandinError:
        return cls(404, "invalid_request_error", f"No such {object_name}: '{object_id}'",
                   code="resource_missing", param=param)


# --- request parameters ------------------------------------------------------------------------

def parse_params(pairs: Iterable[tuple[str, str]]) -> JSON:
    """Stripe's form encoding to nested data: ``metadata[flow_id]=x`` → ``{"metadata": {...}}``,
    ``payment_method_types[0]=card`` (or ``[]``) → a list. Values stay strings."""
    root: JSON = {}
    for raw_key, value in pairs:
        match = _KEY_RE.match(raw_key)
        if not match:
            raise StandinError.invalid(f"Invalid parameter name: {raw_key}",
                                       code="parameter_unknown", param=raw_key)
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node = root
        for depth, part in enumerate(parts):
            key = part if part else str(len(node))  # "name[]" appends
            if depth == len(parts) - 1:
                if isinstance(node.get(key), dict):
                    raise StandinError.invalid(f"Invalid value for {raw_key}",
                                               code="parameter_invalid", param=raw_key)
                node[key] = value
            else:
                child = node.setdefault(key, {})
                if not isinstance(child, dict):
                    raise StandinError.invalid(f"Invalid value for {raw_key}",
                                               code="parameter_invalid", param=raw_key)
                node = child
    return {key: value if key in _MAP_PARAMS else _listify(value) for key, value in root.items()}


def _listify(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    items = {key: _listify(sub) for key, sub in value.items()}
    if items and all(key.isdigit() for key in items):
        return [items[key] for key in sorted(items, key=int)]
    return items


def fingerprint(method: str, path: str, params: JSON) -> str:
    return json.dumps([method.upper(), path, params], sort_keys=True, separators=(",", ":"))


def _int_param(params: JSON, name: str) -> int:
    if name not in params:
        raise StandinError.invalid(f"Missing required param: {name}.", code="parameter_missing",
                                   param=name)
    raw = params[name]
    if not isinstance(raw, str) or not _INT_RE.match(raw.strip()):
        raise StandinError.invalid(f"Invalid integer: {raw}", code="parameter_invalid_integer",
                                   param=name)
    return int(raw)


def _amount_param(params: JSON) -> int:
    """A required ``amount`` within Stripe's bounds (amount_too_small / amount_too_large)."""
    amount = _int_param(params, "amount")
    if amount < MIN_AMOUNT:
        raise StandinError.invalid(
            f"Amount must be at least {MIN_AMOUNT} (in the smallest currency unit).",
            code="amount_too_small", param="amount")
    if amount > MAX_AMOUNT:
        raise StandinError.invalid(
            f"Amount must be no more than {MAX_AMOUNT} (in the smallest currency unit).",
            code="amount_too_large", param="amount")
    return amount


def _currency_param(params: JSON) -> str:
    """A required three-letter ``currency``, lower-cased."""
    currency = params.get("currency")
    if currency is None:
        raise StandinError.invalid("Missing required param: currency.",
                                   code="parameter_missing", param="currency")
    if not isinstance(currency, str) or not _CURRENCY_RE.match(currency):
        raise StandinError.invalid(f"Invalid currency: {currency}.",
                                   code="parameter_invalid", param="currency")
    return currency.lower()


def _str_param(params: JSON, name: str, max_length: int | None = None) -> str | None:
    """An optional string parameter (``""`` counts as unset)."""
    raw = params.get(name)
    if raw in (None, ""):
        return None
    if not isinstance(raw, str):
        raise StandinError.invalid("Invalid string", code="parameter_invalid", param=name)
    if max_length is not None and len(raw) > max_length:
        raise StandinError.invalid(f"Invalid {name}: must be at most {max_length} characters",
                                   code="parameter_invalid", param=name)
    return raw


def _bool_param(raw: Any, name: str) -> bool:
    if raw in ("true", "True", "1"):
        return True
    if raw in ("false", "False", "0"):
        return False
    raise StandinError.invalid(f"Invalid boolean: {raw}", code="parameter_invalid", param=name)


def _metadata_param(raw: Any) -> dict[str, str]:
    if raw in (None, ""):
        return {}
    if not isinstance(raw, dict):
        raise StandinError.invalid("Invalid hash", code="parameter_invalid", param="metadata")
    metadata = {key: value for key, value in raw.items() if value != ""}
    if len(metadata) > 50:
        raise StandinError.invalid("You can have at most 50 metadata keys.",
                                   code="parameter_invalid", param="metadata")
    for key, value in metadata.items():
        if not isinstance(value, str) or len(key) > 40 or len(value) > 500:
            raise StandinError.invalid(f"Invalid metadata value for key {key!r}",
                                       code="parameter_invalid", param=f"metadata[{key}]")
    return metadata


# --- persistence records -------------------------------------------------------------------------

@dataclass
class IdempotencyRecord:
    method: str
    path: str
    fingerprint: str
    status: int
    body: JSON
    request_id: str
    created: int


@dataclass
class StoredEvent:
    event: JSON
    payload: str  # the exact JSON text that is signed and delivered
    # The flow when the object's own metadata has none (a refund made without metadata).
    flow_hint: str | None = None

    @property
    def id(self) -> str:
        return str(self.event["id"])

    @property
    def payment_intent_id(self) -> str | None:
        """The payment intent the event is about (refunds and charges name theirs)."""
        obj = self.event.get("data", {}).get("object", {})
        if obj.get("object") == "payment_intent":
            return obj.get("id")
        return obj.get("payment_intent")

    @property
    def flow_id(self) -> str | None:
        obj = self.event.get("data", {}).get("object", {})
        return (obj.get("metadata") or {}).get("flow_id") or self.flow_hint

    def to_json(self) -> JSON:
        item: JSON = {"event": self.event, "payload": self.payload}
        if self.flow_hint is not None:
            item["flow_hint"] = self.flow_hint
        return item


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Store:
    """Payment intents, refunds, payouts, idempotency records and events. Callers serialize
    mutations (the app holds one asyncio.Lock around check-execute-record); `save` persists when a
    file is set."""

    def __init__(self, state_file: str | os.PathLike[str] | None = None) -> None:
        self.payment_intents: dict[str, JSON] = {}
        self.refunds: dict[str, JSON] = {}
        self.payouts: dict[str, JSON] = {}
        self.idempotency: dict[str, IdempotencyRecord] = {}
        self.events: dict[str, StoredEvent] = {}
        self.state_file = Path(state_file) if state_file else None
        self._save_lock = asyncio.Lock()
        if self.state_file is not None and self.state_file.exists():
            self._load(self.state_file)

    # persistence

    def _load(self, path: Path) -> None:
        text = path.read_text(encoding="utf-8")
        if not text.strip():
            return
        try:
            state = json.loads(text)
            if state.get("version") != STATE_VERSION:
                raise ValueError(f"unsupported state version {state.get('version')!r}")
            self.payment_intents = dict(state["payment_intents"])
            self.refunds = dict(state.get("refunds", {}))  # absent in files from before refunds
            self.payouts = dict(state.get("payouts", {}))  # absent in files from before payouts
            horizon = now() - IDEMPOTENCY_TTL_SECONDS
            self.idempotency = {key: IdempotencyRecord(**record)
                                for key, record in state["idempotency"].items()
                                if record["created"] >= horizon}
            self.events = {item["event"]["id"]: StoredEvent(item["event"], item["payload"],
                                                            item.get("flow_hint"))
                           for item in state["events"]}
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path} is not a readable stand-in state file: {e}") from e

    def snapshot(self) -> JSON:
        return {
            "version": STATE_VERSION,
            "payment_intents": self.payment_intents,
            "refunds": self.refunds,
            "payouts": self.payouts,
            "idempotency": {key: asdict(record) for key, record in self.idempotency.items()},
            "events": [e.to_json() for e in self.events.values()],
        }

    async def save(self) -> None:
        if self.state_file is None:
            return
        async with self._save_lock:  # snapshot inside the lock: the last write is the newest
            text = json.dumps(self.snapshot(), separators=(",", ":"))
            await asyncio.to_thread(_atomic_write, self.state_file, text)

    # idempotency

    def idempotent_result(self, key: str, method: str, path: str,
                          params: JSON) -> IdempotencyRecord | None:
        """The stored result for ``key``; an idempotency_error when it was used differently."""
        record = self.idempotency.get(key)
        if record is None:
            return None
        if record.created < now() - IDEMPOTENCY_TTL_SECONDS:
            del self.idempotency[key]
            return None
        if (record.method, record.path) != (method, path) or (
                record.fingerprint != fingerprint(method, path, params)):
            raise StandinError(
                400, "idempotency_error",
                "Keys for idempotent requests can only be used with the same parameters they were "
                f"first used with. Try using a key other than '{key}' if you meant to execute a "
                "different request.")
        return record

    def remember(self, key: str, method: str, path: str, params: JSON, status: int, body: JSON,
                 request_id: str) -> None:
        self.idempotency[key] = IdempotencyRecord(
            method, path, fingerprint(method, path, params), status, copy.deepcopy(body),
            request_id, now())

    # payment intents

    def get_payment_intent(self, pi_id: str) -> JSON:
        pi = self.payment_intents.get(pi_id)
        if pi is None:
            raise StandinError.missing("payment_intent", pi_id)
        return pi

    def create_payment_intent(self, params: JSON) -> JSON:
        amount = _amount_param(params)
        currency = _currency_param(params)
        metadata = _metadata_param(params.get("metadata"))
        description = params.get("description")
        if description is not None and not isinstance(description, str):
            raise StandinError.invalid("Invalid string", code="parameter_invalid",
                                       param="description")
        automatic = None
        raw_automatic = params.get("automatic_payment_methods")
        if raw_automatic is not None:
            if not isinstance(raw_automatic, dict) or "enabled" not in raw_automatic:
                raise StandinError.invalid(
                    "Missing required param: automatic_payment_methods[enabled].",
                    code="parameter_missing", param="automatic_payment_methods[enabled]")
            automatic = {"allow_redirects": "always",
                         "enabled": _bool_param(raw_automatic["enabled"],
                                                "automatic_payment_methods[enabled]")}
        types = params.get("payment_method_types", ["card"])
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            raise StandinError.invalid("Invalid array", code="parameter_invalid",
                                       param="payment_method_types")
        pi_id = new_id("pi")
        pi: JSON = {
            "id": pi_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "automatic_payment_methods": automatic,
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": "automatic",
            "client_secret": f"{pi_id}_secret_{random_alnum(25)}",
            "confirmation_method": "automatic",
            "created": now(),
            "currency": currency,
            "customer": None,
            "description": description,
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": metadata,
            "next_action": None,
            "payment_method": None,
            "payment_method_types": list(types),
            "receipt_email": None,
            "status": "requires_payment_method",
        }
        self.payment_intents[pi_id] = pi
        return pi

    def cancel_payment_intent(self, pi_id: str, params: JSON) -> JSON:
        pi = self.get_payment_intent(pi_id)
        reason = params.get("cancellation_reason")
        if reason is not None and reason not in _CANCELLATION_REASONS:
            raise StandinError.invalid(
                f"Invalid cancellation_reason: must be one of {', '.join(_CANCELLATION_REASONS)}",
                code="parameter_invalid", param="cancellation_reason")
        if pi["status"] not in _CANCELABLE:
            raise StandinError(
                400, "invalid_request_error",
                f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}. "
                "Only a PaymentIntent with one of the following statuses may be canceled: "
                f"{', '.join(_CANCELABLE)}.",
                code="payment_intent_unexpected_state",
                extra={"payment_intent": copy.deepcopy(pi)}, replayable=True)
        pi.update(status="canceled", canceled_at=now(), cancellation_reason=reason)
        return pi

    def _require_open(self, pi: JSON, action: str) -> None:
        if pi["status"] in ("succeeded", "canceled"):
            raise StandinError(409, "invalid_request_error",
                               f"Cannot {action} payment intent {pi['id']}: it is {pi['status']}.",
                               code="payment_intent_unexpected_state")

    def succeed_payment_intent(self, pi_id: str) -> JSON:
        pi = self.get_payment_intent(pi_id)
        self._require_open(pi, "succeed")
        pi.update(status="succeeded", amount_received=pi["amount"], last_payment_error=None,
                  latest_charge=new_id("ch"), payment_method=new_id("pm"))
        return pi

    def fail_payment_intent(self, pi_id: str) -> JSON:
        pi = self.get_payment_intent(pi_id)
        self._require_open(pi, "fail")
        pi.update(status="requires_payment_method", latest_charge=new_id("ch"), payment_method=None,
                  last_payment_error={"code": "card_declined", "decline_code": "generic_decline",
                                      "message": "Your card was declined.", "type": "card_error"})
        return pi

    # refunds

    def get_refund(self, re_id: str) -> JSON:
        refund = self.refunds.get(re_id)
        if refund is None:
            raise StandinError.missing("refund", re_id, param="id")
        return refund

    def refunds_of(self, pi_id: str) -> list[JSON]:
        return [r for r in self.refunds.values() if r["payment_intent"] == pi_id]

    def refund_flow_id(self, refund: JSON) -> str | None:
        """The refund's own ``metadata.flow_id``, else its payment intent's."""
        flow_id = refund["metadata"].get("flow_id")
        if flow_id is None:
            pi = self.payment_intents.get(refund["payment_intent"]) or {}
            flow_id = pi.get("metadata", {}).get("flow_id")
        return flow_id

    def refundable(self, pi: JSON) -> int:
        """What is left to refund: received minus refunds that are pending or succeeded."""
        held = sum(r["amount"] for r in self.refunds_of(pi["id"])
                   if r["status"] not in _REFUND_RELEASED)
        return pi["amount_received"] - held

    def create_refund(self, params: JSON) -> JSON:
        pi_id = params.get("payment_intent")
        if pi_id in (None, ""):
            raise StandinError.invalid("Missing required param: payment_intent.",
                                       code="parameter_missing", param="payment_intent")
        if not isinstance(pi_id, str):
            raise StandinError.invalid("Invalid string", code="parameter_invalid",
                                       param="payment_intent")
        amount: int | None = None
        if "amount" in params:
            amount = _int_param(params, "amount")
            if amount < MIN_AMOUNT:
                raise StandinError.invalid("Invalid positive integer",
                                           code="parameter_invalid_integer", param="amount")
        reason = params.get("reason")
        if reason == "":
            reason = None
        if reason is not None and reason not in _REFUND_REASONS:
            raise StandinError.invalid(
                f"Invalid reason: must be one of {', '.join(_REFUND_REASONS)}",
                code="parameter_invalid", param="reason")
        metadata = _metadata_param(params.get("metadata"))
        pi = self.payment_intents.get(pi_id)
        if pi is None:  # a missing object named in a parameter is a 400, as with Stripe
            raise StandinError.invalid(f"No such payment_intent: '{pi_id}'",
                                       code="resource_missing", param="payment_intent")
        # From here the checks depend on state: their answers are kept under the key.
        if pi["status"] != "succeeded" or not pi["latest_charge"]:
            raise StandinError(
                400, "invalid_request_error",
                f"This PaymentIntent ({pi_id}) does not have a successful charge to refund.",
                code="charge_not_refundable", param="payment_intent", replayable=True)
        left = self.refundable(pi)
        if left <= 0:
            raise StandinError(400, "invalid_request_error",
                               f"Charge {pi['latest_charge']} has already been refunded.",
                               code="charge_already_refunded", replayable=True)
        if amount is None:
            amount = left
        elif amount > left:
            raise StandinError(
                400, "invalid_request_error",
                f"Refund amount ({format_amount(amount, pi['currency'])}) is greater than "
                f"unrefunded amount on charge ({format_amount(left, pi['currency'])})",
                code="amount_too_large", param="amount", replayable=True)
        refund: JSON = {
            "id": new_id("re"),
            "object": "refund",
            "amount": amount,
            "balance_transaction": None,
            "charge": pi["latest_charge"],
            "created": now(),
            "currency": pi["currency"],
            "destination_details": None,
            "failure_reason": None,
            "metadata": metadata,
            "payment_intent": pi_id,
            "reason": reason,
            "receipt_number": None,
            "source_transfer_reversal": None,
            "status": "pending",
            "transfer_reversal": None,
        }
        self.refunds[refund["id"]] = refund
        return refund

    def resolve_refund(self, re_id: str, outcome: str) -> JSON:
        """Move a pending refund to ``succeeded`` or ``failed`` (409 when not pending)."""
        refund = self.get_refund(re_id)
        if refund["status"] != "pending":
            raise StandinError(409, "invalid_request_error",
                               f"Cannot resolve refund {re_id}: it is {refund['status']}.",
                               code="refund_unexpected_state")
        if outcome == "succeeded":
            refund.update(status="succeeded", failure_reason=None)
        else:
            refund.update(status="failed", failure_reason=REFUND_FAILURE_REASON)
        return refund

    def charge_of(self, pi: JSON) -> JSON:
        """The Charge behind a succeeded payment intent, with its refunds (newest first)."""
        refunds = self.refunds_of(pi["id"])[::-1]  # insertion order is creation order
        refunded = sum(r["amount"] for r in refunds if r["status"] == "succeeded")
        charge_id = pi["latest_charge"]
        return {
            "id": charge_id,
            "object": "charge",
            "amount": pi["amount"],
            "amount_captured": pi["amount_received"],
            "amount_refunded": refunded,
            "balance_transaction": None,
            "captured": True,
            "created": pi["created"],
            "currency": pi["currency"],
            "customer": pi["customer"],
            "description": pi["description"],
            "livemode": False,
            "metadata": copy.deepcopy(pi["metadata"]),
            "paid": True,
            "payment_intent": pi["id"],
            "payment_method": pi["payment_method"],
            "refunded": pi["amount_received"] > 0 and refunded >= pi["amount_received"],
            "refunds": {"object": "list", "data": copy.deepcopy(refunds), "has_more": False,
                        "total_count": len(refunds), "url": f"/v1/charges/{charge_id}/refunds"},
            "status": "succeeded",
        }

    # payouts

    def get_payout(self, po_id: str) -> JSON:
        payout = self.payouts.get(po_id)
        if payout is None:
            raise StandinError.missing("payout", po_id, param="id")
        return payout

    def create_payout(self, params: JSON) -> JSON:
        """A ``pending`` payout to ``destination`` (a ``ba_``/``card_`` id, optional), arriving
        two days after creation."""
        amount = _amount_param(params)
        currency = _currency_param(params)
        method = _str_param(params, "method") or "standard"
        if method not in PAYOUT_METHODS:
            raise StandinError.invalid(
                f"Invalid method: must be one of {', '.join(PAYOUT_METHODS)}",
                code="parameter_invalid", param="method")
        destination = _str_param(params, "destination")
        description = _str_param(params, "description")
        descriptor = _str_param(params, "statement_descriptor", STATEMENT_DESCRIPTOR_MAX)
        metadata = _metadata_param(params.get("metadata"))
        created = now()
        payout: JSON = {
            "id": new_id("po"),
            "object": "payout",
            "amount": amount,
            "application_fee": None,
            "application_fee_amount": None,
            "arrival_date": created + PAYOUT_ARRIVAL_SECONDS,
            "automatic": False,
            "balance_transaction": new_id("txn"),
            "created": created,
            "currency": currency,
            "description": description,
            "destination": destination,
            "failure_balance_transaction": None,
            "failure_code": None,
            "failure_message": None,
            "livemode": False,
            "metadata": metadata,
            "method": method,
            "original_payout": None,
            "reconciliation_status": "not_applicable",
            "reversed_by": None,
            "source_type": "card",
            "statement_descriptor": descriptor,
            "status": "pending",
            "type": "card" if (destination or "").startswith("card_") else "bank_account",
        }
        self.payouts[payout["id"]] = payout
        return payout

    def resolve_payout(self, po_id: str, outcome: str) -> JSON:
        """Move a pending payout to ``paid`` or ``failed`` (409 when not pending)."""
        payout = self.get_payout(po_id)
        if payout["status"] != "pending":
            raise StandinError(409, "invalid_request_error",
                               f"Cannot resolve payout {po_id}: it is {payout['status']}.",
                               code="payout_unexpected_state")
        if outcome == "paid":
            payout.update(status="paid", failure_code=None, failure_message=None)
        else:
            payout.update(status="failed", failure_code=PAYOUT_FAILURE_CODE,
                          failure_message=PAYOUT_FAILURE_MESSAGE,
                          failure_balance_transaction=new_id("txn"))
        return payout

    # events

    def record_event(self, type_: str, obj: JSON, *, pending_webhooks: int,
                     request_id: str | None = None, idempotency_key: str | None = None,
                     flow_hint: str | None = None) -> StoredEvent:
        """Record an event carrying a snapshot of ``obj``; its payload is serialized once here."""
        event: JSON = {
            "id": new_id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": now(),
            "data": {"object": copy.deepcopy(obj)},
            "livemode": False,
            "pending_webhooks": pending_webhooks,
            "request": {"id": request_id, "idempotency_key": idempotency_key},
            "type": type_,
        }
        stored = StoredEvent(event, json.dumps(event, indent=2), flow_hint)
        self.events[stored.id] = stored
        return stored
