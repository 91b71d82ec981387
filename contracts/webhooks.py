"""Outbound webhook deliveries."""

from __future__ import annotations

from dataclasses import dataclass

DELIVER_WEBHOOK = "webhooks.deliver"
GIVE_UP_WEBHOOK = "webhooks.give_up"


@dataclass
class DeliveryInput:
    delivery_id: str  # also the webhook-id header, stable across retries and resends
    tenant_id: str
