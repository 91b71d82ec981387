"""Outbound webhook endpoints a tenant registers, and their deliveries (Standard Webhooks)."""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.common import WorkflowIDReusePolicy

from activities.outbound import new_secret
from api.deps import admin_principal, db_session, json_body, openapi_body
from api.errors import ProblemError
from api.schemas import WebhookEndpointCreate
from db.repositories import Principal
from workflows.contracts import DeliveryInput
from workflows.webhook_delivery import WebhookDeliveryWorkflow

router = APIRouter(tags=["outbound webhooks"])


async def _public(url: str) -> bool:
    """True when every address the host resolves to is public (no loopback, link-local,
    private or reserved range)."""
    host = urlsplit(url).hostname
    if not host:
        return False
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None,
                                                             type=socket.SOCK_STREAM)
    except OSError:
        return False
    for info in infos:
        ip = ipaddress.ip_address(info[4][0])
        if (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_reserved
                or ip.is_multicast or ip.is_unspecified):
            return False
    return True


def _view(r: Any) -> dict[str, Any]:
    return {"id": r.id, "url": r.url, "event_types": list(r.event_types),
            "disabled_at": r.disabled_at.isoformat() if r.disabled_at else None,
            "disabled_reason": r.disabled_reason, "created_at": r.created_at.isoformat()}


@router.post("/v1/webhook-endpoints", status_code=201,
             openapi_extra=openapi_body(WebhookEndpointCreate),
             summary="Register an endpoint; the answer holds its whsec_ secret")
async def create_endpoint(principal: Principal = Depends(admin_principal),
                          body: WebhookEndpointCreate = Depends(json_body(WebhookEndpointCreate)),
                          session: AsyncSession = Depends(db_session)) -> dict[str, Any]:
    if not principal.settings.get("development") and not await _public(body.url):
        raise ProblemError(422, "url_not_allowed", "the URL must resolve to public addresses "
                           "(loopback, link-local and private ranges need development mode)")
    endpoint_id = "we_" + secrets.token_hex(10)
    secret = new_secret()
    row = (await session.execute(text(
        "INSERT INTO webhook_endpoints (id, tenant_id, url, event_types, secret) "
        "VALUES (:i, :t, :u, :e, :s) RETURNING *"),
        {"i": endpoint_id, "t": principal.tenant_id, "u": body.url, "e": body.event_types,
         "s": secret})).one()
    await session.commit()
    return _view(row) | {"secret": secret}


@router.get("/v1/webhook-endpoints", summary="The tenant's endpoints")
async def list_endpoints(principal: Principal = Depends(admin_principal),
                         session: AsyncSession = Depends(db_session)) -> dict[str, Any]:
    rows = await session.execute(text(
        "SELECT * FROM webhook_endpoints WHERE tenant_id = :t ORDER BY created_at"),
        {"t": principal.tenant_id})
    return {"data": [_view(r) for r in rows]}


@router.post("/v1/webhook-endpoints/{endpoint_id}/rotate",
             summary="A new secret; the old one keeps signing for 24 h")
async def rotate(endpoint_id: str, principal: Principal = Depends(admin_principal),
                 session: AsyncSession = Depends(db_session)) -> dict[str, Any]:
    secret = new_secret()
    row = (await session.execute(text(
        "UPDATE webhook_endpoints SET previous_secret = secret, secret = :s, "
        "previous_valid_until = now() + interval '24 hours' WHERE id = :i AND tenant_id = :t "
        "RETURNING *"), {"s": secret, "i": endpoint_id, "t": principal.tenant_id})).first()
    if row is None:
        raise ProblemError(404, "endpoint_not_found", f"no endpoint {endpoint_id!r}")
    await session.commit()
    return _view(row) | {"secret": secret}


@router.get("/v1/webhook-deliveries", summary="Deliveries and their attempts")
async def deliveries(endpoint_id: str | None = None,
                     principal: Principal = Depends(admin_principal),
                     session: AsyncSession = Depends(db_session)) -> dict[str, Any]:
    rows = (await session.execute(text(
        "SELECT d.*, o.type, coalesce((SELECT json_agg(json_build_object('at', a.at, "
        "'status_code', a.status_code, 'error', a.error) ORDER BY a.id) FROM webhook_attempts a "
        "WHERE a.delivery_id = d.id), '[]') AS attempt_log FROM webhook_deliveries d "
        "JOIN outbox_events o ON o.id = d.event_id WHERE d.tenant_id = :t AND "
        "(CAST(:e AS text) IS NULL OR d.endpoint_id = :e) ORDER BY d.created_at DESC LIMIT 200"),
        {"t": principal.tenant_id, "e": endpoint_id})).all()
    return {"data": [{"id": r.id, "endpoint_id": r.endpoint_id, "event_type": r.type,
                      "status": r.status, "attempts": r.attempt_log,
                      "delivered_at": r.delivered_at.isoformat() if r.delivered_at else None}
                     for r in rows]}


@router.post("/v1/webhook-deliveries/{delivery_id}/resend", status_code=202,
             summary="Send a delivery again (same webhook-id)")
async def resend(delivery_id: str, request: Request,
                 principal: Principal = Depends(admin_principal),
                 session: AsyncSession = Depends(db_session)) -> dict[str, Any]:
    row = (await session.execute(text(
        "UPDATE webhook_deliveries SET status = 'pending' WHERE id = :d AND tenant_id = :t "
        "RETURNING id"), {"d": delivery_id, "t": principal.tenant_id})).first()
    if row is None:
        raise ProblemError(404, "delivery_not_found", f"no delivery {delivery_id!r}")
    await session.commit()
    await request.app.state.temporal.start_workflow(
        WebhookDeliveryWorkflow.run, DeliveryInput(delivery_id, principal.tenant_id),
        id=f"{delivery_id}:resend:{secrets.token_hex(4)}",
        task_queue=request.app.state.settings.temporal_task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE)
    return {"id": delivery_id, "status": "resending"}
