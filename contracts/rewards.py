"""Cashback and points rules: the tenant's policy and the arithmetic it implies."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from contracts.money import currency_exponent, round_half_up

PLATFORMS = ("widget", "shopify", "woocommerce", "api")
TIERS = ("bronze", "silver", "gold", "platinum")


@dataclass
class RewardsPolicy:
    """A tenant's cashback and points rules (tenants.settings["rewards"] overrides these)."""

    cashback_rate: str = "0.10"
    return_window_seconds: int = 30 * 86400
    min_confidence: str = "0"  # any tracked purchase earns
    points_per_unit: int = 1  # points per whole currency unit spent
    tier_thresholds: dict[str, int] = field(
        default_factory=lambda: {"silver": 1000, "gold": 5000, "platinum": 20000})
    tier_bonus: dict[str, str] = field(
        default_factory=lambda: {"bronze": "0", "silver": "0.01", "gold": "0.02",
                                 "platinum": "0.03"})

    def tier_for(self, lifetime_points: int) -> str:
        tier = "bronze"
        for name in TIERS[1:]:
            if lifetime_points >= self.tier_thresholds.get(name, 1 << 62):
                tier = name
        return tier


def cashback_for(amount_minor: int, rate: str) -> int:
    """amount × rate, rounded half-up to the minor unit (€89.50 × 10% = €8.95)."""
    return round_half_up(Decimal(amount_minor) * Decimal(rate))


def points_for(amount_minor: int, currency: str, points_per_unit: int) -> int:
    """Points for whole currency units spent (€89.50 at 1 point/€ = 89 points)."""
    return amount_minor // 10 ** currency_exponent(currency) * points_per_unit


def rewards_policy(settings: dict[str, Any] | None) -> RewardsPolicy:
    """The tenant's policy: the defaults, overridden by ``settings["rewards"]``."""
    policy = RewardsPolicy()
    for name, value in (settings or {}).get("rewards", {}).items():
        if hasattr(policy, name):
            setattr(policy, name, value)
    return policy
