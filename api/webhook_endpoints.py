"""Outbound webhook endpoints a tenant registers, and their deliveries (Standard Webhooks)."""

from __future__ import annotations

import asyncio
import secrets
import socket
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy

from api.deps import AdminPrincipal, AppSettings, DbSession, Temporal, json_body, openapi_body
from api.errors import ProblemError
from api.flowstart import commit_before_start
from api.pagination import DEFAULT_LIMIT, Cursor, Limit, by_time, next_page, time_position
from api.schemas import WebhookEndpointCreate, WebhookEndpointUpdate
from contracts.destinations import resolution_refusal, url_refusal
from contracts.errors import ErrorCode as E
from contracts.webhooks import DeliveryInput
from db.tenants import Principal
from db.webhook_endpoints import WebhookEndpointRepository, new_secret
from workflows.webhook_delivery import WebhookDeliveryWorkflow

router = APIRouter(tags=["outbound webhooks"])


async def _refusal(url: str, development: bool) -> str | None:
    """Why the URL can't be registered, or None: its form (`contracts.destinations`), and
    outside development mode every address its host resolves to now. The worker checks the
    addresses again on every delivery."""
    why = url_refusal(url, development)
    if why is not None or development:
        return why  # (a malformed URL is refused before urlsplit could raise on it below)
    host = urlsplit(url).hostname
    if host is None:
        return why
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None,
                                                             type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):  # UnicodeError: a host name IDNA cannot encode
        return f"{host} does not resolve"
    return resolution_refusal(host, dict.fromkeys(str(info[4][0]) for info in infos))


def _view(r: Any) -> dict[str, Any]:
    return {"id": r.id, "url": r.url, "event_types": list(r.event_types),
            "disabled_at": r.disabled_at.isoformat() if r.disabled_at else None,
            "disabled_reason": r.disabled_reason, "created_at": r.created_at.isoformat()}


@router.post("/v1/webhook-endpoints", status_code=201,
             openapi_extra=openapi_body(WebhookEndpointCreate),
             summary="Register an endpoint; the answer holds its whsec_ secret")
async def create_endpoint(principal: AdminPrincipal,
                          body: Annotated[WebhookEndpointCreate,
                                          Depends(json_body(WebhookEndpointCreate))],
                          session: DbSession) -> dict[str, Any]:
    await _allowed(body.url, principal)
    endpoint_id = "we_" + secrets.token_hex(10)
    secret = new_secret()
    row = await WebhookEndpointRepository(session).create(
        principal.tenant_id, endpoint_id, body.url, body.event_types, secret)
    return _view(row) | {"secret": secret}


async def _allowed(url: str, principal: Principal) -> None:
    why = await _refusal(url, bool(principal.settings.get("development")))
    if why is not None:
        raise ProblemError(E.URL_NOT_ALLOWED, why + " (local and private destinations and "
                           "plain http need development mode)")


@router.get("/v1/webhook-endpoints", summary="The tenant's endpoints, oldest first")
async def list_endpoints(principal: AdminPrincipal, session: DbSession, cursor: Cursor = None,
                         limit: Limit = DEFAULT_LIMIT) -> dict[str, Any]:
    rows = await WebhookEndpointRepository(session).list(principal.tenant_id,
                                                         time_position(cursor), limit + 1)
    page, next_cursor = next_page(rows, limit, lambda r: by_time(r.created_at, r.id))
    return {"data": [_view(r) for r in page], "next_cursor": next_cursor}


def _found(row: Any, endpoint_id: str) -> dict[str, Any]:
    if row is None:
        raise ProblemError(E.ENDPOINT_NOT_FOUND, f"no endpoint {endpoint_id!r}")
    return _view(row)


@router.patch("/v1/webhook-endpoints/{endpoint_id}",
              openapi_extra=openapi_body(WebhookEndpointUpdate),
              summary="Change the URL (checked like a new one) or the event types; the next "
                      "delivery goes to the new URL")
async def update_endpoint(endpoint_id: str, principal: AdminPrincipal,
                          body: Annotated[WebhookEndpointUpdate,
                                          Depends(json_body(WebhookEndpointUpdate))],
                          session: DbSession) -> dict[str, Any]:
    if body.url is not None:
        await _allowed(body.url, principal)
    row = await WebhookEndpointRepository(session).update(principal.tenant_id, endpoint_id,
                                                          body.url, body.event_types)
    return _found(row, endpoint_id)


@router.post("/v1/webhook-endpoints/{endpoint_id}/disable",
             summary="Stop deliveries: new events skip it, pending ones stop at their next try")
async def disable_endpoint(endpoint_id: str, principal: AdminPrincipal,
                           session: DbSession) -> dict[str, Any]:
    row = await WebhookEndpointRepository(session).set_enabled(principal.tenant_id,
                                                               endpoint_id, False)
    return _found(row, endpoint_id)


@router.post("/v1/webhook-endpoints/{endpoint_id}/enable",
             summary="Deliver again, from the events recorded from now on")
async def enable_endpoint(endpoint_id: str, principal: AdminPrincipal,
                          session: DbSession) -> dict[str, Any]:
    row = await WebhookEndpointRepository(session).set_enabled(principal.tenant_id,
                                                               endpoint_id, True)
    return _found(row, endpoint_id)


@router.delete("/v1/webhook-endpoints/{endpoint_id}",
               summary="Delete an endpoint: no delivery from now on; its deliveries stay listed")
async def delete_endpoint(endpoint_id: str, principal: AdminPrincipal,
                          session: DbSession) -> dict[str, Any]:
    if not await WebhookEndpointRepository(session).delete(principal.tenant_id, endpoint_id):
        raise ProblemError(E.ENDPOINT_NOT_FOUND, f"no endpoint {endpoint_id!r}")
    return {"id": endpoint_id, "deleted": True}


@router.post("/v1/webhook-endpoints/{endpoint_id}/rotate",
             summary="A new secret; the old one keeps signing for 24 h")
async def rotate(endpoint_id: str, principal: AdminPrincipal,
                 session: DbSession) -> dict[str, Any]:
    secret = new_secret()
    row = await WebhookEndpointRepository(session).rotate(principal.tenant_id, endpoint_id, secret)
    if row is None:
        raise ProblemError(E.ENDPOINT_NOT_FOUND, f"no endpoint {endpoint_id!r}")
    return _view(row) | {"secret": secret}


@router.get("/v1/webhook-deliveries", summary="Deliveries and their attempts, newest first")
async def deliveries(principal: AdminPrincipal, session: DbSession,
                     endpoint_id: str | None = None, cursor: Cursor = None,
                     limit: Limit = DEFAULT_LIMIT) -> dict[str, Any]:
    rows = await WebhookEndpointRepository(session).deliveries(
        principal.tenant_id, endpoint_id, limit=limit + 1, before=time_position(cursor))
    page, next_cursor = next_page(rows, limit, lambda r: by_time(r.created_at, r.id))
    return {"data": [{"id": r.id, "endpoint_id": r.endpoint_id, "event_type": r.type,
                      "status": r.status, "attempts": r.attempt_log,
                      "delivered_at": r.delivered_at.isoformat() if r.delivered_at else None}
                     for r in page], "next_cursor": next_cursor}


@router.post("/v1/webhook-deliveries/{delivery_id}/resend", status_code=202,
             summary="Send a delivery again (same webhook-id)")
async def resend(delivery_id: str, principal: AdminPrincipal, session: DbSession,
                 temporal: Temporal, settings: AppSettings) -> dict[str, Any]:
    if not await WebhookEndpointRepository(session).reopen(principal.tenant_id, delivery_id):
        raise ProblemError(E.DELIVERY_NOT_FOUND, f"no delivery {delivery_id!r}")
    await commit_before_start(session)
    await start_resend(temporal, settings.temporal_task_queue, principal.tenant_id, delivery_id)
    return {"id": delivery_id, "status": "resending"}


async def start_resend(client: Client, task_queue: str, tenant_id: str, delivery_id: str) -> str:
    """Deliver again under the same webhook-id (a new workflow run per resend)."""
    handle = await client.start_workflow(
        WebhookDeliveryWorkflow.run, DeliveryInput(delivery_id, tenant_id),
        id=f"{delivery_id}:resend:{secrets.token_hex(4)}", task_queue=task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE)
    return handle.id
