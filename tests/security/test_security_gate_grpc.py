"""A real gRPC client through the TlsGate to a plaintext gRPC server: ALPN h2 and identity."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from security_support import GateFactory, Pki, Refusals, expect

from clawfed.core import RefusalReason
from clawfed.security import CertKey, IpAllowlist, PeerIdentity, Role, TlsGate

SERVICE, METHOD = "clawfed.test.Echo", "Call"


class Upstream:
    """Insecure gRPC server on 127.0.0.1 with one generic unary method that reverses bytes."""

    def __init__(self) -> None:
        self.peers: list[str] = []
        self.identities: list[PeerIdentity | None] = []
        self.gate: TlsGate | None = None
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        handler = grpc.method_handlers_generic_handler(
            SERVICE, {METHOD: grpc.unary_unary_rpc_method_handler(self._call)}
        )
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def _call(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        peer = context.peer()
        self.peers.append(peer)
        self.identities.append(self.gate.identity_for(peer) if self.gate else None)
        return request[::-1]


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    up = Upstream()
    yield up
    up.server.stop(None).wait(10)


def _call(port: int, pki: Pki, cert: CertKey, payload: bytes) -> bytes:
    creds = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.cert_pem,
        private_key=cert.key_pem,
        certificate_chain=cert.cert_pem,
    )
    with grpc.secure_channel(f"localhost:{port}", creds) as channel:
        stub = channel.unary_unary(f"/{SERVICE}/{METHOD}", None, None)
        reply: bytes = stub(payload, timeout=10)
        return reply


def test_grpc_call_through_the_gate_carries_the_node_identity(
    make_gate: GateFactory, upstream: Upstream, pki: Pki
) -> None:
    gate, refusals = make_gate(upstream_port=upstream.port)
    upstream.gate = gate
    payload = bytes(range(256)) * 4096  # 1 MiB, several HTTP/2 frames

    assert _call(gate.port, pki, pki.node, payload) == payload[::-1]

    assert len(upstream.peers) == 1
    assert upstream.peers[0].startswith("ipv4:127.0.0.1:")
    ident = upstream.identities[0]
    assert ident is not None
    assert (ident.node_id, ident.department, ident.role) == ("credit", "信贷部", Role.NODE)
    assert ident.fingerprint == pki.node.fingerprint
    assert refusals.empty()


def test_grpc_client_with_foreign_certificate_is_refused(
    make_gate: GateFactory, upstream: Upstream, pki: Pki
) -> None:
    gate, refusals = make_gate(upstream_port=upstream.port)
    with pytest.raises(grpc.RpcError) as info:
        _call(gate.port, pki, pki.foreign_node, b"hi")
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    expect(refusals.next(), RefusalReason.UNKNOWN_CA)
    assert upstream.peers == []


def test_grpc_admin_refused_by_a_node_only_gate(upstream: Upstream, pki: Pki) -> None:
    refusals = Refusals()
    with TlsGate(
        listen_host="127.0.0.1",
        listen_port=0,
        upstream_port=upstream.port,
        ca_cert_pem=pki.ca.cert_pem,
        server=pki.server,
        allowlist=IpAllowlist(),
        is_revoked=lambda _i: False,
        on_refusal=refusals,
        allowed_roles=frozenset({Role.NODE}),
    ) as gate:
        with pytest.raises(grpc.RpcError):
            _call(gate.port, pki, pki.admin, b"hi")
        expect(refusals.next(), RefusalReason.NOT_A_NODE, node_id="alice")
    assert upstream.peers == []
