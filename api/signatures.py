"""Signature schemes of stores and the widget, checked on the raw bytes before parsing, with
constant-time comparison."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time


def _hmac(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def shopify_valid(body: bytes, header: str | None, secret: str) -> bool:
    """X-Shopify-Hmac-Sha256: base64(HMAC-SHA256(secret, raw body))."""
    if not header:
        return False
    return hmac.compare_digest(base64.b64encode(_hmac(secret, body)), header.strip().encode())


def woocommerce_valid(body: bytes, header: str | None, secret: str) -> bool:
    """X-WC-Webhook-Signature: base64(HMAC-SHA256(secret, raw body))."""
    return shopify_valid(body, header, secret)


def widget_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The widget signs "<unix timestamp>.<raw body>" with its tenant's widget secret (hex)."""
    return _hmac(secret, timestamp.encode() + b"." + body).hex()


def widget_valid(body: bytes, timestamp: str | None, signature: str | None, secret: str,
                 tolerance: int = 300, now: float | None = None) -> bool:
    if not timestamp or not signature or not timestamp.isdigit():
        return False
    if abs((now if now is not None else time.time()) - int(timestamp)) > tolerance:
        return False
    expected = widget_signature(secret, timestamp, body)
    return hmac.compare_digest(expected.encode(), signature.strip().lower().encode())
