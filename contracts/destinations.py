"""Where an outbound webhook may go: the rules the API applies when an endpoint is registered and
the worker applies again on every delivery, just before it connects (a name that resolved to a
public address at registration may resolve to a private one later).

Outside development mode a destination must be `https` and every address its host resolves to
must be globally routable: not private, loopback, link-local, shared (100.64.0.0/10), multicast,
reserved or unspecified — also when an IPv6 address embeds such an IPv4 one (IPv4-mapped, NAT64,
6to4, Teredo). Pure functions; resolving the name is the caller's I/O."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (a packet to it may reach them)."""
    found = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
    if ip in _NAT64:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return [v4 for v4 in found if v4 is not None]


def _is_public(ip: IPAddress) -> bool:
    return (ip.is_global and not ip.is_multicast and not ip.is_reserved
            and not ip.is_unspecified)


def address_refusal(address: str) -> str | None:
    """None when `address` is a globally routable IP address; otherwise why it is refused."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        if not all(_is_public(v4) for v4 in _embedded_ipv4(ip)):
            return f"{address} carries a non-public IPv4 address"
        if ip.ipv4_mapped is not None or ip in _NAT64:
            return None  # another spelling of the public IPv4 address just checked
    return None if _is_public(ip) else f"{address} is not a public address"


def resolution_refusal(host: str, addresses: Iterable[str]) -> str | None:
    """None when `host` resolved to at least one address and every one of them is public."""
    addresses = list(addresses)
    if not addresses:
        return f"{host} resolves to no address"
    for address in addresses:
        why = address_refusal(address)
        if why is not None:
            return why if address == host else f"{host} resolves to {address}: {why}"
    return None


def url_refusal(url: str, development: bool) -> str | None:
    """None when the URL's form is acceptable: https (http too in development mode), a host,
    and — outside development mode — not a literal non-public address. The names it resolves
    to are checked separately (`resolution_refusal`)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a malformed port)
    except ValueError as e:
        return f"malformed URL: {e}"
    allowed = ("https", "http") if development else ("https",)
    if parts.scheme not in allowed:
        return ("the URL must use https (http needs development mode)"
                if parts.scheme == "http" else f"the URL must use {' or '.join(allowed)}")
    if not parts.hostname:
        return "the URL has no host"
    if development:
        return None
    try:
        ipaddress.ip_address(parts.hostname)
    except ValueError:
        return None  # a name: its addresses are checked when it is resolved
    return address_refusal(parts.hostname)
