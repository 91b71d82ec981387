"""Outbound webhooks go only where they may: https and public addresses outside development mode,
checked on registration and again, at connect time, on every delivery (DNS rebinding); the
connection goes to the address that was checked; redirects are never followed."""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from activities.pinned_http import ALLOW_PRIVATE, DestinationRefused, PinnedTransport
from contracts.destinations import address_refusal, url_refusal
from tests.support import LiveServer, Tenant, eventually
from tests.test_webhooks_out import campaign_event, dev_mode

# Ranges no webhook may reach outside development mode.
NON_GLOBAL = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/29", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "::/128", "::1/128", "100::/64", "2001:db8::/32", "fc00::/7",
    "fe80::/10", "ff00::/8")]
NON_GLOBAL_V4 = [n for n in NON_GLOBAL if n.version == 4]


def _in(networks: list[Any]) -> st.SearchStrategy[Any]:
    return st.sampled_from(networks).flatmap(lambda n: st.integers(
        int(n.network_address), int(n.broadcast_address)).map(
        lambda i: ipaddress.ip_address(i) if n.version == 4 else ipaddress.IPv6Address(i)))


def _v6_spellings(v4: ipaddress.IPv4Address) -> list[str]:
    """IPv6 addresses that carry `v4`: IPv4-mapped, NAT64, 6to4."""
    return [f"::ffff:{v4}", f"64:ff9b::{v4}",
            str(ipaddress.IPv6Address((0x2002 << 112) | (int(v4) << 80) | 1))]


def _url(ip: Any, scheme: str = "https") -> str:
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    return f"{scheme}://{host}:8443/hook"


@given(_in(NON_GLOBAL))
def test_no_address_in_a_non_global_range_passes(ip: Any) -> None:
    assert address_refusal(str(ip)) is not None
    assert url_refusal(_url(ip), development=False) is not None
    assert url_refusal(_url(ip), development=True) is None  # local receivers while developing


@given(_in(NON_GLOBAL_V4))
def test_no_ipv6_spelling_of_a_non_global_ipv4_address_passes(v4: ipaddress.IPv4Address) -> None:
    for spelling in _v6_spellings(v4):
        assert address_refusal(spelling) is not None, spelling


@given(st.one_of(st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address),
                 st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)))
def test_an_accepted_address_is_global_and_in_no_refused_range(ip: Any) -> None:
    if address_refusal(str(ip)) is None:
        assert not any(ip in n for n in NON_GLOBAL if n.version == ip.version)
        assert (ip.ipv4_mapped or ip).is_global if ip.version == 6 else ip.is_global


def test_public_addresses_and_their_ipv6_spellings_pass() -> None:
    for a in ("8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111",
              *_v6_spellings(ipaddress.IPv4Address("8.8.8.8"))):
        assert address_refusal(a) is None, a
    assert url_refusal("https://hooks.example.com/x", development=False) is None
    assert url_refusal("http://93.184.216.34/x", development=False) is not None  # https only
    assert url_refusal("http://93.184.216.34/x", development=True) is None


async def test_registration_refuses_http_and_non_global_literals(http, sessions, tenant) -> None:
    refused = ["http://93.184.216.34/hook", "https://100.64.0.1/hook", "https://10.0.0.1/hook",
               "https://127.0.0.1:9/hook", "https://[::1]/hook", "https://169.254.169.254/x",
               "https://[::ffff:10.0.0.1]/hook", "https://localhost/hook"]
    for url in refused:
        r = await http.post("/v1/webhook-endpoints", json={"url": url}, headers=tenant.admin)
        assert (r.status_code, r.json()["code"]) == (422, "url_not_allowed"), (url, r.text)
    r = await http.post("/v1/webhook-endpoints", json={"url": "https://93.184.216.34/hook"},
                        headers=tenant.admin)
    assert r.status_code == 201, r.text
    async with sessions.begin() as s:  # registered only: this tenant never sends off the machine
        await s.execute(text("UPDATE webhook_endpoints SET disabled_at = now() "
                             "WHERE tenant_id = :t"), {"t": tenant.id})
    await dev_mode(sessions, tenant)  # development mode: local http receivers are fine
    for url in ("http://127.0.0.1:9/hook", "https://[::1]:9/hook"):
        r = await http.post("/v1/webhook-endpoints", json={"url": url}, headers=tenant.admin)
        assert r.status_code == 201, (url, r.text)


@pytest.fixture
async def listener() -> AsyncIterator[tuple[list[int], int]]:
    """A TCP port on 127.0.0.1 that counts the connections it is offered."""
    seen: list[int] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(1)
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield seen, server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_each_delivery_checks_its_destination_before_connecting(
        http, sessions, tenant, listener) -> None:
    """Endpoints registered while their names were public now resolve to loopback, or are plain
    http: every delivery is refused before any connection, and the delivery is failed with the
    reason. Only loopback addresses appear here, so even a broken guard sends nothing off this
    machine; the other non-global ranges are covered by the address checks above."""
    seen, port = listener
    urls = {"we_loop": f"https://localhost:{port}/hook",
            "we_lo2": f"https://127.0.0.2:{port}/hook",
            "we_v6": f"https://[::ffff:127.0.0.1]:{port}/hook",
            "we_http": f"http://localhost:{port}/h"}
    async with sessions.begin() as s:
        for name, url in urls.items():
            await s.execute(text(
                "INSERT INTO webhook_endpoints (id, tenant_id, url, event_types, secret) VALUES "
                "(:i, :t, :u, '{campaign.closed}', 'whsec_eA==')"),
                {"i": f"{name}_{tenant.slug}", "t": tenant.id, "u": url})
    await campaign_event(http, sessions, tenant, "ssrf")
    rows = await eventually(lambda: _deliveries(sessions, tenant),
                            lambda rs: len(rs) == 4 and all(r[1] == "failed" for r in rs),
                            within=40)
    errors = {endpoint.split("_")[1]: (attempts, error) for endpoint, _, attempts, error in rows}
    assert all(attempts == [None] for attempts, _ in errors.values()), errors
    assert all(e.startswith("destination refused: ") for _, e in errors.values()), errors
    assert "not a public address" in errors["loop"][1]
    assert "127.0.0.2 is not a public address" in errors["lo2"][1]
    assert "non-public" in errors["v6"][1]
    assert "https" in errors["http"][1]
    assert seen == []  # nothing ever connected


async def _deliveries(sessions, tenant: Tenant) -> list[tuple[str, str, list, str]]:
    async with sessions() as s:
        return [tuple(r) for r in (await s.execute(text(
            "SELECT d.endpoint_id, d.status, (SELECT array_agg(a.status_code) FROM "
            "webhook_attempts a WHERE a.delivery_id = d.id), d.last_error "
            "FROM webhook_deliveries d WHERE d.tenant_id = :t"), {"t": tenant.id})).all()]


async def test_a_redirect_is_a_failed_attempt_and_never_followed(http, sessions, tenant) -> None:
    hits: list[str] = []
    app = FastAPI()

    @app.post("/{path}")
    async def hook(path: str) -> Response:
        hits.append(path)
        return Response(status_code=307, headers={"location": "/elsewhere"})

    server = await LiveServer(app).start()
    try:
        await dev_mode(sessions, tenant)
        r = await http.post("/v1/webhook-endpoints", headers=tenant.admin, json={
            "url": server.url + "/hook", "event_types": ["campaign.closed"]})
        assert r.status_code == 201, r.text
        await campaign_event(http, sessions, tenant, "redirect")
        [row] = await eventually(lambda: _deliveries(sessions, tenant),
                                 lambda rs: len(rs) == 1 and rs[0][2] is not None)
        assert (row[1], row[2][0], row[3]) == ("pending", 307,
                                               "redirect to /elsewhere not followed"), row
        assert "elsewhere" not in hits and hits[0] == "hook"
    finally:
        async with sessions.begin() as s:  # the next retry ends the delivery
            await s.execute(text("UPDATE webhook_endpoints SET disabled_at = now() "
                                 "WHERE tenant_id = :t"), {"t": tenant.id})
        await server.stop()


class FakeDns:
    def __init__(self, answers: dict[str, list[str]]):
        self.answers = answers
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        return self.answers[host]


def _echo_app(seen: list[dict[str, str]]) -> FastAPI:
    app = FastAPI()

    @app.post("/hook")
    async def hook(request: Request) -> Response:
        seen.append(dict(request.headers))
        return Response(status_code=204)

    return app


async def test_the_connection_goes_to_the_checked_address_with_the_name_as_host() -> None:
    seen: list[dict[str, str]] = []
    server = await LiveServer(_echo_app(seen)).start()
    port = int(server.url.rsplit(":", 1)[1])
    dns = FakeDns({"hooks.example": ["127.0.0.1"]})
    async with httpx.AsyncClient(transport=PinnedTransport(dns), timeout=5) as client:
        # hooks.example exists only in this resolver: reaching it means the checked address
        # was used, not a second lookup.
        r = await client.post(f"http://hooks.example:{port}/hook",
                              extensions={ALLOW_PRIVATE: True})
        assert r.status_code == 204 and seen[0]["host"] == f"hooks.example:{port}"
        with pytest.raises(DestinationRefused, match="is not a public address"):
            await client.post(f"https://hooks.example:{port}/hook")
    assert len(seen) == 1 and dns.asked == ["hooks.example"] * 2
    await server.stop()


async def test_a_name_with_any_non_public_address_is_refused_before_connecting() -> None:
    """A name answering with a public and a private address (DNS rebinding) is refused as a
    whole. Checked without sending anything: the transport's address check alone."""
    dns = FakeDns({"rebound.example": ["93.184.216.34", "10.0.0.1"],
                   "shared.example": ["100.64.0.1"]})
    transport = PinnedTransport(dns)
    for name in ("rebound.example", "shared.example"):
        with pytest.raises(DestinationRefused, match="is not a public address"):
            await transport.addresses(httpx.Request("POST", f"https://{name}/hook"))
    assert dns.asked == ["rebound.example", "shared.example"]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if not shutil.which("openssl"):
        pytest.skip("no openssl binary to make a certificate")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", d / "key.pem", "-out", d / "cert.pem", "-subj",
                    "/CN=hooks.example", "-addext", "subjectAltName=DNS:hooks.example"],
                   check=True, capture_output=True)
    return d / "cert.pem", d / "key.pem"


async def test_tls_checks_the_certificate_against_the_name(certificate) -> None:
    cert, key = certificate
    seen: list[dict[str, str]] = []
    server = LiveServer(None)
    server.server = uvicorn.Server(uvicorn.Config(
        _echo_app(seen), host="127.0.0.1", port=0, log_level="warning",
        ssl_certfile=str(cert), ssl_keyfile=str(key)))
    await server.start()
    port = int(server.url.rsplit(":", 1)[1])
    trust = ssl.create_default_context(cafile=str(cert))
    dns = FakeDns({"hooks.example": ["127.0.0.1"], "other.example": ["127.0.0.1"]})
    try:
        async with httpx.AsyncClient(transport=PinnedTransport(dns, verify=trust)) as client:
            r = await client.post(f"https://hooks.example:{port}/hook",
                                  extensions={ALLOW_PRIVATE: True})
            assert r.status_code == 204 and seen[0]["host"] == f"hooks.example:{port}"
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.post(f"https://other.example:{port}/hook",
                                  extensions={ALLOW_PRIVATE: True})
    finally:
        await server.stop()
    assert len(seen) == 1
