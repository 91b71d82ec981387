"""Tenant settings an admin changes — through the API or the CLI, by the same rules: the groups,
what each field may hold, how a change applies, how each group reads back.

Where each group lives in ``tenants.settings`` (jsonb), as the flows read it:
``rewards`` (``contracts/rewards.py``), ``refunds.approval_threshold`` and
``withdrawals.{per_request_max,daily_max,two_admin_threshold}`` (currency → decimal string in
major units), ``withdrawals.approval_window_seconds``, and the events group's ``development``
at the top level (outbound deliveries read it there). A change names the fields it replaces;
a field set to None goes back to its default (no limit, no threshold, off)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from contracts.money import CURRENCY_EXPONENTS, MoneyError, format_amount, parse_amount
from contracts.rewards import TIERS, rewards_policy

GROUPS = ("rewards", "refunds", "withdrawals", "events", "payments")
AMOUNT_MAPS = {"refunds": ("approval_threshold",),
               "withdrawals": ("per_request_max", "daily_max", "two_admin_threshold")}
DEFAULT_APPROVAL_WINDOW = 72 * 3600
MIN_APPROVAL_WINDOW, MAX_APPROVAL_WINDOW = 60, 366 * 86400
MAX_COUNT = 10**12  # tier thresholds (points)
_RATE = re.compile(r"^(0(\.[0-9]{1,4})?|1(\.0{1,4})?)$")
_GATEWAY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
DEFAULT_GATEWAY = "stripe"


class SettingsError(ValueError):
    """A change the rules refuse (an unknown group, field or currency, a bad value)."""


def _shown(value: object) -> str:
    return repr(value)[:40]


def _amounts(name: str, value: object) -> dict[str, str]:
    """currency → a positive amount within the currency's decimals and the largest amount."""
    if not isinstance(value, dict):
        raise SettingsError(f"{name} must be an object of currency → amount")
    out = {}
    for currency, amount in value.items():
        if currency not in CURRENCY_EXPONENTS:
            raise SettingsError(f"{name}: unknown currency {_shown(currency)}")
        if not isinstance(amount, str | int | Decimal) or isinstance(amount, bool):
            raise SettingsError(f"{name}.{currency} must be a decimal string like \"100.00\"")
        try:
            out[currency] = format_amount(parse_amount(amount, currency), currency)
        except MoneyError as e:
            raise SettingsError(f"{name}.{currency}: {e}") from None
    return out


def _integer(lo: int, hi: int) -> Callable[[str, object], int]:
    def check(name: str, value: object) -> int:
        if isinstance(value, Decimal) and value.is_finite() and value == int(value):
            value = int(value)  # a JSON number without a fraction (3600.0)
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise SettingsError(f"{name} must be an integer from {lo} to {hi}")
        return value
    return check


def _rate(name: str, value: object) -> str:
    if not isinstance(value, str) or not _RATE.match(value):
        raise SettingsError(f"{name} must be a decimal string from \"0\" to \"1\" (4 decimals)")
    return value


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise SettingsError(f"{name} must be true or false")
    return value


def _tier_thresholds(name: str, value: object) -> dict[str, int]:
    """Empty (no tiers above bronze), or silver < gold < platinum, all positive."""
    if not isinstance(value, dict) or not set(value) <= set(TIERS[1:]):
        raise SettingsError(f"{name} must be an object of silver, gold, platinum → points")
    out = {t: _integer(1, MAX_COUNT)(f"{name}.{t}", value[t]) for t in TIERS[1:] if t in value}
    if out and (len(out) != 3 or list(out.values()) != sorted(set(out.values()))):
        raise SettingsError("tier thresholds must be positive and silver < gold < platinum")
    return out


def _tier_bonus(name: str, value: object) -> dict[str, str]:
    if not isinstance(value, dict) or not set(value) <= set(TIERS):
        raise SettingsError(f"{name} must be an object of tier → rate")
    return {t: _rate(f"{name}.{t}", v) for t, v in value.items()}


def _gateway_name(name: str, value: object) -> str:
    """A gateway's name; whether it is configured is the service's to check (the API)."""
    if not isinstance(value, str) or not _GATEWAY.match(value):
        raise SettingsError(f"{name} must be a gateway name like \"stripe\" or \"razorpay\"")
    return value


_RETURN_URL = re.compile(r"^https?://[A-Za-z0-9.\[\]:-]+(?:[/?#]\S*)?\Z")
CHECKOUT_URLS = ("checkout_success_url", "checkout_cancel_url")


def _return_url(name: str, value: object) -> str:
    """Where a hosted checkout returns the payer: an absolute http(s) URL ("{flow_id}" is
    replaced by the flow's id); https only in production (checked by ``change``)."""
    if not isinstance(value, str) or len(value) > 2000 or not _RETURN_URL.match(value):
        raise SettingsError(f"{name} must be an absolute https URL")
    return value


_FIELDS: dict[str, dict[str, Callable[[str, Any], Any]]] = {
    "rewards": {"cashback_rate": _rate, "min_confidence": _rate,
                "return_window_seconds": _integer(0, 366 * 86400),
                "points_per_unit": _integer(0, 10_000),
                "tier_thresholds": _tier_thresholds, "tier_bonus": _tier_bonus},
    "refunds": {"approval_threshold": _amounts},
    "withdrawals": {"per_request_max": _amounts, "daily_max": _amounts,
                    "two_admin_threshold": _amounts,
                    "approval_window_seconds": _integer(MIN_APPROVAL_WINDOW, MAX_APPROVAL_WINDOW)},
    "events": {"development": _flag},
    "payments": {"gateway": _gateway_name, "checkout_success_url": _return_url,
                 "checkout_cancel_url": _return_url},
}


def _section(settings: dict[str, Any], group: str) -> dict[str, Any]:
    """The group's stored fields (the events group's live at the top level)."""
    if group == "events":
        return {k: settings[k] for k in _FIELDS["events"] if k in settings}
    section = settings.get(group)
    return dict(section) if isinstance(section, dict) else {}


def change(group: str, settings: dict[str, Any], changes: object,
           production: bool = False) -> dict[str, Any]:
    """The settings document after ``changes`` to ``group``: each named field replaced (None:
    back to its default), the rest kept. SettingsError when the group, a field or a value is
    refused; development mode is refused in production (local receivers, plain http)."""
    if group not in GROUPS:
        raise SettingsError(f"unknown settings group {_shown(group)}: one of {', '.join(GROUPS)}")
    if not isinstance(changes, dict):
        raise SettingsError("the change must be an object of field → value")
    rules = _FIELDS[group]
    unknown = sorted(str(k)[:40] for k in changes if k not in rules)
    if unknown:
        raise SettingsError(f"{group} has no field {', '.join(unknown)}: "
                            f"one of {', '.join(rules)}")
    section = _section(settings, group)
    for name, value in changes.items():
        if value is None:
            section.pop(name, None)
        else:
            section[name] = rules[name](name, value)
    if production and group == "payments" and any(
            str(section.get(u, "")).startswith("http://") for u in CHECKOUT_URLS):
        raise SettingsError("checkout return URLs must be https in production")
    if production and section.get("development"):
        raise SettingsError("development mode (local receivers, plain http) is not available "
                            "in production")
    updated = dict(settings)
    if group == "events":
        for name in rules:
            updated.pop(name, None)
        updated.update(section)
    else:
        updated[group] = section
    return updated


def view(group: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The group as it applies (defaults filled in), as the API and the CLI show it."""
    if group == "rewards":
        return dataclasses.asdict(rewards_policy(settings))
    section = _section(settings, group)
    if group == "events":
        return {"development": section.get("development") is True}
    if group == "payments":
        return {"gateway": default_gateway(settings),
                **{u: section.get(u) for u in CHECKOUT_URLS}}
    shown: dict[str, Any] = {name: {str(c): str(v) for c, v in (section.get(name) or {}).items()}
                             for name in AMOUNT_MAPS[group]}
    if group == "withdrawals":
        shown["approval_window_seconds"] = int(section.get("approval_window_seconds",
                                                           DEFAULT_APPROVAL_WINDOW))
    return shown


def amount_setting(settings: dict[str, Any], group: str, name: str, currency: str) -> int | None:
    """A per-currency amount (a limit or a threshold) in minor units; None when not set."""
    value = (_section(settings, group).get(name) or {}).get(currency)
    return parse_amount(str(value), currency) if value is not None else None


def approval_window(settings: dict[str, Any]) -> int:
    """How long a withdrawal waits for its admins, in seconds."""
    return int(_section(settings, "withdrawals").get("approval_window_seconds",
                                                     DEFAULT_APPROVAL_WINDOW))


def default_gateway(settings: dict[str, Any]) -> str:
    """The gateway a tenant's payments go through when a request names none."""
    return str(_section(settings, "payments").get("gateway") or DEFAULT_GATEWAY)


def checkout_return_urls(settings: dict[str, Any]) -> tuple[str | None, str | None]:
    """The tenant's default return URLs for a hosted checkout (success, cancel); None: unset."""
    section = _section(settings, "payments")
    return section.get("checkout_success_url"), section.get("checkout_cancel_url")
