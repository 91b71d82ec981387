"""Signed store and widget calls, as real shops and the widget send them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.signatures import widget_signature
from db.stores import StoreRepository
from tests.support import Tenant


@dataclass
class Shop:
    tenant: Tenant
    widget_key: str
    widget_secret: str
    shopify_domain: str
    shopify_secret: str
    woo_url: str
    woo_secret: str

    def widget_headers(self, body: bytes, ts: int | None = None, secret: str | None = None,
                       key: str | None = None) -> dict[str, str]:
        stamp = str(ts if ts is not None else int(time.time()))
        return {"X-Walletflow-Key": key or self.widget_key, "X-Walletflow-Timestamp": stamp,
                "X-Walletflow-Signature": widget_signature(secret or self.widget_secret, stamp,
                                                           body),
                "Content-Type": "application/json"}

    async def widget(self, http: Any, path: str, payload: dict[str, Any], **sign: Any) -> Any:
        body = json.dumps(payload).encode()
        return await http.post(path, content=body, headers=self.widget_headers(body, **sign))

    async def shopify(self, http: Any, topic: str, payload: dict[str, Any],
                      secret: str | None = None, webhook_id: str | None = None) -> Any:
        body = json.dumps(payload).encode()
        mac = hmac.new((secret or self.shopify_secret).encode(), body, hashlib.sha256).digest()
        return await http.post("/v1/webhooks/shopify", content=body, headers={
            "X-Shopify-Hmac-Sha256": base64.b64encode(mac).decode(),
            "X-Shopify-Topic": topic, "X-Shopify-Shop-Domain": self.shopify_domain,
            "X-Shopify-Webhook-Id": webhook_id or secrets.token_hex(8),
            "Content-Type": "application/json"})

    async def woocommerce(self, http: Any, topic: str, payload: dict[str, Any],
                          secret: str | None = None, delivery_id: str | None = None) -> Any:
        body = json.dumps(payload).encode()
        mac = hmac.new((secret or self.woo_secret).encode(), body, hashlib.sha256).digest()
        return await http.post("/v1/webhooks/woocommerce", content=body, headers={
            "X-WC-Webhook-Signature": base64.b64encode(mac).decode(),
            "X-WC-Webhook-Topic": topic, "X-WC-Webhook-Source": self.woo_url,
            "X-WC-Webhook-Resource": "order", "X-WC-Webhook-Event": topic.split(".")[-1],
            "X-WC-Webhook-ID": "7", "X-WC-Webhook-Delivery-ID": delivery_id or secrets.token_hex(8),
            "Content-Type": "application/json"})


async def connect_shop(sessions: async_sessionmaker[AsyncSession], tenant: Tenant) -> Shop:
    async with sessions.begin() as session:
        stores = StoreRepository(session)
        key = f"pk_{secrets.token_hex(8)}"
        domain = f"{tenant.slug}.myshopify.com"
        url = f"https://{tenant.slug}.example.com"
        shop = Shop(tenant, key, await stores.add_credential(tenant.id, "widget", key),
                    domain, await stores.add_credential(tenant.id, "shopify", domain),
                    url, await stores.add_credential(tenant.id, "woocommerce", url))
    return shop


def shopify_order(order_id: int, total: str, user_id: str, currency: str = "EUR") -> dict:
    return {"id": order_id, "email": f"{user_id}@example.com", "total_price": total,
            "currency": currency, "created_at": "2026-01-01T10:00:00Z",
            "customer": {"id": 99, "email": f"{user_id}@example.com"},
            "note_attributes": [{"name": "walletflow_user_id", "value": user_id}]}


def woo_order(order_id: int, total: str, user_id: str, status: str = "processing",
              refunds: list[str] | None = None) -> dict:
    return {"id": order_id, "status": status, "total": total, "currency": "EUR",
            "date_created_gmt": "2026-01-01T10:00:00", "customer_id": 5,
            "billing": {"email": f"{user_id}@example.com"},
            "meta_data": [{"id": 1, "key": "walletflow_user_id", "value": user_id}],
            "refunds": [{"id": i, "total": f"-{r}"} for i, r in enumerate(refunds or [])]}
