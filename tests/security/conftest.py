"""Fixtures for the security tests: a federation PKI, an upstream echo server, gates, clients."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from security_support import WAIT_S, EchoServer, GateFactory, Pki, Refusals

from clawfed.security import (
    CertKey,
    IpAllowlist,
    TlsGate,
    create_ca,
    issue_admin_cert,
    issue_node_cert,
    issue_server_cert,
    write_cert_key,
)


@pytest.fixture(scope="session")
def pki() -> Pki:
    ca = create_ca("clawfed test CA")
    foreign = create_ca("someone else's CA")
    return Pki(
        ca=ca,
        server=issue_server_cert(ca, ["coordinator.test", "10.9.8.7"]),
        node=issue_node_cert(ca, "credit", "信贷部"),
        other_node=issue_node_cert(ca, "audit", "审计部"),
        admin=issue_admin_cert(ca, "alice"),
        foreign_ca=foreign,
        foreign_node=issue_node_cert(foreign, "credit", "信贷部"),
    )


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.stop()


@pytest.fixture
def make_gate(pki: Pki, echo: EchoServer) -> Iterator[GateFactory]:
    """Start gates in front of ``echo``; keyword arguments override the defaults."""
    gates: list[TlsGate] = []

    def factory(**overrides: Any) -> tuple[TlsGate, Refusals]:
        refusals = Refusals()
        kwargs: dict[str, Any] = {
            "listen_host": "127.0.0.1",
            "listen_port": 0,
            "upstream_port": echo.port,
            "ca_cert_pem": pki.ca.cert_pem,
            "server": pki.server,
            "allowlist": IpAllowlist(),
            "is_revoked": lambda _identity: False,
            "on_refusal": refusals,
        }
        kwargs.update(overrides)
        gate = TlsGate(**kwargs)
        gate.start()
        gates.append(gate)
        return gate, refusals

    yield factory
    for gate in gates:
        gate.stop()
    leftover = [t.name for t in threading.enumerate() if t.name.startswith("clawfed-gate")]
    assert not leftover, f"gate threads still running after stop(): {leftover}"


@pytest.fixture
def connect(pki: Pki, tmp_path: Path) -> Iterator[Callable[..., ssl.SSLSocket]]:
    """Open a TLS client connection to a gate port, presenting ``cert`` (or no certificate)."""
    opened: list[socket.socket] = []

    def _connect(
        port: int, cert: CertKey | None, *, alpn: list[str] | None = None
    ) -> ssl.SSLSocket:
        ctx = ssl.create_default_context(cadata=pki.ca.cert_pem.decode())
        if alpn is not None:
            ctx.set_alpn_protocols(alpn)
        if cert is not None:
            stem = tmp_path / f"client-{len(opened)}"
            write_cert_key(cert, stem.with_suffix(".crt"), stem.with_suffix(".key"))
            ctx.load_cert_chain(stem.with_suffix(".crt"), stem.with_suffix(".key"))
        raw = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
        opened.append(raw)
        tls = ctx.wrap_socket(raw, server_hostname="localhost")
        opened.append(tls)
        return tls

    yield _connect
    for s in opened:
        s.close()
