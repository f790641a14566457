"""IpAllowlist: IPv4, IPv6, IPv4-mapped IPv6 and refusal of invalid networks."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clawfed.core import ConfigError
from clawfed.security import DEFAULT_ALLOWLIST, IpAllowlist


def test_default_is_loopback_only() -> None:
    allow = IpAllowlist()
    assert allow.cidrs == DEFAULT_ALLOWLIST == ("127.0.0.0/8", "::1/128")
    for ip in ("127.0.0.1", "127.255.0.9", "::1", "::ffff:127.0.0.1"):
        assert allow.allows(ip), ip
    for ip in ("10.0.0.1", "192.168.1.1", "::2", "fe80::1", "::ffff:10.0.0.1", "0.0.0.0"):
        assert not allow.allows(ip), ip


def test_ipv4_and_ipv6_networks() -> None:
    allow = IpAllowlist(["10.20.0.0/16", "fd00:abcd::/32", "192.0.2.7"])
    assert allow.allows("10.20.255.1")
    assert not allow.allows("10.21.0.1")
    assert allow.allows("fd00:abcd:1::5")
    assert not allow.allows("fd00:abce::5")
    assert allow.allows("192.0.2.7")
    assert not allow.allows("192.0.2.8")
    assert not allow.allows("127.0.0.1")  # loopback is not implied once a list is given


def test_mapped_ipv4_is_checked_as_ipv4() -> None:
    allow = IpAllowlist(["10.0.0.0/8"])
    assert allow.allows("::ffff:10.1.2.3")
    assert not allow.allows("::ffff:11.1.2.3")
    assert not allow.allows("::ffff:127.0.0.1")
    # an explicit IPv6 network over the mapped range still works
    assert IpAllowlist(["::ffff:0:0/96"]).allows("::ffff:8.8.8.8")


def test_scoped_ipv6_address() -> None:
    assert IpAllowlist(["fe80::/10"]).allows("fe80::1%eth0")


@pytest.mark.parametrize("junk", ["localhost", "", "1.2.3", "::g", "10.0.0.1/8"])
def test_things_that_are_not_addresses_are_refused(junk: str) -> None:
    assert not IpAllowlist(["0.0.0.0/0", "::/0"]).allows(junk)


@pytest.mark.parametrize(
    ("entries", "needle"),
    [
        (["10.0.0.0/33"], "'10.0.0.0/33' is not an IPv4 or IPv6 network"),
        (["not-a-net"], "'not-a-net'"),
        (["10.0.0.0/8", "fd00::/129"], "'fd00::/129'"),
        (["10.0.0.1/8"], "host bits set; did you mean 10.0.0.0/8"),
        (["  "], "CIDR strings"),
        ([42], "CIDR strings, got 42"),
        ([], "allowlist is empty"),
        ("10.0.0.0/8", "single string"),
    ],
)
def test_invalid_entries_are_config_errors(entries: object, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        IpAllowlist(entries)  # type: ignore[arg-type]


def test_equality_ignores_order_and_spelling() -> None:
    assert IpAllowlist(["10.0.0.0/8", "::1"]) == IpAllowlist(["::1/128", "10.0.0.0/8"])
    assert IpAllowlist(["10.0.0.0/8"]) != IpAllowlist(["10.0.0.0/9"])
    assert "10.0.0.0/8" in repr(IpAllowlist(["10.0.0.0/8"]))


@given(
    addr=st.integers(min_value=0, max_value=2**32 - 1),
    net=st.integers(min_value=0, max_value=2**32 - 1),
    prefix=st.integers(min_value=0, max_value=32),
)
def test_ipv4_membership_matches_ipaddress(addr: int, net: int, prefix: int) -> None:
    network = ipaddress.IPv4Network((net, prefix), strict=False)
    allow = IpAllowlist([str(network)])
    ip = ipaddress.IPv4Address(addr)
    expected = ip in network
    assert allow.allows(str(ip)) is expected
    assert allow.allows(f"::ffff:{ip}") is expected
