"""Compatibility re-exports: the repositories now live in one module per aggregate
(db/tenants.py, db/users.py, db/flows.py, db/webhook_events.py, db/stores.py,
db/webhook_endpoints.py). Import from those; these names go once every importer has moved."""

from db.flows import FlowRepository
from db.stores import StoreRepository
from db.tenants import Principal, TenantRepository, hash_key, new_api_key
from db.users import UserRepository
from db.webhook_endpoints import WebhookEndpointRepository
from db.webhook_events import WebhookEventRepository

__all__ = ["FlowRepository", "Principal", "StoreRepository", "TenantRepository",
           "UserRepository", "WebhookEndpointRepository", "WebhookEventRepository", "hash_key",
           "new_api_key"]
