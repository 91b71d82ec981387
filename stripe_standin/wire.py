"""Stripe wire-format basics shared by the whole stand-in: the JSON type, Stripe-looking ids,
timestamps, human amounts and `StandinError`, an error answered in Stripe's shape."""

from __future__ import annotations

import secrets
import string
import time
from typing import Any

API_VERSION = "2024-06-20"
ZERO_DECIMAL_CURRENCIES = frozenset({"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga",
                                     "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"})

_ALNUM = string.ascii_letters + string.digits

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
