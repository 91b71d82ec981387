"""Encrypted payloads: Temporal's history holds ciphertext, not IBANs and emails; the codec
endpoint (for the Temporal UI) decodes them for an operator with the codec token; the key ring
rotates; altered payloads are refused; plain payloads (a signal sent from the UI or the
`temporal` CLI) still reach the workflow."""

from __future__ import annotations

import base64
import secrets
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from starlette.requests import Request
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowHistory
from temporalio.converter import DataConverter

from api.codec import refusal
from contracts.approvals import ApprovalDecision
from payload_codec import (
    DEV_CODEC_KEYS,
    ENCODING,
    KEY_ID,
    EncryptionCodec,
    PayloadDecryptionError,
    new_key,
    parse_key_ring,
)
from settings import Settings
from temporal_client import data_converter
from tests.support import Tenant
from tests.test_orders import fund
from tests.test_withdrawals import onboard, payout_of, wait_state, withdraw

IBAN = "DE89370400440532013000"  # for the codec unit tests
EMAIL = "codec-" + secrets.token_hex(3) + "@example.com"
TOKEN = "codec-" + secrets.token_hex(16)
K2 = new_key()
UI = "http://localhost:8233"


def plain(value: object) -> Payload:
    return DataConverter.default.payload_converter.to_payloads([value])[0]


def all_payloads(history: WorkflowHistory) -> list[Payload]:
    """Every payload in a history's events, at any depth (inputs, results, signals, failures)."""
    found: list[Payload] = []

    def walk(message: object) -> None:
        if isinstance(message, Payload):
            found.append(message)
            return
        for field, value in message.ListFields():  # type: ignore[attr-defined]
            if field.message_type is None:
                continue
            if hasattr(value, "ListFields"):
                walk(value)
                continue
            for item in value.values() if hasattr(value, "values") else value:  # map, list
                if hasattr(item, "ListFields"):
                    walk(item)

    for event in history.events:
        walk(event)
    return found


def as_json(payloads: list[Payload]) -> dict[str, object]:
    """The codec-server protocol's body."""
    return {"payloads": [{"metadata": {k: base64.b64encode(v).decode()
                                       for k, v in p.metadata.items()},
                          "data": base64.b64encode(p.data).decode()} for p in payloads]}


def from_json(body: dict[str, Any]) -> list[Payload]:
    return [Payload(metadata={k: base64.b64decode(v) for k, v in p.get("metadata", {}).items()},
                    data=base64.b64decode(p.get("data", ""))) for p in body["payloads"]]


# -- the codec ------------------------------------------------------------------------------


async def test_encrypts_with_the_first_key_and_decrypts_with_any() -> None:
    old = EncryptionCodec.from_keys(DEV_CODEC_KEYS)
    [written] = await old.encode([plain({"iban": IBAN})])
    assert (written.metadata["encoding"], written.metadata[KEY_ID]) == (ENCODING, b"dev")
    assert IBAN.encode() not in written.data
    [again] = await old.encode([plain({"iban": IBAN})])
    assert again.data[:12] != written.data[:12]  # a fresh nonce per payload
    rotated = EncryptionCodec.from_keys(f"k2:{K2},{DEV_CODEC_KEYS}")
    [read] = await rotated.decode([written])
    assert read == plain({"iban": IBAN})
    [new] = await rotated.encode([plain("x")])
    assert new.metadata[KEY_ID] == b"k2"
    with pytest.raises(PayloadDecryptionError, match="unknown encryption key id 'dev'"):
        await EncryptionCodec.from_keys(f"k2:{K2}").decode([written])  # the old key dropped


async def test_an_altered_payload_is_an_error_not_garbage() -> None:
    codec = EncryptionCodec.from_keys(f"k2:{K2},{DEV_CODEC_KEYS}")
    [sealed] = await codec.encode([plain({"amount": 3000})])
    for i in (0, 12, len(sealed.data) - 1):  # the nonce, the ciphertext, the tag
        flipped = bytearray(sealed.data)
        flipped[i] ^= 1
        with pytest.raises(PayloadDecryptionError, match="altered or truncated"):
            await codec.decode([Payload(metadata=sealed.metadata, data=bytes(flipped))])
    # the same ciphertext presented as another key's: the key id is authenticated
    moved = Payload(metadata={**sealed.metadata, KEY_ID: b"dev"}, data=sealed.data)
    with pytest.raises(PayloadDecryptionError):
        await codec.decode([moved])
    assert await codec.decode([plain("as is")]) == [plain("as is")]


def test_the_key_ring_setting() -> None:
    assert list(parse_key_ring(f" k2:{K2} , {DEV_CODEC_KEYS} ")) == ["k2", "dev"]
    for bad, why in [("", "no key"), ("k1", "expected"), (f"k1:{K2},k1:{K2}", "twice"),
                     ("k1:not base64!", "base64"), ("k1:" + base64.b64encode(b"x" * 16).decode(),
                                                    "32 bytes")]:
        with pytest.raises(ValidationError, match=why) as e:
            Settings(walletflow_codec_keys=bad)  # type: ignore[arg-type]
        assert K2 not in str(e.value)
    s = Settings(walletflow_codec_keys=f"k2:{K2}")  # type: ignore[arg-type]
    assert K2 not in repr(s) and s.masked()["walletflow_codec_keys"] == "**********"


def _request(authorization: str | None = None) -> Request:
    headers = [(b"authorization", authorization.encode())] if authorization else []
    return Request({"type": "http", "method": "POST", "path": "/", "headers": headers})


def test_without_a_token_the_endpoint_is_open_only_over_the_public_development_key() -> None:
    assert refusal(_request(), Settings()) is None  # the dev stack: anyone has that key
    real = Settings(walletflow_codec_keys=f"k2:{K2}")  # type: ignore[arg-type]
    assert "no WALLETFLOW_CODEC_TOKEN" in (refusal(_request(f"Bearer {TOKEN}"), real) or "")
    both = Settings(walletflow_codec_keys=f"k2:{K2},{DEV_CODEC_KEYS}",  # type: ignore[arg-type]
                    walletflow_codec_token="")  # type: ignore[arg-type]
    assert refusal(_request(), both) is not None


# -- through the server ---------------------------------------------------------------------


async def test_history_is_encrypted_and_the_codec_endpoint_decodes_it_for_an_operator(
        http, stripe_ctl, start_api, temporal_env, temporal_address, sessions,
        tenant: Tenant) -> None:
    await fund(sessions, tenant, 10000)
    account = await onboard(http, stripe_ctl, tenant)  # the payee: its id is what history holds
    r = await withdraw(http, tenant, "codec-w-1")
    assert r.status_code == 202, r.text
    r = await http.post("/v1/purchases", json={
        "order_id": "codec-1", "user_id": "codec-user", "email": EMAIL, "amount": "12.00",
        "currency": "EUR"}, headers={**tenant.client, "Idempotency-Key": "codec-p-1"})
    assert r.status_code == 201, r.text
    raw = await Client.connect(temporal_address)  # no codec: what the server and its UI hold
    histories = [await raw.get_workflow_handle(f).fetch_history()
                 for f in (f"{tenant.slug}:withdrawal:codec-w-1", r.json()["flow_id"])]
    # Search attributes are indexed by the server, so they stay plain (typed: tenant, user id,
    # kind, state, amount; never an email or an account), and so do the SDK's patch markers
    # (`{"id": <patch>, "deprecated": …}`): everything else is sealed.
    payloads = [p for h in histories for p in all_payloads(h)
                if b"type" not in p.metadata and not p.data.startswith(b'{"id":')]
    stored = b"".join(e.SerializeToString() for h in histories for e in h.events)
    assert account.encode() not in stored and EMAIL.encode() not in stored
    assert payloads and {p.metadata["encoding"] for p in payloads} == {ENCODING}

    # The endpoint of an API whose ring was rotated since (k2 first, the old key kept).
    api = await start_api(walletflow_codec_keys=f"k2:{K2},{DEV_CODEC_KEYS}",
                          walletflow_codec_token=TOKEN)
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as c:
        url, body = "/v1/temporal-codec/decode", as_json(payloads)
        ui = {"Origin": UI, "X-Namespace": "default"}
        for auth in ({}, {"Authorization": "Bearer wrong"}, tenant.admin):
            r = await c.post(url, json=body, headers={**ui, **auth})
            assert r.status_code == 401, r.text
            assert r.headers["access-control-allow-origin"] == UI  # the UI can show why
        r = await c.post(url, json=body, headers={**ui, "Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200, r.text
        assert r.headers["access-control-allow-origin"] == UI
        decoded = from_json(r.json())
        assert len(decoded) == len(payloads)
        text = b"".join(p.data for p in decoded)
        assert account.encode() in text and EMAIL.encode() in text
        assert {p.metadata["encoding"] for p in decoded} <= {b"json/plain", b"binary/null"}

        # encode writes with the new primary key; decode reads it back
        auth = {"Authorization": f"Bearer {TOKEN}"}
        r = await c.post("/v1/temporal-codec/encode", json=as_json([plain(EMAIL)]), headers=auth)
        [sealed] = from_json(r.json())
        assert sealed.metadata[KEY_ID] == b"k2" and EMAIL.encode() not in sealed.data
        r = await c.post(url, json=as_json([sealed]), headers=auth)
        assert from_json(r.json()) == [plain(EMAIL)]

        # an altered payload: 400, not garbage
        bad = Payload(metadata=sealed.metadata, data=sealed.data[:-1] + b"\0")
        r = await c.post(url, json=as_json([bad]), headers=auth)
        assert (r.status_code, r.json()["code"]) == (400, "bad_request"), r.text

        # CORS preflight: granted to the UI's origin only
        preflight = {"Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "content-type,x-namespace"}
        r = await c.options(url, headers={**preflight, "Origin": UI})
        assert r.status_code == 204 and r.headers["access-control-allow-origin"] == UI
        assert "X-Namespace" in r.headers["access-control-allow-headers"]
        r = await c.options(url, headers={**preflight, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers


async def test_a_plain_signal_from_the_ui_or_the_cli_still_reaches_the_workflow(
        http, stripe_ctl, temporal_address, sessions, tenant: Tenant) -> None:
    """The UI's "Send a Signal" and `temporal workflow signal` send plain JSON: the worker's
    codec passes unencrypted payloads through, so the decision counts."""
    await fund(sessions, tenant, 10000)
    await onboard(http, stripe_ctl, tenant)
    r = await withdraw(http, tenant, "codec-w-2")
    flow_id = r.json()["flow_id"]
    raw = await Client.connect(temporal_address)  # the default converter: plain JSON
    await raw.get_workflow_handle(flow_id).signal(
        "decision", ApprovalDecision("admin-alice", True, "ui-1", "from the UI"))
    s = await wait_state(http, tenant, flow_id, "paying_out")
    assert "admin-alice approved" in s["details"]["decisions"]
    await stripe_ctl.post(f"/_standin/payouts/{(await payout_of(stripe_ctl, flow_id))['id']}/paid")
    await wait_state(http, tenant, flow_id, "paid")


def test_the_converter_is_the_one_the_settings_describe() -> None:
    converter = data_converter(Settings(walletflow_codec_keys=f"k2:{K2}"))  # type: ignore[arg-type]
    assert isinstance(converter.payload_codec, EncryptionCodec)
    assert converter.payload_codec.key_id == "k2"
