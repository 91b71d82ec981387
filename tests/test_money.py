"""Money parsing and formatting: integer minor units, exact decimals, never floats."""

from decimal import Decimal

import pytest

from contracts.money import MoneyError, format_amount, parse_amount, round_half_up


@pytest.mark.parametrize(("text", "currency", "minor"), [
    ("89.50", "EUR", 8950), ("0.01", "EUR", 1), ("25", "EUR", 2500),
    (Decimal("25.99"), "EUR", 2599), (12, "USD", 1200), ("550", "PTS", 550),
    ("1000", "JPY", 1000), ("10000000000.00", "EUR", 10**12),
])
def test_parses_exact_amounts(text: object, currency: str, minor: int) -> None:
    assert parse_amount(text, currency) == minor  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "currency"), [
    ("0", "EUR"), ("0.00", "EUR"), ("-1.00", "EUR"), ("1.005", "EUR"), ("1.5", "PTS"),
    ("1.5", "JPY"), ("abc", "EUR"), ("NaN", "EUR"), ("Infinity", "EUR"), ("1e3", "EUR"),
    ("", "EUR"), ("1_000", "EUR"), ("10000000000.01", "EUR"), ("1" * 30, "EUR"),
    (Decimal("NaN"), "EUR"), (Decimal("-Infinity"), "EUR"), (1.5, "EUR"), (True, "EUR"),
    ("10.00", "XXX"),
])
def test_rejects_what_is_not_money(text: object, currency: str) -> None:
    with pytest.raises(MoneyError):
        parse_amount(text, currency)  # type: ignore[arg-type]


def test_formats_with_the_currency_decimals() -> None:
    assert format_amount(895, "EUR") == "8.95"
    assert format_amount(5, "EUR") == "0.05"
    assert format_amount(550, "PTS") == "550"


@pytest.mark.parametrize(("amount", "rate", "expected"), [
    (8950, "0.10", 895), (2599, "0.10", 260), (5, "0.10", 1), (4, "0.10", 0),
])
def test_cashback_rounds_half_up(amount: int, rate: str, expected: int) -> None:
    assert round_half_up(Decimal(amount) * Decimal(rate)) == expected
