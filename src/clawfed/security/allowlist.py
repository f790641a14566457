"""``IpAllowlist``: which peer IP addresses may open a connection at all."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from clawfed.core.errors import ConfigError

#: Loopback only: the safe default until an administrator opens the federation up.
DEFAULT_ALLOWLIST: tuple[str, ...] = ("127.0.0.0/8", "::1/128")

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class IpAllowlist:
    """A set of IPv4 / IPv6 networks; a peer may connect only from inside one of them.

    IPv4-mapped IPv6 addresses (``::ffff:127.0.0.1``, as a dual-stack listener reports
    IPv4 peers) are checked as the IPv4 address they carry.

    Parameters
    ----------
    cidrs
        Networks in CIDR notation (``"10.20.0.0/16"``, ``"fd00::/8"``); a bare address
        means that single host. Host bits must be zero.
    """

    __slots__ = ("_cidrs", "_v4", "_v6")

    def __init__(self, cidrs: Iterable[str] = DEFAULT_ALLOWLIST) -> None:
        if isinstance(cidrs, str | bytes):
            raise ConfigError(
                f"the allowlist must be a list of CIDR strings, got the single string {cidrs!r}"
            )
        v4: list[ipaddress.IPv4Network] = []
        v6: list[ipaddress.IPv6Network] = []
        names: list[str] = []
        for entry in cidrs:
            net = _parse_network(entry)
            if isinstance(net, ipaddress.IPv4Network):
                v4.append(net)
            else:
                v6.append(net)
            names.append(str(net))
        if not names:
            raise ConfigError(
                "the allowlist is empty, so no peer could ever connect; give at least one "
                "network, e.g. 127.0.0.0/8"
            )
        self._cidrs = tuple(names)
        self._v4 = tuple(v4)
        self._v6 = tuple(v6)

    @property
    def cidrs(self) -> tuple[str, ...]:
        """The networks, normalised, in the order given."""
        return self._cidrs

    def allows(self, ip: str) -> bool:
        """Whether ``ip`` lies in one of the networks; anything not an IP address is refused."""
        text = ip.split("%", 1)[0] if isinstance(ip, str) else ""
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address):
            mapped = addr.ipv4_mapped
            if mapped is not None and any(mapped in net for net in self._v4):
                return True
            return any(addr in net for net in self._v6)
        return any(addr in net for net in self._v4)

    def __repr__(self) -> str:
        return f"IpAllowlist({list(self._cidrs)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IpAllowlist):
            return NotImplemented
        return set(self._v4) == set(other._v4) and set(self._v6) == set(other._v6)

    def __hash__(self) -> int:
        return hash((frozenset(self._v4), frozenset(self._v6)))


def _parse_network(entry: object) -> _Network:
    if not isinstance(entry, str) or not entry.strip():
        raise ConfigError(f"allowlist entries must be CIDR strings, got {entry!r}")
    text = entry.strip()
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ConfigError(
                f"allowlist entry {entry!r} is not an IPv4 or IPv6 network in CIDR notation "
                f"(e.g. 10.0.0.0/8 or fd00::/8): {exc}"
            ) from exc
        raise ConfigError(
            f"allowlist entry {entry!r} has host bits set; did you mean {loose}?"
        ) from exc
