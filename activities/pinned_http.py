"""HTTP to checked addresses only: the transport outbound webhooks are sent through.

On every request it resolves the URL's host, refuses the request before connecting unless every
address is public (`contracts.destinations`; a request marked with `ALLOW_PRIVATE` — a tenant in
development mode — skips that check), and then connects to the address it checked: the URL
carries the IP, the `Host` header keeps the name, and TLS sends the name as SNI and checks the
certificate against it. A second DNS answer can't swap the destination (DNS rebinding).

Connections are not kept alive: a pooled TLS connection verified for one name must never carry
another name's request to the same address. Proxy variables (`HTTPS_PROXY`…) are not used."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from contracts.destinations import resolution_refusal

Resolver = Callable[[str, int], Awaitable[list[str]]]

ALLOW_PRIVATE = "walletflow.allow_private"  # request extension: skip the public-address check
MAX_ADDRESSES = 3  # the resolved addresses tried in turn when a connection fails


class DestinationRefused(Exception):
    """The destination is not allowed; nothing was sent. Not an httpx error: never retried."""


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, in the resolver's order, without duplicates."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class PinnedTransport(httpx.AsyncBaseTransport):
    def __init__(self, resolve: Resolver = system_resolver, **transport: Any):
        self.resolve = resolve
        self.inner = httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_keepalive_connections=0), **transport)

    async def addresses(self, request: httpx.Request) -> list[str]:
        """The checked addresses of the request's host (raises DestinationRefused)."""
        host = request.url.raw_host.decode("ascii")
        if _is_literal(host):
            found = [host]
        else:
            try:
                found = await self.resolve(host, request.url.port or _default_port(request))
            except OSError as e:
                raise httpx.ConnectError(f"cannot resolve {host}: {e}", request=request) from e
            if not found:
                raise httpx.ConnectError(f"{host} resolves to no address", request=request)
        if not request.extensions.get(ALLOW_PRIVATE):
            why = resolution_refusal(host, found)
            if why is not None:
                raise DestinationRefused(why)
        return found

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.raw_host.decode("ascii")
        extensions = {k: v for k, v in request.extensions.items() if k != ALLOW_PRIVATE}
        found = await self.addresses(request)
        for address in found[:MAX_ADDRESSES]:
            pinned = httpx.Request(
                request.method, request.url.copy_with(host=address),
                headers=request.headers,  # Host: the name, as the caller's URL had it
                stream=request.stream, extensions={**extensions, "sni_hostname": host})
            try:
                return await self.inner.handle_async_request(pinned)
            except httpx.ConnectError:
                if address == found[:MAX_ADDRESSES][-1]:
                    raise
        raise httpx.ConnectError(f"{host}: no address answered", request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _default_port(request: httpx.Request) -> int:
    return 443 if request.url.scheme == "https" else 80
