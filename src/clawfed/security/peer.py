"""gRPC peer strings (``context.peer()``) turned into the (ip, port) of a connection."""

from __future__ import annotations

import ipaddress
from urllib.parse import unquote


def parse_grpc_peer(peer: str) -> tuple[str, int] | None:
    """``("127.0.0.1", 54321)`` from ``"ipv4:127.0.0.1:54321"``; ``None`` if not an IP peer.

    Also reads ``ipv6:[::1]:p`` and its URL-escaped form ``ipv6:%5B::1%5D:p``; an
    IPv4-mapped IPv6 address comes back as plain IPv4.
    """
    if not isinstance(peer, str):
        return None
    text = unquote(peer)
    scheme, _, rest = text.partition(":")
    if scheme not in ("ipv4", "ipv6"):
        return None
    host, sep, port_text = rest.rpartition(":")
    if not sep or not port_text.isdigit():
        return None
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return normalise_ip(host), int(port_text)
    except ValueError:
        return None


def normalise_ip(host: str) -> str:
    """Canonical text of an IP address; IPv4-mapped IPv6 becomes plain IPv4."""
    addr = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)
