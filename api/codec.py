"""The codec endpoint the Temporal Web UI (and ``temporal … --codec-endpoint``) decodes payloads
through: ``POST /v1/temporal-codec/decode`` and ``/encode``, Temporal's remote-codec protocol —
a JSON ``{"payloads": [{"metadata": {"encoding": "<base64>", …}, "data": "<base64>"}, …]}``
in, the same shape out, with the same key ring and codec as every Temporal client of ours
(`temporal_client.data_converter`). ``X-Namespace`` (sent by the UI) is accepted and not
needed: one namespace, one ring.

Not part of the public API (not in the OpenAPI document): it serves operators, never tenants.
Authentication: ``Authorization: Bearer <WALLETFLOW_CODEC_TOKEN>``. A tenant's admin key is not
enough — the namespace holds every tenant's flows, so decoding is an operator's right. With no
token configured the endpoint refuses every request, except when the ring is the public
development key only (the dev stack: anyone can decrypt those payloads anyway). CORS: the
origins in WALLETFLOW_CODEC_CORS_ORIGINS (the UI's), with credentials."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from api.deps import AppSettings
from api.errors import problem
from contracts.errors import ErrorCode as E
from payload_codec import PayloadDecryptionError
from settings import Settings
from temporal_client import data_converter

PREFIX = "/v1/temporal-codec"
MAX_CODEC_BODY = 4 * 1024 * 1024  # a page of history's payloads
ALLOWED_HEADERS = "Authorization, Content-Type, X-Namespace"

router = APIRouter(include_in_schema=False)


def cors_headers(request: Request, settings: Settings) -> dict[str, str]:
    """CORS for the Temporal UI's origin (credentials allowed: the UI may send cookies or its
    access token); other origins get no grant, so the browser withholds the answer."""
    origin = request.headers.get("origin", "")
    if origin and origin.rstrip("/") in settings.codec_cors_origins:
        return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true",
                "Vary": "Origin"}
    return {"Vary": "Origin"}


def refusal(request: Request, settings: Settings) -> str | None:
    """Why the caller may not use the codec, or None."""
    token = settings.walletflow_codec_token
    if token is None:
        if settings.codec_is_development:
            return None
        return "the codec endpoint is off: no WALLETFLOW_CODEC_TOKEN is configured"
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.get_secret_value().encode()):
        return "send Authorization: Bearer <WALLETFLOW_CODEC_TOKEN>"
    return None


async def _body(request: Request) -> bytes | None:
    """The request body, or None once it exceeds MAX_CODEC_BODY."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_CODEC_BODY:
            return None
    return bytes(body)


async def _run(request: Request, settings: Settings, operation: str) -> Response:
    cors = cors_headers(request, settings)
    if (why := refusal(request, settings)) is not None:
        return problem(E.UNAUTHORIZED, why, headers=cors)
    body = await _body(request)
    if body is None:
        return problem(E.PAYLOAD_TOO_LARGE, f"the body exceeds {MAX_CODEC_BODY} bytes",
                       headers=cors)
    try:
        payloads = json_format.Parse(body, Payloads(), ignore_unknown_fields=True)
    except (json_format.ParseError, UnicodeDecodeError) as e:
        return problem(E.MALFORMED_JSON, f'expected {{"payloads": [...]}}: {e}', headers=cors)
    codec = data_converter(settings).payload_codec
    assert codec is not None
    try:
        if operation == "encode":
            out = await codec.encode(payloads.payloads)
        else:
            out = await codec.decode(payloads.payloads)
    except PayloadDecryptionError as e:
        return problem(E.BAD_REQUEST, str(e), headers=cors)
    return Response(json_format.MessageToJson(Payloads(payloads=out)),
                    media_type="application/json", headers=cors)


@router.post(PREFIX + "/decode")
async def decode(request: Request, settings: AppSettings) -> Response:
    """Decrypt encrypted payloads; others come back as they are."""
    return await _run(request, settings, "decode")


@router.post(PREFIX + "/encode")
async def encode(request: Request, settings: AppSettings) -> Response:
    """Encrypt payloads (the UI encodes a signal's input through it before sending)."""
    return await _run(request, settings, "encode")


@router.options(PREFIX + "/decode")
@router.options(PREFIX + "/encode")
async def preflight(request: Request, settings: AppSettings) -> Response:
    """The browser's CORS preflight (no credentials are sent with it)."""
    headers = cors_headers(request, settings)
    if "Access-Control-Allow-Origin" in headers:
        headers |= {"Access-Control-Allow-Methods": "POST, OPTIONS",
                    "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                    "Access-Control-Max-Age": "600"}
    return Response(status_code=204, headers=headers)
