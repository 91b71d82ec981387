"""Request parameters in Stripe's form encoding: decoding ``a[b][0]=c`` into nested data, the
idempotency fingerprint of a request, and validators for the parameter kinds the resources take
(integers, amounts, currencies, strings, booleans, metadata) raising Stripe's errors."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from stripe_standin.wire import JSON, StandinError

MIN_AMOUNT = 1
MAX_AMOUNT = 99_999_999

_CURRENCY_RE = re.compile(r"^[a-zA-Z]{3}$")
_INT_RE = re.compile(r"^-?\d+$")
_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
# Keys whose bracketed sub-keys are names, never list indices.
_MAP_PARAMS = frozenset({"metadata"})


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
        _put(root, raw_key, parts, value)
    return {key: value if key in _MAP_PARAMS else _listify(value) for key, value in root.items()}


def _put(root: JSON, raw_key: str, parts: list[str], value: str) -> None:
    """Store ``value`` at the path ``parts`` (``""`` appends) under ``root``."""
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


def _listify(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    items = {key: _listify(sub) for key, sub in value.items()}
    if items and all(key.isdigit() for key in items):
        return [items[key] for key in sorted(items, key=int)]
    return items


def fingerprint(method: str, path: str, params: JSON) -> str:
    return json.dumps([method.upper(), path, params], sort_keys=True, separators=(",", ":"))


def int_param(params: JSON, name: str) -> int:
    if name not in params:
        raise StandinError.invalid(f"Missing required param: {name}.", code="parameter_missing",
                                   param=name)
    raw = params[name]
    if not isinstance(raw, str) or not _INT_RE.match(raw.strip()):
        raise StandinError.invalid(f"Invalid integer: {raw}", code="parameter_invalid_integer",
                                   param=name)
    return int(raw)


def amount_param(params: JSON) -> int:
    """A required ``amount`` within Stripe's bounds (amount_too_small / amount_too_large)."""
    amount = int_param(params, "amount")
    if amount < MIN_AMOUNT:
        raise StandinError.invalid(
            f"Amount must be at least {MIN_AMOUNT} (in the smallest currency unit).",
            code="amount_too_small", param="amount")
    if amount > MAX_AMOUNT:
        raise StandinError.invalid(
            f"Amount must be no more than {MAX_AMOUNT} (in the smallest currency unit).",
            code="amount_too_large", param="amount")
    return amount


def currency_param(params: JSON) -> str:
    """A required three-letter ``currency``, lower-cased."""
    currency = params.get("currency")
    if currency is None:
        raise StandinError.invalid("Missing required param: currency.",
                                   code="parameter_missing", param="currency")
    if not isinstance(currency, str) or not _CURRENCY_RE.match(currency):
        raise StandinError.invalid(f"Invalid currency: {currency}.",
                                   code="parameter_invalid", param="currency")
    return currency.lower()


def str_param(params: JSON, name: str, max_length: int | None = None) -> str | None:
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


def bool_param(raw: Any, name: str) -> bool:
    if raw in ("true", "True", "1"):
        return True
    if raw in ("false", "False", "0"):
        return False
    raise StandinError.invalid(f"Invalid boolean: {raw}", code="parameter_invalid", param=name)


def choice_param(params: JSON, name: str, choices: tuple[str, ...], *,
                 blank_is_unset: bool = False) -> Any:
    """An optional ``name`` that must be one of ``choices`` when given; ``""`` is an invalid
    choice unless ``blank_is_unset`` (then it reads as None)."""
    value = params.get(name)
    if blank_is_unset and value == "":
        value = None
    if value is not None and value not in choices:
        raise StandinError.invalid(f"Invalid {name}: must be one of {', '.join(choices)}",
                                   code="parameter_invalid", param=name)
    return value


def metadata_param(raw: Any) -> dict[str, str]:
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
