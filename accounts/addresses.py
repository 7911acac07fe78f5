"""Where a request comes from, for the per-address limits (log-in lockout, sign-ups).

Under Daphne, Django's REMOTE_ADDR is the ASGI scope's client: the peer of the TCP
connection, unless Daphne runs with --proxy-headers, which replaces it with the *leftmost*
X-Forwarded-For entry. The leftmost entry is whatever the client wrote, so behind a proxy
(BEHIND_PROXY=true) we read the rightmost one instead: the address our proxy saw and
appended. That assumes one proxy in front, the one that sets X-Forwarded-Proto.

IPv6 clients are counted per /64 network: one subscriber usually holds a whole /64, and
counting single addresses would give them 2^64 fresh tries.
"""

import ipaddress

from django.conf import settings
from django.http import HttpRequest

IPV6_PREFIX_LENGTH = 64


def client_address(request: HttpRequest) -> str | None:
    """The address the limits count `request` against, or None when it has none we can
    read (those requests then share one count)."""
    peer = request.META.get("REMOTE_ADDR", "")
    if settings.BEHIND_PROXY:
        hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        hops = [hop for hop in hops if hop]
        if hops:
            return counted_as(hops[-1])
    return counted_as(peer)


def counted_as(address: str) -> str | None:
    """The bucket `address` falls in: itself for IPv4, its /64 network for IPv6."""
    try:
        ip = ipaddress.ip_address(_without_port(address))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        network = ipaddress.IPv6Network((ip, IPV6_PREFIX_LENGTH), strict=False)
        return str(network.network_address)
    return str(ip)


def _without_port(address: str) -> str:
    """Some proxies append a port: "203.0.113.7:51234", "[2001:db8::1]:51234"."""
    if address.startswith("["):
        return address[1:].split("]", 1)[0]
    if address.count(":") == 1:
        return address.split(":", 1)[0]
    return address
