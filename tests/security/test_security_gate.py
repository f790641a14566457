"""TlsGate with real sockets on 127.0.0.1: admission, refusals, relay, drop and stop."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any

import pytest
from security_support import (
    EchoServer,
    GateFactory,
    Pki,
    duplex_exchange,
    expect,
    identity_of,
    is_closed_by_peer,
    recv_exact,
    wait_for,
)

from clawfed.core import ConfigError, RefusalReason
from clawfed.security import IpAllowlist, PeerIdentity, Role, TlsGate, parse_grpc_peer

Connect = Callable[..., ssl.SSLSocket]


def test_node_is_admitted_and_bytes_echo_through(
    make_gate: GateFactory, connect: Connect, pki: Pki, echo: EchoServer
) -> None:
    gate, refusals = make_gate()
    client = connect(gate.port, pki.node)
    client.sendall(b"hello federation")
    assert recv_exact(client, 16) == b"hello federation"
    assert client.selected_alpn_protocol() is None  # no ALPN offered, none forced

    ident = identity_of(gate, "credit")
    assert (ident.department, ident.role) == ("信贷部", Role.NODE)
    assert ident.fingerprint == pki.node.fingerprint
    assert ident.serial == pki.node.serial

    (peer_ip, peer_port) = echo.peers[-1]
    assert gate.identity_for(f"ipv4:{peer_ip}:{peer_port}") == ident
    assert gate.identity_for(f"ipv6:[::ffff:{peer_ip}]:{peer_port}") == ident
    assert gate.identity_for(f"ipv4:{peer_ip}:{peer_port + 1}") is None
    assert gate.identity_for("unix:/tmp/socket") is None
    assert refusals.empty()


def test_h2_is_negotiated_over_tls_1_3(make_gate: GateFactory, connect: Connect, pki: Pki) -> None:
    gate, _ = make_gate()
    client = connect(gate.port, pki.node, alpn=["h2", "http/1.1"])
    assert client.selected_alpn_protocol() == "h2"
    assert client.version() == "TLSv1.3"
    client.sendall(b"PRI * HTTP/2.0")
    assert recv_exact(client, 14) == b"PRI * HTTP/2.0"


def test_identity_mapping_ends_with_the_connection(
    make_gate: GateFactory, connect: Connect, pki: Pki, echo: EchoServer
) -> None:
    gate, _ = make_gate()
    client = connect(gate.port, pki.node)
    client.sendall(b"x")
    recv_exact(client, 1)
    peer = "ipv4:{}:{}".format(*echo.peers[-1])
    assert gate.identity_for(peer) is not None
    client.close()
    wait_for(lambda: gate.identity_for(peer) is None, "the mapping to be removed")
    assert gate.connections() == []


def test_large_transfer_is_intact_in_both_directions(
    make_gate: GateFactory, connect: Connect, pki: Pki
) -> None:
    gate, _ = make_gate()
    client = connect(gate.port, pki.node)
    payload = os.urandom(6 * 1024 * 1024 + 123)
    received = duplex_exchange(client, payload, len(payload))
    assert len(received) == len(payload)
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()


def test_client_half_close_lets_the_reply_finish(
    make_gate: GateFactory, connect: Connect, pki: Pki
) -> None:
    gate, _ = make_gate()
    client = connect(gate.port, pki.node)
    payload = os.urandom(200_000)
    client.sendall(payload)
    socket.socket.shutdown(client, socket.SHUT_WR)  # TCP FIN, the TLS session stays up
    received = bytearray()
    while part := client.recv(65536):
        received.extend(part)
    assert bytes(received) == payload


def test_certificate_from_a_foreign_ca_is_refused(
    make_gate: GateFactory, connect: Connect, pki: Pki, echo: EchoServer
) -> None:
    gate, refusals = make_gate()
    with pytest.raises((ssl.SSLError, OSError)):
        client = connect(gate.port, pki.foreign_node)
        client.sendall(b"x")
        client.recv(1)
    refusal = refusals.next()
    expect(refusal, RefusalReason.UNKNOWN_CA)
    assert "verification" in refusal.detail
    assert echo.peers == []


def test_missing_client_certificate_is_refused(
    make_gate: GateFactory, connect: Connect, echo: EchoServer
) -> None:
    gate, refusals = make_gate()
    with pytest.raises((ssl.SSLError, OSError)):
        client = connect(gate.port, None)
        client.sendall(b"x")
        client.recv(1)
    refusal = refusals.next()
    expect(refusal, RefusalReason.NO_CERTIFICATE)
    assert "no certificate" in refusal.detail
    assert echo.peers == []


def test_revoked_identity_is_refused(
    make_gate: GateFactory, connect: Connect, pki: Pki, echo: EchoServer
) -> None:
    asked: list[PeerIdentity] = []

    def is_revoked(identity: PeerIdentity) -> bool:
        asked.append(identity)
        return identity.serial == pki.node.serial

    gate, refusals = make_gate(is_revoked=is_revoked)
    client = connect(gate.port, pki.node)
    assert is_closed_by_peer(client)
    expect(refusals.next(), RefusalReason.REVOKED, node_id="credit")
    assert [i.node_id for i in asked] == ["credit"]
    assert echo.peers == []

    other = connect(gate.port, pki.other_node)  # another node is not affected
    other.sendall(b"ok")
    assert recv_exact(other, 2) == b"ok"


def test_failing_revocation_check_refuses(
    make_gate: GateFactory, connect: Connect, pki: Pki
) -> None:
    def broken(_identity: PeerIdentity) -> bool:
        raise RuntimeError("store unavailable")

    gate, refusals = make_gate(is_revoked=broken)
    client = connect(gate.port, pki.node)
    assert is_closed_by_peer(client)
    refusal = refusals.next()
    expect(refusal, RefusalReason.REVOKED, node_id="credit")
    assert "store unavailable" in refusal.detail


def test_ip_outside_the_allowlist_is_refused_before_tls(
    make_gate: GateFactory, echo: EchoServer
) -> None:
    gate, refusals = make_gate(allowlist=IpAllowlist(["10.0.0.0/8"]))
    with socket.create_connection(("127.0.0.1", gate.port), timeout=10) as raw:
        assert is_closed_by_peer(raw)  # closed without a single TLS byte
    refusal = refusals.next()
    expect(refusal, RefusalReason.IP_NOT_ALLOWED)
    assert "10.0.0.0/8" in refusal.detail
    assert echo.peers == []


def test_role_not_admitted_is_refused(
    make_gate: GateFactory, connect: Connect, pki: Pki, echo: EchoServer
) -> None:
    gate, refusals = make_gate(allowed_roles=frozenset({Role.NODE}))
    client = connect(gate.port, pki.admin)
    assert is_closed_by_peer(client)
    refusal = refusals.next()
    expect(refusal, RefusalReason.NOT_A_NODE, node_id="alice")
    assert "'admin'" in refusal.detail
    assert echo.peers == []


def test_admin_is_admitted_where_allowed(
    make_gate: GateFactory, connect: Connect, pki: Pki
) -> None:
    gate, _ = make_gate(allowed_roles=frozenset({Role.ADMIN}))
    client = connect(gate.port, pki.admin)
    client.sendall(b"status")
    assert recv_exact(client, 6) == b"status"
    assert identity_of(gate, "alice").role is Role.ADMIN


def test_drop_closes_every_live_connection_of_a_node(
    make_gate: GateFactory, connect: Connect, pki: Pki
) -> None:
    gate, _ = make_gate()
    first, second = connect(gate.port, pki.node), connect(gate.port, pki.node)
    other = connect(gate.port, pki.other_node)
    for c in (first, second, other):
        c.sendall(b"ping")
        assert recv_exact(c, 4) == b"ping"
    assert sorted(i.node_id for i in gate.connections()) == ["audit", "credit", "credit"]

    assert gate.drop("credit") == 2
    assert is_closed_by_peer(first)
    assert is_closed_by_peer(second)
    wait_for(lambda: [i.node_id for i in gate.connections()] == ["audit"], "credit to go")
    other.sendall(b"still here")
    assert recv_exact(other, 10) == b"still here"
    assert gate.drop("nobody") == 0


def test_garbage_bytes_do_not_kill_the_gate(
    make_gate: GateFactory, connect: Connect, pki: Pki
) -> None:
    gate, refusals = make_gate()
    with socket.create_connection(("127.0.0.1", gate.port), timeout=10) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(512))
        assert is_closed_by_peer(raw)
    refusal = refusals.next()
    expect(refusal, RefusalReason.NO_CERTIFICATE)
    assert "handshake failed" in refusal.detail

    client = connect(gate.port, pki.node)
    client.sendall(b"alive")
    assert recv_exact(client, 5) == b"alive"


def test_slow_handshake_times_out_without_blocking_others(
    make_gate: GateFactory, connect: Connect, pki: Pki
) -> None:
    gate, refusals = make_gate(handshake_timeout_s=2.0)
    with socket.create_connection(("127.0.0.1", gate.port), timeout=10) as silent:
        client = connect(gate.port, pki.node)  # served while the silent one is pending
        client.sendall(b"fast")
        assert recv_exact(client, 4) == b"fast"
        refusal = refusals.next()
        expect(refusal, RefusalReason.NO_CERTIFICATE)
        assert "not completed within 2 s" in refusal.detail
        assert is_closed_by_peer(silent)


def test_refusals_are_logged_and_a_failing_callback_is_survived(
    make_gate: GateFactory, connect: Connect, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[RefusalReason] = []

    def explode(refusal: object) -> None:
        calls.append(getattr(refusal, "reason"))  # noqa: B009
        raise RuntimeError("audit store down")

    caplog.set_level(logging.INFO, logger="clawfed.security.gate")
    gate, _ = make_gate(on_refusal=explode, is_revoked=lambda i: i.node_id == "credit")
    refused = connect(gate.port, pki.node)
    assert is_closed_by_peer(refused)
    wait_for(lambda: calls == [RefusalReason.REVOKED], "the callback")

    ok = connect(gate.port, pki.other_node)
    ok.sendall(b"fine")
    assert recv_exact(ok, 4) == b"fine"

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    line = warnings[0].getMessage()
    assert "127.0.0.1" in line and "credit" in line and "revoked" in line
    assert any("on_refusal callback failed" in r.getMessage() for r in caplog.records)


def test_unreachable_upstream_closes_the_client(
    make_gate: GateFactory, connect: Connect, pki: Pki
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        dead_port = int(placeholder.getsockname()[1])
    gate, refusals = make_gate(upstream_port=dead_port)
    client = connect(gate.port, pki.node)
    assert is_closed_by_peer(client)
    assert gate.connections() == []
    assert refusals.empty()


def test_stop_closes_live_connections(pki: Pki, echo: EchoServer, connect: Connect) -> None:
    gate = TlsGate(
        listen_host="127.0.0.1",
        listen_port=0,
        upstream_port=echo.port,
        ca_cert_pem=pki.ca.cert_pem,
        server=pki.server,
        allowlist=IpAllowlist(),
        is_revoked=lambda _i: False,
        on_refusal=lambda _r: None,
    )
    with gate:
        client = connect(gate.port, pki.node)
        client.sendall(b"x")
        recv_exact(client, 1)
    assert is_closed_by_peer(client)
    assert not [t for t in threading.enumerate() if t.name.startswith("clawfed-gate")]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", gate.port), timeout=2).close()
    gate.stop()  # idempotent


def test_constructor_refuses_bad_settings(pki: Pki) -> None:
    base: dict[str, Any] = {
        "listen_host": "127.0.0.1",
        "listen_port": 0,
        "upstream_port": 50051,
        "ca_cert_pem": pki.ca.cert_pem,
        "server": pki.server,
        "allowlist": IpAllowlist(),
        "is_revoked": lambda _i: False,
        "on_refusal": lambda _r: None,
    }
    cases: list[tuple[dict[str, Any], str]] = [
        ({"listen_port": 70000}, "listen_port"),
        ({"upstream_port": 0}, "upstream_port"),
        ({"handshake_timeout_s": 0.0}, "handshake_timeout_s"),
        ({"allowed_roles": frozenset()}, "allowed_roles"),
        ({"ca_cert_pem": pki.foreign_ca.cert_pem}, "server certificate"),
    ]
    for override, needle in cases:
        with pytest.raises(ConfigError, match=needle):
            TlsGate(**{**base, **override})


def test_listen_failure_is_a_config_error(pki: Pki, echo: EchoServer) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = int(taken.getsockname()[1])
        gate = TlsGate(
            listen_host="127.0.0.1",
            listen_port=port,
            upstream_port=echo.port,
            ca_cert_pem=pki.ca.cert_pem,
            server=pki.server,
            allowlist=IpAllowlist(),
            is_revoked=lambda _i: False,
            on_refusal=lambda _r: None,
        )
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            gate.start()


@pytest.mark.parametrize(
    ("peer", "expected"),
    [
        ("ipv4:127.0.0.1:54321", ("127.0.0.1", 54321)),
        ("ipv6:[::1]:443", ("::1", 443)),
        ("ipv6:%5B::1%5D:443", ("::1", 443)),
        ("ipv6:[::ffff:127.0.0.1]:9", ("127.0.0.1", 9)),
        ("unix:/run/grpc.sock", None),
        ("ipv4:127.0.0.1", None),
        ("ipv4:not-an-ip:80", None),
        ("", None),
    ],
)
def test_parse_grpc_peer(peer: str, expected: tuple[str, int] | None) -> None:
    assert parse_grpc_peer(peer) == expected
