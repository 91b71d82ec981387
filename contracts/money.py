"""Money: integer minor units plus an ISO-4217 code; decimal strings only at the edges.

Points are the currency ``PTS`` with no decimals."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

# Minor-unit exponents of the currencies the service accepts. PTS = loyalty points.
CURRENCY_EXPONENTS: dict[str, int] = {
    "EUR": 2, "USD": 2, "GBP": 2, "CHF": 2, "CAD": 2, "AUD": 2, "SEK": 2, "NOK": 2, "DKK": 2,
    "PLN": 2, "CZK": 2, "INR": 2, "BRL": 2, "MXN": 2, "SGD": 2, "HKD": 2, "NZD": 2, "ZAR": 2,
    "KES": 2, "NGN": 2, "JPY": 0, "KRW": 0, "PTS": 0,
}


POINTS = "PTS"
_DECIMAL_RE = re.compile(r"^-?[0-9]{1,24}(\.[0-9]{1,24})?$")


# Largest amount one request may move, in minor units (10 billion in a 2-decimal currency).
MAX_MINOR_UNITS = 10**12


class MoneyError(ValueError):
    """An amount or currency that cannot be money."""


def currency_exponent(currency: str) -> int:
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        raise MoneyError(f"unknown currency {currency!r}") from None


def parse_amount(value: str | int | Decimal, currency: str) -> int:
    """Parse a decimal amount ("89.50", 89.5 parsed exactly, 89) into minor units.

    Rejects zero, negatives, NaN/infinities, more decimals than the currency has and absurd
    magnitudes. Floats are refused: callers must parse JSON numbers as Decimal.
    """
    exponent = currency_exponent(currency)
    if isinstance(value, bool) or isinstance(value, float):
        raise MoneyError("amount must be a decimal string or an exact number")
    if isinstance(value, str):
        text = value.strip()
        if not _DECIMAL_RE.match(text):
            raise MoneyError(f"amount {value[:40]!r} is not a decimal number like \"12.50\"")
        try:
            value = Decimal(text)
        except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
            raise MoneyError(f"amount {value!r} is not a decimal number") from None
    elif isinstance(value, int):
        value = Decimal(value)
    if not value.is_finite():
        raise MoneyError("amount must be a finite number")
    if value <= 0:
        raise MoneyError("amount must be greater than zero")
    minor = value.scaleb(exponent)
    if minor != minor.to_integral_value():
        raise MoneyError(f"{currency} allows at most {exponent} decimal places")
    units = int(minor)
    if units > MAX_MINOR_UNITS:
        raise MoneyError("amount is too large")
    return units


def format_amount(minor_units: int, currency: str) -> str:
    """Minor units → decimal string with exactly the currency's decimals (895, EUR → "8.95")."""
    exponent = currency_exponent(currency)
    return f"{Decimal(minor_units).scaleb(-exponent):.{exponent}f}"


def round_half_up(value: Decimal) -> int:
    """Round a Decimal to an integer, halves away from zero (money rounding)."""
    return int(value.quantize(Decimal(1), rounding="ROUND_HALF_UP"))


@dataclass(frozen=True)
class Money:
    amount: int  # minor units
    currency: str

    def __str__(self) -> str:
        return f"{format_amount(self.amount, self.currency)} {self.currency}"
