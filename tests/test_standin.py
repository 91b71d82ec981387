"""The Stripe stand-in, driven through the official SDK's real HTTP path, with webhooks checked by
`stripe.Webhook.construct_event` in a tiny receiver app. Everything here runs in-process under
uvicorn on free ports; fixtures are local (prefixed ``standin_``)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import stripe
from fastapi import FastAPI, Request, Response

from stripe_standin import StandinConfig, create_app, sign_payload
from tests.support import LiveServer as Served

SECRET = "whsec_standin_test_current"
OLD_SECRET = "whsec_standin_test_previous"
API_KEY = "sk_test_standin"
FAST_RETRIES = (0.05, 0.05, 0.1)
T = TypeVar("T")


@dataclass
class Receiver:
    """A webhook endpoint that verifies like walletflow does and records what arrived."""

    secret: str = SECRET
    fail_next: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    @property
    def verified(self) -> list[stripe.Event]:
        return [r["event"] for r in self.received if r["event"] is not None]

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            payload = (await request.body()).decode()
            record: dict[str, Any] = {"payload": payload, "headers": dict(request.headers),
                                      "event": None, "error": None}
            self.received.append(record)
            if self.fail_next > 0:
                self.fail_next -= 1
                record["error"] = "refused"
                return Response(status_code=500)
            try:
                record["event"] = stripe.Webhook.construct_event(
                    payload, request.headers.get("stripe-signature"), self.secret, tolerance=300)
            except stripe.SignatureVerificationError as e:
                record["error"] = str(e)
                return Response(status_code=400)
            return Response(status_code=200)

        return app


async def verified(receiver: Receiver) -> list[stripe.Event]:
    return receiver.verified


async def eventually(probe: Callable[[], Awaitable[T]], check: Callable[[T], bool],
                     within: float = 5.0) -> T:
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s; last value: {value!r}")
        await asyncio.sleep(0.02)


def pi_params(flow_id: str, amount: int = 1000, currency: str = "EUR") -> dict[str, Any]:
    return {"amount": amount, "currency": currency.lower(), "description": "points",
            "metadata": {"flow_id": flow_id, "tenant_id": "tenant-1"},
            "automatic_payment_methods": {"enabled": True}}


# --- fixtures -------------------------------------------------------------------------------------

Starter = Callable[..., Awaitable[Served]]


@pytest.fixture
async def standin_start() -> AsyncIterator[Starter]:
    """Start any ASGI app under uvicorn; everything started is stopped at teardown."""
    servers: list[Served] = []

    async def start(app: Any) -> Served:
        server = await Served(app).start()
        servers.append(server)
        return server

    yield start
    await asyncio.gather(*(server.stop() for server in servers))


@pytest.fixture
async def standin_receiver(standin_start: Starter) -> Receiver:
    receiver = Receiver()
    receiver.url = f"{(await standin_start(receiver.app())).url}/hook"
    return receiver


@pytest.fixture
def standin_config(standin_receiver: Receiver) -> StandinConfig:
    return StandinConfig(webhook_url=standin_receiver.url, webhook_secrets=[SECRET],
                         webhook_retry_delays=FAST_RETRIES)


@pytest.fixture
async def standin_server(standin_start: Starter, standin_config: StandinConfig) -> Served:
    return await standin_start(create_app(standin_config))


SdkFactory = Callable[..., stripe.StripeClient]


@pytest.fixture
async def standin_sdks() -> AsyncIterator[SdkFactory]:
    """Official SDK clients as walletflow builds them (HTTPX, no SDK retries); closed after."""
    http_clients: list[stripe.HTTPXClient] = []

    def make(url: str, timeout: float = 10.0, key: str = API_KEY) -> stripe.StripeClient:
        http_client = stripe.HTTPXClient(timeout=timeout)
        http_clients.append(http_client)
        return stripe.StripeClient(key, base_addresses={"api": url}, http_client=http_client,
                                   max_network_retries=0)

    yield make
    for http_client in http_clients:
        await http_client.close_async()


@pytest.fixture
def standin_sdk(standin_server: Served, standin_sdks: SdkFactory) -> stripe.StripeClient:
    return standin_sdks(standin_server.url)


@pytest.fixture
async def standin_ctl(standin_server: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=standin_server.url, timeout=10) as client:
        yield client


async def add_fault(ctl: httpx.AsyncClient, **spec: Any) -> dict[str, Any]:
    r = await ctl.post("/_standin/faults", json=spec)
    assert r.status_code == 201, r.text
    return r.json()


async def flow_pis(ctl: httpx.AsyncClient, flow_id: str) -> list[dict[str, Any]]:
    r = await ctl.get("/_standin/payment_intents", params={"metadata[flow_id]": flow_id})
    return r.json()["data"]


# --- the Stripe API through the SDK ---------------------------------------------------------------

async def test_create_matches_stripe_shape_and_replays_idempotently(
        standin_sdk: stripe.StripeClient, standin_ctl: httpx.AsyncClient) -> None:
    pis = standin_sdk.v1.payment_intents
    first = await pis.create_async(pi_params("flow-a", currency="EUR"),
                                   options={"idempotency_key": "key-a"})
    again = await pis.create_async(pi_params("flow-a", currency="EUR"),
                                   options={"idempotency_key": "key-a"})

    assert re.fullmatch(r"pi_[A-Za-z0-9]{24}", first.id)
    assert again.id == first.id
    assert first.object == "payment_intent"
    assert (first.amount, first.amount_received, first.currency) == (1000, 0, "eur")
    assert first.status == "requires_payment_method"
    assert first.client_secret.startswith(f"{first.id}_secret_")
    assert first.metadata.to_dict() == {"flow_id": "flow-a", "tenant_id": "tenant-1"}
    assert first.automatic_payment_methods.enabled is True
    assert first.livemode is False and first.canceled_at is None
    assert first.last_payment_error is None and first.latest_charge is None
    assert first.description == "points"
    assert abs(first.created - time.time()) < 60
    assert first.last_response.headers["Request-Id"].startswith("req_")
    assert "Idempotent-Replayed" not in first.last_response.headers
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert again.last_response.headers["Request-Id"] != first.last_response.headers["Request-Id"]

    assert len(await flow_pis(standin_ctl, "flow-a")) == 1
    stats = (await standin_ctl.get("/_standin/stats")).json()
    assert stats["payment_intents.create"] == {"calls": 2, "faults": 0}


async def test_same_key_with_other_params_is_an_idempotency_error(
        standin_sdk: stripe.StripeClient) -> None:
    pis = standin_sdk.v1.payment_intents
    await pis.create_async(pi_params("flow-b"), options={"idempotency_key": "key-b"})
    with pytest.raises(stripe.IdempotencyError) as caught:
        await pis.create_async(pi_params("flow-b", amount=2000),
                               options={"idempotency_key": "key-b"})
    assert caught.value.http_status == 400
    assert caught.value.json_body["error"]["type"] == "idempotency_error"


async def test_concurrent_creates_with_one_key_make_one_payment_intent(
        standin_sdk: stripe.StripeClient, standin_ctl: httpx.AsyncClient) -> None:
    results = await asyncio.gather(*(
        standin_sdk.v1.payment_intents.create_async(pi_params("flow-c"),
                                                    options={"idempotency_key": "key-c"})
        for _ in range(8)))
    assert len({pi.id for pi in results}) == 1
    assert len(await flow_pis(standin_ctl, "flow-c")) == 1


async def test_retrieve_cancel_and_cancel_again(
        standin_sdk: stripe.StripeClient, standin_receiver: Receiver) -> None:
    pis = standin_sdk.v1.payment_intents
    created = await pis.create_async(pi_params("flow-d"), options={"idempotency_key": "key-d"})
    fetched = await pis.retrieve_async(created.id)
    assert fetched.id == created.id and fetched.status == "requires_payment_method"

    canceled = await pis.cancel_async(created.id)
    assert canceled.status == "canceled" and canceled.canceled_at is not None
    assert (await pis.retrieve_async(created.id)).status == "canceled"

    with pytest.raises(stripe.InvalidRequestError) as caught:
        await pis.cancel_async(created.id)
    assert caught.value.code == "payment_intent_unexpected_state"
    assert caught.value.http_status == 400
    assert caught.value.json_body["error"]["payment_intent"]["status"] == "canceled"

    events = await eventually(lambda: verified(standin_receiver),
                              lambda evs: len(evs) >= 1)
    assert [e.type for e in events] == ["payment_intent.canceled"]
    assert events[0].data.object.id == created.id
    assert events[0].request.id == canceled.last_response.headers["Request-Id"]


async def test_cancel_after_success_is_refused_with_the_state(
        standin_sdk: stripe.StripeClient, standin_ctl: httpx.AsyncClient) -> None:
    pi = await standin_sdk.v1.payment_intents.create_async(pi_params("flow-e"))
    r = await standin_ctl.post(f"/_standin/payment_intents/{pi.id}/succeed")
    assert r.status_code == 200
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await standin_sdk.v1.payment_intents.cancel_async(pi.id)
    assert caught.value.code == "payment_intent_unexpected_state"
    assert caught.value.json_body["error"]["payment_intent"]["status"] == "succeeded"
    assert (await standin_ctl.post(f"/_standin/payment_intents/{pi.id}/fail")).status_code == 409


async def test_unknown_payment_intent_is_resource_missing(
        standin_sdk: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await standin_sdk.v1.payment_intents.retrieve_async("pi_doesnotexist")
    assert caught.value.http_status == 404
    assert caught.value.code == "resource_missing"


@pytest.mark.parametrize(("amount", "code"), [(100_000_000, "amount_too_large"),
                                               (0, "amount_too_small")])
async def test_amount_out_of_range_is_rejected_and_not_recorded(
        standin_sdk: stripe.StripeClient, amount: int, code: str) -> None:
    pis = standin_sdk.v1.payment_intents
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await pis.create_async(pi_params("flow-f", amount=amount),
                               options={"idempotency_key": "key-f"})
    assert (caught.value.http_status, caught.value.code, caught.value.param) == (
        400, code, "amount")
    # A validation failure is not saved under the key (as with Stripe): a fixed request works.
    pi = await pis.create_async(pi_params("flow-f", amount=99_999_999),
                                options={"idempotency_key": "key-f"})
    assert pi.amount == 99_999_999


async def test_wrong_or_missing_api_key_is_401(standin_server: Served,
                                               standin_sdks: SdkFactory) -> None:
    client = standin_sdks(standin_server.url, key="pk_test_public")
    with pytest.raises(stripe.AuthenticationError) as caught:
        await client.v1.payment_intents.create_async(pi_params("flow-g"))
    assert caught.value.http_status == 401
    async with httpx.AsyncClient(base_url=standin_server.url) as raw:
        r = await raw.post("/v1/payment_intents", data={"amount": "100", "currency": "eur"})
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"]["type"] == "invalid_request_error"
    stats = (await raw_stats(standin_server))["payment_intents.create"]
    assert stats["calls"] == 0


async def raw_stats(server: Served) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url) as raw:
        return (await raw.get("/_standin/stats")).json()


# --- API faults -----------------------------------------------------------------------------------

async def test_error_500_fault_then_retry_does_the_work_once(
        standin_sdk: stripe.StripeClient, standin_ctl: httpx.AsyncClient) -> None:
    await add_fault(standin_ctl, operation="payment_intents.create", mode="error_500")
    with pytest.raises(stripe.APIError) as caught:
        await standin_sdk.v1.payment_intents.create_async(pi_params("flow-h"),
                                                          options={"idempotency_key": "key-h"})
    assert caught.value.http_status == 500
    assert await flow_pis(standin_ctl, "flow-h") == []

    pi = await standin_sdk.v1.payment_intents.create_async(pi_params("flow-h"),
                                                           options={"idempotency_key": "key-h"})
    assert "Idempotent-Replayed" not in pi.last_response.headers
    assert [p["id"] for p in await flow_pis(standin_ctl, "flow-h")] == [pi.id]
    stats = (await standin_ctl.get("/_standin/stats")).json()
    assert stats["payment_intents.create"] == {"calls": 2, "faults": 1}
    assert (await standin_ctl.get("/_standin/stats", params={"flow_id": "flow-h"})).json()[
        "payment_intents.create"] == {"calls": 2, "faults": 1}


async def test_error_400_fault_on_retrieve_only_for_the_matching_flow(
        standin_sdk: stripe.StripeClient, standin_ctl: httpx.AsyncClient) -> None:
    pis = standin_sdk.v1.payment_intents
    mine = await pis.create_async(pi_params("flow-i"))
    other = await pis.create_async(pi_params("flow-other"))
    await add_fault(standin_ctl, operation="payment_intents.retrieve", mode="error_400",
                    count=2, match={"flow_id": "flow-i"})

    assert (await pis.retrieve_async(other.id)).id == other.id
    for _ in range(2):
        with pytest.raises(stripe.InvalidRequestError) as caught:
            await pis.retrieve_async(mine.id)
        assert caught.value.code == "parameter_invalid"
    assert (await pis.retrieve_async(mine.id)).id == mine.id
    assert (await standin_ctl.get("/_standin/faults")).json()["data"] == []


async def test_timeout_fault_makes_the_client_time_out(
        standin_server: Served, standin_ctl: httpx.AsyncClient, standin_sdks: SdkFactory) -> None:
    # only the faulted call is impatient: the others must not time out on a busy machine
    patient = standin_sdks(standin_server.url)
    impatient = standin_sdks(standin_server.url, timeout=0.3)
    pi = await patient.v1.payment_intents.create_async(pi_params("flow-j"))
    await add_fault(standin_ctl, operation="payment_intents.cancel", mode="timeout",
                    delay_seconds=3.0)
    started = time.monotonic()
    with pytest.raises(stripe.APIConnectionError):
        await impatient.v1.payment_intents.cancel_async(pi.id)
    assert time.monotonic() - started < 2.0
    assert (await patient.v1.payment_intents.retrieve_async(pi.id)).status == (
        "requires_payment_method")
    assert (await patient.v1.payment_intents.cancel_async(pi.id)).status == "canceled"


async def test_delay_fault_does_the_work_so_a_retry_replays_it(
        standin_server: Served, standin_ctl: httpx.AsyncClient, standin_sdks: SdkFactory) -> None:
    impatient = standin_sdks(standin_server.url, timeout=0.3)
    await add_fault(standin_ctl, operation="payment_intents.create", mode="delay",
                    delay_seconds=3.0)
    with pytest.raises(stripe.APIConnectionError):
        await impatient.v1.payment_intents.create_async(pi_params("flow-k"),
                                                        options={"idempotency_key": "key-k"})
    retried = await standin_sdks(standin_server.url).v1.payment_intents.create_async(
        pi_params("flow-k"), options={"idempotency_key": "key-k"})
    assert retried.last_response.headers["Idempotent-Replayed"] == "true"
    assert [p["id"] for p in await flow_pis(standin_ctl, "flow-k")] == [retried.id]


async def test_fault_spec_is_validated(standin_ctl: httpx.AsyncClient) -> None:
    r = await standin_ctl.post("/_standin/faults", json={"operation": "webhook",
                                                         "mode": "error_500"})
    assert r.status_code == 422
    r = await standin_ctl.post("/_standin/faults", json={"operation": "payment_intents.create",
                                                         "mode": "drop"})
    assert r.status_code == 422


# --- webhooks -------------------------------------------------------------------------------------

async def test_succeed_delivers_a_verifiable_signed_event(
        standin_sdk: stripe.StripeClient, standin_ctl: httpx.AsyncClient,
        standin_receiver: Receiver) -> None:
    pi = await standin_sdk.v1.payment_intents.create_async(pi_params("flow-l", amount=2500))
    r = await standin_ctl.post(f"/_standin/payment_intents/{pi.id}/succeed")
    body = r.json()
    assert body["payment_intent"]["status"] == "succeeded"
    assert body["payment_intent"]["amount_received"] == 2500
    assert body["event"]["type"] == "payment_intent.succeeded"

    events = await eventually(lambda: verified(standin_receiver), bool)
    event = events[0]
    assert event.id == body["event"]["id"]
    assert event.type == "payment_intent.succeeded"
    assert event.data.object.id == pi.id and event.data.object.status == "succeeded"
    assert event.data.object.metadata.flow_id == "flow-l"
    assert event.api_version == "2024-06-20" and event.livemode is False
    headers = standin_receiver.received[0]["headers"]
    assert headers["content-type"].startswith("application/json")
    assert headers["user-agent"].startswith("Stripe/1.0")

    deliveries = await eventually(
        lambda: standin_ctl.get("/_standin/deliveries", params={"event_id": event.id}),
        lambda resp: len(resp.json()["data"]) == 1)
    assert deliveries.json()["data"][0]["status_code"] == 200
    assert (await standin_sdk.v1.payment_intents.retrieve_async(pi.id)).status == "succeeded"


async def test_fail_emits_payment_failed_and_the_intent_stays_payable(
        standin_sdk: stripe.StripeClient, standin_ctl: httpx.AsyncClient,
        standin_receiver: Receiver) -> None:
    pi = await standin_sdk.v1.payment_intents.create_async(pi_params("flow-m"))
    await standin_ctl.post(f"/_standin/payment_intents/{pi.id}/fail")
    failed = await standin_sdk.v1.payment_intents.retrieve_async(pi.id)
    assert failed.status == "requires_payment_method"
    assert failed.last_payment_error.code == "card_declined"
    events = await eventually(lambda: verified(standin_receiver), bool)
    assert events[0].type == "payment_intent.payment_failed"
    assert events[0].data.object.last_payment_error.message == "Your card was declined."

    await standin_ctl.post(f"/_standin/payment_intents/{pi.id}/succeed")
    succeeded = await standin_sdk.v1.payment_intents.retrieve_async(pi.id)
    assert succeeded.status == "succeeded" and succeeded.last_payment_error is None
    listed = (await standin_ctl.get("/_standin/events", params={"payment_intent": pi.id})).json()
    assert [e["type"] for e in listed["data"]] == ["payment_intent.payment_failed",
                                                   "payment_intent.succeeded"]


async def test_duplicate_fault_delivers_the_same_event_several_times(
        standin_sdk: stripe.StripeClient, standin_ctl: httpx.AsyncClient,
        standin_receiver: Receiver) -> None:
    pi = await standin_sdk.v1.payment_intents.create_async(pi_params("flow-n"))
    await add_fault(standin_ctl, operation="webhook", mode="duplicate", copies=3,
                    match={"flow_id": "flow-n"})
    await standin_ctl.post(f"/_standin/payment_intents/{pi.id}/succeed")
    events = await eventually(lambda: verified(standin_receiver),
                              lambda evs: len(evs) >= 3)
    assert len({e.id for e in events}) == 1
    assert len({r["payload"] for r in standin_receiver.received}) == 1
    assert (await standin_ctl.get("/_standin/stats")).json()["webhook"] == {"calls": 1,
                                                                            "faults": 1}


async def test_drop_fault_loses_the_webhook_until_redelivered(
        standin_sdk: stripe.StripeClient, standin_ctl: httpx.AsyncClient,
        standin_receiver: Receiver) -> None:
    pi = await standin_sdk.v1.payment_intents.create_async(pi_params("flow-o"))
    await add_fault(standin_ctl, operation="webhook", mode="drop")
    body = (await standin_ctl.post(f"/_standin/payment_intents/{pi.id}/succeed")).json()
    await asyncio.sleep(0.3)
    assert standin_receiver.received == []
    events = (await standin_ctl.get("/_standin/events", params={"payment_intent": pi.id})).json()
    assert [e["id"] for e in events["data"]] == [body["event"]["id"]]

    r = await standin_ctl.post(f"/_standin/events/{body['event']['id']}/deliver")
    assert r.json()["delivery"]["status_code"] == 200
    assert [e.id for e in standin_receiver.verified] == [body["event"]["id"]]


async def test_failed_deliveries_are_retried(
        standin_sdk: stripe.StripeClient, standin_ctl: httpx.AsyncClient,
        standin_receiver: Receiver) -> None:
    standin_receiver.fail_next = 2
    pi = await standin_sdk.v1.payment_intents.create_async(pi_params("flow-p"))
    event_id = (await standin_ctl.post(f"/_standin/payment_intents/{pi.id}/succeed")).json()[
        "event"]["id"]
    await eventually(lambda: verified(standin_receiver), bool)
    attempts = (await standin_ctl.get("/_standin/deliveries",
                                      params={"event_id": event_id})).json()["data"]
    assert [(a["attempt"], a["status_code"], a["ok"]) for a in attempts] == [
        (1, 500, False), (2, 500, False), (3, 200, True)]


async def test_unreachable_endpoint_is_retried_then_given_up(
        standin_start: Starter, standin_sdks: SdkFactory) -> None:
    dead = await standin_start(FastAPI())
    dead_url = f"{dead.url}/hook"
    await dead.stop()
    server = await standin_start(create_app(StandinConfig(
        webhook_url=dead_url, webhook_secrets=[SECRET], webhook_retry_delays=(0.01, 0.01))))
    async with httpx.AsyncClient(base_url=server.url) as ctl:
        client = standin_sdks(server.url)
        pi = await client.v1.payment_intents.create_async(pi_params("flow-q"))
        event_id = (await ctl.post(f"/_standin/payment_intents/{pi.id}/succeed")).json()[
            "event"]["id"]
        attempts = await eventually(
            lambda: ctl.get("/_standin/deliveries", params={"event_id": event_id}),
            lambda r: len(r.json()["data"]) == 3)
        assert all(a["status_code"] is None and a["error"] for a in attempts.json()["data"])
        await asyncio.sleep(0.1)
        assert len((await ctl.get("/_standin/deliveries")).json()["data"]) == 3


async def test_rotation_signs_with_every_secret(
        standin_start: Starter, standin_receiver: Receiver, standin_sdks: SdkFactory) -> None:
    server = await standin_start(create_app(StandinConfig(
        webhook_url=standin_receiver.url, webhook_secrets=[SECRET, OLD_SECRET],
        webhook_retry_delays=FAST_RETRIES)))
    client = standin_sdks(server.url)
    pi = await client.v1.payment_intents.create_async(pi_params("flow-r"))
    await client.v1.payment_intents.cancel_async(pi.id)
    await eventually(lambda: verified(standin_receiver), bool)
    delivered = standin_receiver.received[0]
    header = delivered["headers"]["stripe-signature"]
    assert header.count("v1=") == 2
    for secret in (SECRET, OLD_SECRET):
        event = stripe.Webhook.construct_event(delivered["payload"], header, secret)
        assert event.type == "payment_intent.canceled"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(delivered["payload"], header, "whsec_someone_else")


async def test_signed_endpoint_for_replays_and_forgeries(
        standin_sdk: stripe.StripeClient, standin_ctl: httpx.AsyncClient,
        standin_receiver: Receiver) -> None:
    pi = await standin_sdk.v1.payment_intents.create_async(pi_params("flow-s"))
    event_id = (await standin_ctl.post(f"/_standin/payment_intents/{pi.id}/succeed")).json()[
        "event"]["id"]
    await eventually(lambda: verified(standin_receiver), bool)

    fresh = (await standin_ctl.get(f"/_standin/events/{event_id}/signed")).json()
    assert fresh["payload"] == standin_receiver.received[0]["payload"]
    assert json.loads(fresh["payload"])["id"] == event_id
    assert stripe.Webhook.construct_event(
        fresh["payload"], fresh["headers"]["Stripe-Signature"], SECRET).id == event_id

    stale = (await standin_ctl.get(f"/_standin/events/{event_id}/signed",
                                   params={"timestamp": int(time.time()) - 3600})).json()
    with pytest.raises(stripe.SignatureVerificationError, match="tolerance"):
        stripe.Webhook.construct_event(stale["payload"], stale["headers"]["Stripe-Signature"],
                                       SECRET, tolerance=300)

    forged = (await standin_ctl.get(f"/_standin/events/{event_id}/signed",
                                    params={"secret": "whsec_attacker"})).json()
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(forged["payload"], forged["headers"]["Stripe-Signature"],
                                       SECRET)
    assert (await standin_ctl.get("/_standin/events/evt_nope/signed")).status_code == 404


async def test_config_can_redirect_deliveries_at_runtime(
        standin_start: Starter, standin_sdk: stripe.StripeClient,
        standin_ctl: httpx.AsyncClient, standin_receiver: Receiver) -> None:
    other = Receiver(secret="whsec_other")
    other.url = f"{(await standin_start(other.app())).url}/hook"
    r = await standin_ctl.put("/_standin/config", json={"webhook_url": other.url,
                                                        "webhook_secrets": ["whsec_other"]})
    assert r.json() == {"webhook_url": other.url, "webhook_secrets": ["whsec_other"]}
    pi = await standin_sdk.v1.payment_intents.create_async(pi_params("flow-t"))
    await standin_ctl.post(f"/_standin/payment_intents/{pi.id}/succeed")
    await eventually(lambda: verified(other), bool)
    assert standin_receiver.received == []

    await standin_ctl.put("/_standin/config", json={"webhook_url": None})
    pi2 = await standin_sdk.v1.payment_intents.create_async(pi_params("flow-t2"))
    event = (await standin_ctl.post(f"/_standin/payment_intents/{pi2.id}/succeed")).json()["event"]
    assert event["pending_webhooks"] == 0
    await asyncio.sleep(0.2)
    assert len(other.received) == 1


# --- checkout page, persistence, isolation, signing -----------------------------------------------

async def test_checkout_page_pays_and_declines(
        standin_sdk: stripe.StripeClient, standin_ctl: httpx.AsyncClient,
        standin_receiver: Receiver) -> None:
    pi = await standin_sdk.v1.payment_intents.create_async(pi_params("flow-u", amount=1999))
    page = await standin_ctl.get(f"/checkout/{pi.id}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "19.99 EUR" in page.text and "requires_payment_method" in page.text
    assert f"action='/checkout/{pi.id}/pay'" in page.text
    assert f"action='/checkout/{pi.id}/decline'" in page.text

    declined = await standin_ctl.post(f"/checkout/{pi.id}/decline")
    assert declined.status_code == 200 and "declined" in declined.text
    paid = await standin_ctl.post(f"/checkout/{pi.id}/pay")
    assert paid.status_code == 200 and "succeeded" in paid.text
    assert (await standin_ctl.post(f"/checkout/{pi.id}/pay")).status_code == 409
    assert "<button" not in (await standin_ctl.get(f"/checkout/{pi.id}")).text
    events = await eventually(lambda: verified(standin_receiver),
                              lambda evs: len(evs) >= 2)
    assert sorted(e.type for e in events) == ["payment_intent.payment_failed",
                                              "payment_intent.succeeded"]
    assert (await standin_ctl.get("/checkout/pi_nope")).status_code == 404


async def test_state_file_survives_a_restart(
        standin_start: Starter, standin_sdks: SdkFactory, standin_config: StandinConfig,
        tmp_path: Path) -> None:
    config = replace(standin_config, state_file=str(tmp_path / "standin.json"))
    first = await standin_start(create_app(config))
    client = standin_sdks(first.url)
    pi = await client.v1.payment_intents.create_async(pi_params("flow-v"),
                                                      options={"idempotency_key": "key-v"})
    await client.v1.payment_intents.cancel_async(pi.id)
    await first.stop()

    second = await standin_start(create_app(config))
    client = standin_sdks(second.url)
    assert (await client.v1.payment_intents.retrieve_async(pi.id)).status == "canceled"
    replayed = await client.v1.payment_intents.create_async(pi_params("flow-v"),
                                                            options={"idempotency_key": "key-v"})
    assert replayed.id == pi.id
    assert replayed.last_response.headers["Idempotent-Replayed"] == "true"
    assert replayed.status == "requires_payment_method"  # the stored response, as Stripe does
    async with httpx.AsyncClient(base_url=second.url) as ctl:
        events = (await ctl.get("/_standin/events", params={"payment_intent": pi.id})).json()
        assert [e["type"] for e in events["data"]] == ["payment_intent.canceled"]
        signed = (await ctl.get(f"/_standin/events/{events['data'][0]['id']}/signed")).json()
        assert json.loads(signed["payload"]) == events["data"][0]


async def test_two_apps_share_no_state(standin_start: Starter, standin_sdks: SdkFactory) -> None:
    config = StandinConfig(webhook_url=None, webhook_secrets=[SECRET])
    one, two = create_app(config), create_app(config)
    a, b = await standin_start(one), await standin_start(two)
    pi = await standin_sdks(a.url).v1.payment_intents.create_async(pi_params("flow-w"),
                                                          options={"idempotency_key": "key-w"})
    with pytest.raises(stripe.InvalidRequestError):
        await standin_sdks(b.url).v1.payment_intents.retrieve_async(pi.id)
    other = await standin_sdks(b.url).v1.payment_intents.create_async(
        pi_params("flow-w", amount=5), options={"idempotency_key": "key-w"})
    assert other.id != pi.id
    async with httpx.AsyncClient(base_url=a.url) as ctl:
        await ctl.put("/_standin/config", json={"webhook_url": "http://127.0.0.1:9/x"})
    assert config.webhook_url is None
    assert two.state.standin.config.webhook_url is None


async def test_unrecognized_stripe_url_is_a_stripe_404(standin_server: Served) -> None:
    async with httpx.AsyncClient(base_url=standin_server.url) as raw:
        r = await raw.get("/v1/customers/cus_1", headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert r.headers["request-id"].startswith("req_")


def test_sign_payload_matches_stripes_verifier() -> None:
    payload = json.dumps({"id": "evt_1", "object": "event"})
    header = sign_payload(payload, [SECRET, OLD_SECRET], timestamp=1_700_000_000)
    assert header.startswith("t=1700000000,v1=") and header.count(",v1=") == 2
    expected = stripe.WebhookSignature._compute_signature(f"1700000000.{payload}", OLD_SECRET)
    assert header.endswith(f",v1={expected}")
    assert stripe.WebhookSignature.verify_header(payload, sign_payload(payload, [SECRET]), SECRET)
    with pytest.raises(ValueError):
        sign_payload(payload, [])


# --- refunds --------------------------------------------------------------------------------------

def refund_params(pi_id: str, flow_id: str | None, amount: int | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"payment_intent": pi_id}
    if amount is not None:
        params["amount"] = amount
    if flow_id is not None:
        params["metadata"] = {"flow_id": flow_id, "tenant_id": "tenant-1"}
    return params


async def paid_pi(sdk: stripe.StripeClient, ctl: httpx.AsyncClient, flow_id: str,
                  amount: int = 1000) -> stripe.PaymentIntent:
    pi = await sdk.v1.payment_intents.create_async(pi_params(flow_id, amount=amount))
    r = await ctl.post(f"/_standin/payment_intents/{pi.id}/succeed")
    assert r.status_code == 200, r.text
    return pi


async def refunds_of(ctl: httpx.AsyncClient, **filters: str) -> list[dict[str, Any]]:
    r = await ctl.get("/_standin/refunds", params=filters)
    assert r.status_code == 200, r.text
    return r.json()["data"]


async def refund_events(receiver: Receiver, count: int) -> list[stripe.Event]:
    def only_refund_events(events: list[stripe.Event]) -> list[stripe.Event]:
        return [e for e in events if not e.type.startswith("payment_intent.")]

    events = await eventually(lambda: verified(receiver),
                              lambda evs: len(only_refund_events(evs)) >= count)
    return only_refund_events(events)


async def test_refund_create_matches_stripe_shape_and_replays_idempotently(
        standin_sdk: stripe.StripeClient, standin_ctl: httpx.AsyncClient) -> None:
    pi = await paid_pi(standin_sdk, standin_ctl, "flow-ra")
    refunds = standin_sdk.v1.refunds
    first = await refunds.create_async(refund_params(pi.id, "flow-ra", 400),
                                       options={"idempotency_key": "key-ra"})
    again = await refunds.create_async(refund_params(pi.id, "flow-ra", 400),
                                       options={"idempotency_key": "key-ra"})

    assert isinstance(first, stripe.Refund)
    assert re.fullmatch(r"re_[A-Za-z0-9]{24}", first.id)
    assert again.id == first.id
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.last_response.headers
    paid = await standin_sdk.v1.payment_intents.retrieve_async(pi.id)
    assert (first.object, first.amount, first.currency) == ("refund", 400, "eur")
    assert (first.payment_intent, first.charge) == (pi.id, paid.latest_charge)
    assert first.charge.startswith("ch_")
    assert (first.status, first.failure_reason, first.reason) == ("pending", None, None)
    assert first.metadata.to_dict() == {"flow_id": "flow-ra", "tenant_id": "tenant-1"}
    assert abs(first.created - time.time()) < 60
    assert paid.amount_received == 1000  # a refund does not change the intent

    fetched = await refunds.retrieve_async(first.id)
    assert fetched.id == first.id and fetched.status == "pending"
    assert [r["id"] for r in await refunds_of(standin_ctl, payment_intent=pi.id)] == [first.id]
    assert [r["id"] for r in await refunds_of(standin_ctl, flow_id="flow-ra")] == [first.id]
    stats = (await standin_ctl.get("/_standin/stats")).json()
    assert stats["refunds.create"] == {"calls": 2, "faults": 0}
    assert stats["refunds.retrieve"] == {"calls": 1, "faults": 0}

    with pytest.raises(stripe.IdempotencyError):
        await refunds.create_async(refund_params(pi.id, "flow-ra", 500),
                                   options={"idempotency_key": "key-ra"})
    assert len(await refunds_of(standin_ctl, payment_intent=pi.id)) == 1


async def test_refund_needs_a_known_succeeded_payment_intent(
        standin_sdk: stripe.StripeClient, standin_ctl: httpx.AsyncClient) -> None:
    refunds = standin_sdk.v1.refunds
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await refunds.create_async(refund_params("pi_doesnotexist", "flow-rb"))
    assert (caught.value.http_status, caught.value.code, caught.value.param) == (
        400, "resource_missing", "payment_intent")

    unpaid = await standin_sdk.v1.payment_intents.create_async(pi_params("flow-rb"))
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await refunds.create_async(refund_params(unpaid.id, "flow-rb"))
    assert caught.value.http_status == 400
    assert caught.value.code == "charge_not_refundable"

    with pytest.raises(stripe.InvalidRequestError) as caught:
        await refunds.retrieve_async("re_doesnotexist")
    assert (caught.value.http_status, caught.value.code) == (404, "resource_missing")
    assert await refunds_of(standin_ctl) == []


async def test_over_refund_is_refused(standin_sdk: stripe.StripeClient,
                                      standin_ctl: httpx.AsyncClient) -> None:
    pi = await paid_pi(standin_sdk, standin_ctl, "flow-rc", amount=1000)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await standin_sdk.v1.refunds.create_async(refund_params(pi.id, "flow-rc", 1001),
                                                  options={"idempotency_key": "key-rc"})
    assert (caught.value.http_status, caught.value.code, caught.value.param) == (
        400, "amount_too_large", "amount")
    assert caught.value.json_body["error"]["type"] == "invalid_request_error"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await standin_sdk.v1.refunds.create_async(refund_params(pi.id, "flow-rc", 0))
    assert caught.value.code == "parameter_invalid_integer"
    assert await refunds_of(standin_ctl, payment_intent=pi.id) == []


async def test_partial_refunds_up_to_the_full_amount_then_refused(
        standin_sdk: stripe.StripeClient, standin_ctl: httpx.AsyncClient) -> None:
    pi = await paid_pi(standin_sdk, standin_ctl, "flow-rd", amount=1000)
    refunds = standin_sdk.v1.refunds
    first = await refunds.create_async(refund_params(pi.id, "flow-rd", 300),
                                       options={"idempotency_key": "key-rd-1"})
    with pytest.raises(stripe.InvalidRequestError) as caught:  # pending refunds hold the amount
        await refunds.create_async(refund_params(pi.id, "flow-rd", 701))
    assert caught.value.code == "amount_too_large"
    rest = await refunds.create_async(refund_params(pi.id, "flow-rd"),  # defaults to what's left
                                      options={"idempotency_key": "key-rd-2"})
    assert (first.amount, rest.amount) == (300, 700)

    for amount in (1, None):
        with pytest.raises(stripe.InvalidRequestError) as caught:
            await refunds.create_async(refund_params(pi.id, "flow-rd", amount),
                                       options={"idempotency_key": f"key-rd-3-{amount}"})
        assert caught.value.code == "charge_already_refunded"
    assert [r["amount"] for r in await refunds_of(standin_ctl, payment_intent=pi.id)] == [300, 700]


async def test_succeeded_refunds_emit_refund_updated_and_charge_refunded(
        standin_sdk: stripe.StripeClient, standin_ctl: httpx.AsyncClient,
        standin_receiver: Receiver) -> None:
    pi = await paid_pi(standin_sdk, standin_ctl, "flow-re", amount=1000)
    refunds = standin_sdk.v1.refunds
    part = await refunds.create_async(refund_params(pi.id, "flow-re", 400))
    rest = await refunds.create_async(refund_params(pi.id, "flow-re", 600))

    r = await standin_ctl.post(f"/_standin/refunds/{part.id}/succeed")
    assert r.status_code == 200, r.text
    assert r.json()["refund"]["status"] == "succeeded"
    assert [e["type"] for e in r.json()["events"]] == ["refund.updated", "charge.refunded"]
    events = await refund_events(standin_receiver, 2)
    assert [e.type for e in events] == ["refund.updated", "charge.refunded"]
    updated, charged = events
    assert updated.data.object.object == "refund" and updated.data.object.id == part.id
    assert updated.data.object.status == "succeeded"
    assert updated.data.object.metadata.flow_id == "flow-re"
    charge = charged.data.object
    assert isinstance(charge, stripe.Charge)
    assert (charge.id, charge.payment_intent) == (part.charge, pi.id)
    assert (charge.amount, charge.amount_refunded, charge.refunded) == (1000, 400, False)
    assert charge.metadata.flow_id == "flow-re" and charge.currency == "eur"
    assert {(x.id, x.status) for x in charge.refunds.data} == {(part.id, "succeeded"),
                                                              (rest.id, "pending")}
    assert (await refunds.retrieve_async(part.id)).status == "succeeded"

    await standin_ctl.post(f"/_standin/refunds/{rest.id}/succeed")
    events = await refund_events(standin_receiver, 4)
    final = events[3].data.object
    assert events[3].type == "charge.refunded"
    assert (final.amount_refunded, final.refunded) == (1000, True)
    assert (await standin_ctl.post(f"/_standin/refunds/{rest.id}/fail")).status_code == 409
    assert (await standin_ctl.post("/_standin/refunds/re_nope/succeed")).status_code == 404
    listed = (await standin_ctl.get("/_standin/events", params={"payment_intent": pi.id})).json()
    assert [e["type"] for e in listed["data"]] == [
        "payment_intent.succeeded", "refund.updated", "charge.refunded", "refund.updated",
        "charge.refunded"]


async def test_failed_refund_emits_refund_updated_and_frees_the_amount(
        standin_sdk: stripe.StripeClient, standin_ctl: httpx.AsyncClient,
        standin_receiver: Receiver) -> None:
    pi = await paid_pi(standin_sdk, standin_ctl, "flow-rf", amount=1000)
    refund = await standin_sdk.v1.refunds.create_async(refund_params(pi.id, "flow-rf"))
    assert refund.amount == 1000
    r = await standin_ctl.post(f"/_standin/refunds/{refund.id}/fail")
    assert r.status_code == 200, r.text

    events = await refund_events(standin_receiver, 2)
    assert [e.type for e in events] == ["refund.updated", "refund.failed"]
    for event in events:
        assert event.data.object.id == refund.id
        assert event.data.object.status == "failed"
        assert event.data.object.failure_reason == "expired_or_canceled_card"
        assert event.data.object.metadata.flow_id == "flow-rf"
    fetched = await standin_sdk.v1.refunds.retrieve_async(refund.id)
    assert (fetched.status, fetched.failure_reason) == ("failed", "expired_or_canceled_card")
    assert (await refunds_of(standin_ctl, flow_id="flow-rf", status="failed"))[0]["id"] == (
        refund.id)

    again = await standin_sdk.v1.refunds.create_async(refund_params(pi.id, "flow-rf"))
    assert again.amount == 1000  # a failed refund holds nothing back


async def test_error_500_fault_on_refund_create_then_retry_refunds_once(
        standin_sdk: stripe.StripeClient, standin_ctl: httpx.AsyncClient) -> None:
    pi = await paid_pi(standin_sdk, standin_ctl, "flow-rg")
    await add_fault(standin_ctl, operation="refunds.create", mode="error_500",
                    match={"flow_id": "flow-rg"})
    with pytest.raises(stripe.APIError) as caught:
        await standin_sdk.v1.refunds.create_async(refund_params(pi.id, "flow-rg", 1000),
                                                  options={"idempotency_key": "key-rg"})
    assert caught.value.http_status == 500
    assert await refunds_of(standin_ctl, payment_intent=pi.id) == []

    refund = await standin_sdk.v1.refunds.create_async(refund_params(pi.id, "flow-rg", 1000),
                                                       options={"idempotency_key": "key-rg"})
    assert "Idempotent-Replayed" not in refund.last_response.headers
    replay = await standin_sdk.v1.refunds.create_async(refund_params(pi.id, "flow-rg", 1000),
                                                       options={"idempotency_key": "key-rg"})
    assert replay.id == refund.id
    assert [r["id"] for r in await refunds_of(standin_ctl, payment_intent=pi.id)] == [refund.id]
    stats = (await standin_ctl.get("/_standin/stats", params={"flow_id": "flow-rg"})).json()
    assert stats["refunds.create"] == {"calls": 3, "faults": 1}


async def test_refund_faults_match_the_payment_intents_flow_without_metadata(
        standin_sdk: stripe.StripeClient, standin_ctl: httpx.AsyncClient) -> None:
    pi = await paid_pi(standin_sdk, standin_ctl, "flow-rh")
    await add_fault(standin_ctl, operation="refunds.create", mode="error_400",
                    match={"flow_id": "flow-rh"})
    await add_fault(standin_ctl, operation="refunds.retrieve", mode="error_500",
                    match={"flow_id": "flow-rh"})
    with pytest.raises(stripe.InvalidRequestError):
        await standin_sdk.v1.refunds.create_async(refund_params(pi.id, None, 100))
    refund = await standin_sdk.v1.refunds.create_async(refund_params(pi.id, None, 100))
    assert refund.metadata.to_dict() == {}
    with pytest.raises(stripe.APIError):
        await standin_sdk.v1.refunds.retrieve_async(refund.id)
    assert (await standin_sdk.v1.refunds.retrieve_async(refund.id)).id == refund.id
    assert [r["id"] for r in await refunds_of(standin_ctl, flow_id="flow-rh")] == [refund.id]


async def test_auto_succeed_refunds_resolves_right_after_creation(
        standin_start: Starter, standin_sdks: SdkFactory, standin_config: StandinConfig,
        standin_receiver: Receiver) -> None:
    server = await standin_start(create_app(replace(standin_config, auto_succeed_refunds=True)))
    client = standin_sdks(server.url)
    async with httpx.AsyncClient(base_url=server.url) as ctl:
        pi = await paid_pi(client, ctl, "flow-ri")
        refund = await client.v1.refunds.create_async(refund_params(pi.id, "flow-ri", 250),
                                                      options={"idempotency_key": "key-ri"})
        assert refund.status == "pending"  # the answer to the create; resolved right after
        assert (await client.v1.refunds.retrieve_async(refund.id)).status == "succeeded"
        events = await refund_events(standin_receiver, 2)
        assert [e.type for e in events] == ["refund.updated", "charge.refunded"]
        assert events[1].data.object.amount_refunded == 250
        assert (await ctl.post(f"/_standin/refunds/{refund.id}/succeed")).status_code == 409


async def test_refunds_survive_a_restart(
        standin_start: Starter, standin_sdks: SdkFactory, standin_config: StandinConfig,
        tmp_path: Path) -> None:
    config = replace(standin_config, state_file=str(tmp_path / "standin.json"))
    first = await standin_start(create_app(config))
    async with httpx.AsyncClient(base_url=first.url) as ctl:
        pi = await paid_pi(standin_sdks(first.url), ctl, "flow-rj")
        refund = await standin_sdks(first.url).v1.refunds.create_async(
            refund_params(pi.id, "flow-rj", 600), options={"idempotency_key": "key-rj"})
        await ctl.post(f"/_standin/refunds/{refund.id}/succeed")
    await first.stop()

    second = await standin_start(create_app(config))
    client = standin_sdks(second.url)
    assert (await client.v1.refunds.retrieve_async(refund.id)).status == "succeeded"
    replayed = await client.v1.refunds.create_async(refund_params(pi.id, "flow-rj", 600),
                                                    options={"idempotency_key": "key-rj"})
    assert replayed.id == refund.id
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.refunds.create_async(refund_params(pi.id, "flow-rj", 401))
    assert caught.value.code == "amount_too_large"
    async with httpx.AsyncClient(base_url=second.url) as ctl:
        charged = (await ctl.get("/_standin/events", params={"type": "charge.refunded"})).json()
        assert [e["data"]["object"]["amount_refunded"] for e in charged["data"]] == [600]


def test_cli_flag_turns_on_auto_succeeded_refunds() -> None:
    from stripe_standin.__main__ import config_from_args, parse_args

    assert config_from_args(parse_args(["--auto-succeed-refunds"])).auto_succeed_refunds is True
    assert config_from_args(parse_args([])).auto_succeed_refunds is False


# --- payouts --------------------------------------------------------------------------------------

def payout_params(flow_id: str, amount: int = 5000, beneficiary: str = "Ada Lovelace",
                  destination: str = "ba_standin_test") -> dict[str, Any]:
    return {"amount": amount, "currency": "eur", "method": "standard",
            "destination": destination, "description": f"payout for {flow_id}",
            "metadata": {"flow_id": flow_id, "tenant_id": "tenant-1",
                         "payout_method": "bank_transfer", "beneficiary": beneficiary}}


async def payouts_of(ctl: httpx.AsyncClient, **filters: str) -> list[dict[str, Any]]:
    r = await ctl.get("/_standin/payouts", params=filters)
    assert r.status_code == 200, r.text
    return r.json()["data"]


async def payout_calls(ctl: httpx.AsyncClient, flow_id: str) -> list[dict[str, Any]]:
    r = await ctl.get("/_standin/calls", params={"operation": "payouts.create",
                                                  "flow_id": flow_id})
    assert r.status_code == 200, r.text
    return r.json()["data"]


async def payout_events(receiver: Receiver, count: int) -> list[stripe.Event]:
    def only_payout_events(events: list[stripe.Event]) -> list[stripe.Event]:
        return [e for e in events if e.type.startswith("payout.")]

    events = await eventually(lambda: verified(receiver),
                              lambda evs: len(only_payout_events(evs)) >= count)
    return only_payout_events(events)


async def test_payout_create_matches_stripe_shape_and_replays_idempotently(
        standin_sdk: stripe.StripeClient, standin_ctl: httpx.AsyncClient) -> None:
    payouts = standin_sdk.v1.payouts
    first = await payouts.create_async(payout_params("flow-pa"),
                                       options={"idempotency_key": "key-pa"})
    again = await payouts.create_async(payout_params("flow-pa"),
                                       options={"idempotency_key": "key-pa"})

    assert isinstance(first, stripe.Payout)
    assert re.fullmatch(r"po_[A-Za-z0-9]{24}", first.id)
    assert again.id == first.id
    assert "Idempotent-Replayed" not in first.last_response.headers
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert (first.object, first.amount, first.currency) == ("payout", 5000, "eur")
    assert (first.status, first.method, first.type) == ("pending", "standard", "bank_account")
    assert first.destination == "ba_standin_test"
    assert first.description == "payout for flow-pa"
    assert (first.failure_code, first.failure_message) == (None, None)
    assert first.livemode is False and first.automatic is False
    assert abs(first.created - time.time()) < 60
    assert first.arrival_date == first.created + 2 * 24 * 3600
    assert first.metadata.to_dict() == {"flow_id": "flow-pa", "tenant_id": "tenant-1",
                                        "payout_method": "bank_transfer",
                                        "beneficiary": "Ada Lovelace"}

    fetched = await payouts.retrieve_async(first.id)
    assert (fetched.id, fetched.status) == (first.id, "pending")
    assert [p["id"] for p in await payouts_of(standin_ctl, flow_id="flow-pa")] == [first.id]
    stats = (await standin_ctl.get("/_standin/stats", params={"flow_id": "flow-pa"})).json()
    assert stats["payouts.create"] == {"calls": 2, "faults": 0}
    assert stats["payouts.retrieve"] == {"calls": 1, "faults": 0}

    calls = await payout_calls(standin_ctl, "flow-pa")
    assert [(c["operation"], c["idempotency_key"], c["flow_id"], c["status_code"],
             c["replayed"]) for c in calls] == [
        ("payouts.create", "key-pa", "flow-pa", 200, False),
        ("payouts.create", "key-pa", "flow-pa", 200, True)]
    assert calls[0]["at"] <= calls[1]["at"] and abs(calls[0]["at"] - time.time()) < 60
    assert calls[1]["request_id"] == again.last_response.headers["Request-Id"]
    retrieves = (await standin_ctl.get("/_standin/calls",
                                       params={"operation": "payouts.retrieve"})).json()["data"]
    assert [(c["idempotency_key"], c["flow_id"]) for c in retrieves] == [(None, "flow-pa")]


async def test_payout_same_key_with_other_params_is_an_idempotency_error(
        standin_sdk: stripe.StripeClient, standin_ctl: httpx.AsyncClient) -> None:
    payouts = standin_sdk.v1.payouts
    await payouts.create_async(payout_params("flow-pb"), options={"idempotency_key": "key-pb"})
    with pytest.raises(stripe.IdempotencyError) as caught:
        await payouts.create_async(payout_params("flow-pb", amount=6000),
                                   options={"idempotency_key": "key-pb"})
    assert caught.value.http_status == 400
    assert caught.value.json_body["error"]["type"] == "idempotency_error"
    assert len(await payouts_of(standin_ctl, flow_id="flow-pb")) == 1
    assert [c["status_code"] for c in await payout_calls(standin_ctl, "flow-pb")] == [200, 400]


async def test_paid_payout_emits_payout_paid(
        standin_sdk: stripe.StripeClient, standin_ctl: httpx.AsyncClient,
        standin_receiver: Receiver) -> None:
    payout = await standin_sdk.v1.payouts.create_async(payout_params("flow-pc"))
    r = await standin_ctl.post(f"/_standin/payouts/{payout.id}/paid")
    assert r.status_code == 200, r.text
    assert r.json()["payout"]["status"] == "paid"
    assert [e["type"] for e in r.json()["events"]] == ["payout.updated", "payout.paid"]

    events = await payout_events(standin_receiver, 2)
    assert [e.type for e in events] == ["payout.updated", "payout.paid"]
    paid = next(r for r in standin_receiver.received
                if r["event"] is not None and r["event"].type == "payout.paid")
    event = stripe.Webhook.construct_event(paid["payload"], paid["headers"]["stripe-signature"],
                                           SECRET)
    assert isinstance(event.data.object, stripe.Payout)
    assert (event.data.object.id, event.data.object.status) == (payout.id, "paid")
    assert event.data.object.metadata.flow_id == "flow-pc"
    assert event.data.object.failure_code is None
    assert (await standin_sdk.v1.payouts.retrieve_async(payout.id)).status == "paid"
    assert (await standin_ctl.post(f"/_standin/payouts/{payout.id}/fail")).status_code == 409
    assert (await standin_ctl.post("/_standin/payouts/po_nope/paid")).status_code == 404
    listed = (await standin_ctl.get("/_standin/events", params={"flow_id": "flow-pc"})).json()
    assert [e["type"] for e in listed["data"]] == ["payout.updated", "payout.paid"]


async def test_failed_payout_emits_payout_failed_with_failure_code(
        standin_sdk: stripe.StripeClient, standin_ctl: httpx.AsyncClient,
        standin_receiver: Receiver) -> None:
    payout = await standin_sdk.v1.payouts.create_async(payout_params("flow-pd"))
    r = await standin_ctl.post(f"/_standin/payouts/{payout.id}/fail")
    assert r.status_code == 200, r.text

    events = await payout_events(standin_receiver, 2)
    assert [e.type for e in events] == ["payout.updated", "payout.failed"]
    for event in events:
        assert event.data.object.id == payout.id
        assert event.data.object.status == "failed"
        assert event.data.object.failure_code == "account_closed"
        assert event.data.object.failure_message == "The bank account has been closed"
        assert event.data.object.metadata.flow_id == "flow-pd"
    fetched = await standin_sdk.v1.payouts.retrieve_async(payout.id)
    assert (fetched.status, fetched.failure_code) == ("failed", "account_closed")
    assert [p["id"] for p in await payouts_of(standin_ctl, flow_id="flow-pd",
                                              status="failed")] == [payout.id]
    assert (await standin_ctl.post(f"/_standin/payouts/{payout.id}/paid")).status_code == 409


async def test_error_500_fault_on_payout_create_then_retry_pays_out_once(
        standin_sdk: stripe.StripeClient, standin_ctl: httpx.AsyncClient) -> None:
    await add_fault(standin_ctl, operation="payouts.create", mode="error_500",
                    match={"flow_id": "flow-pe"})
    payouts = standin_sdk.v1.payouts
    with pytest.raises(stripe.APIError) as caught:
        await payouts.create_async(payout_params("flow-pe"), options={"idempotency_key": "key-pe"})
    assert caught.value.http_status == 500
    assert await payouts_of(standin_ctl, flow_id="flow-pe") == []

    payout = await payouts.create_async(payout_params("flow-pe"),
                                        options={"idempotency_key": "key-pe"})
    assert "Idempotent-Replayed" not in payout.last_response.headers
    assert [p["id"] for p in await payouts_of(standin_ctl, flow_id="flow-pe")] == [payout.id]
    stats = (await standin_ctl.get("/_standin/stats", params={"flow_id": "flow-pe"})).json()
    assert stats["payouts.create"] == {"calls": 2, "faults": 1}
    calls = await payout_calls(standin_ctl, "flow-pe")
    assert [(c["status_code"], c["replayed"], c["fault"]) for c in calls] == [
        (500, False, "error_500"), (200, False, None)]


@pytest.mark.parametrize(("amount", "code"), [(100_000_000, "amount_too_large"),
                                               (0, "amount_too_small")])
async def test_payout_amount_out_of_range_is_rejected(
        standin_sdk: stripe.StripeClient, standin_ctl: httpx.AsyncClient, amount: int,
        code: str) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await standin_sdk.v1.payouts.create_async(payout_params("flow-pf", amount=amount),
                                                  options={"idempotency_key": "key-pf"})
    assert (caught.value.http_status, caught.value.code, caught.value.param) == (
        400, code, "amount")
    assert await payouts_of(standin_ctl, flow_id="flow-pf") == []
    payout = await standin_sdk.v1.payouts.create_async(
        payout_params("flow-pf", amount=99_999_999), options={"idempotency_key": "key-pf"})
    assert payout.amount == 99_999_999


async def test_unknown_payout_is_resource_missing(standin_sdk: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await standin_sdk.v1.payouts.retrieve_async("po_doesnotexist")
    assert (caught.value.http_status, caught.value.code) == (404, "resource_missing")


async def test_auto_pay_payouts_and_payouts_survive_a_restart(
        standin_start: Starter, standin_sdks: SdkFactory, standin_config: StandinConfig,
        standin_receiver: Receiver, tmp_path: Path) -> None:
    config = replace(standin_config, auto_pay_payouts=True,
                     state_file=str(tmp_path / "standin.json"))
    first = await standin_start(create_app(config))
    payout = await standin_sdks(first.url).v1.payouts.create_async(
        payout_params("flow-pg"), options={"idempotency_key": "key-pg"})
    assert payout.status == "pending"  # the answer to the create; paid right after
    events = await payout_events(standin_receiver, 2)
    assert [e.type for e in events] == ["payout.updated", "payout.paid"]
    await first.stop()

    second = await standin_start(create_app(config))
    client = standin_sdks(second.url)
    assert (await client.v1.payouts.retrieve_async(payout.id)).status == "paid"
    replayed = await client.v1.payouts.create_async(payout_params("flow-pg"),
                                                    options={"idempotency_key": "key-pg"})
    assert replayed.id == payout.id
    assert replayed.last_response.headers["Idempotent-Replayed"] == "true"


def test_cli_flag_turns_on_auto_paid_payouts() -> None:
    from stripe_standin.__main__ import config_from_args, parse_args

    assert config_from_args(parse_args(["--auto-pay-payouts"])).auto_pay_payouts is True
    assert config_from_args(parse_args([])).auto_pay_payouts is False
