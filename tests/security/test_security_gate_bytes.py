"""The gate's byte counters: plaintext relayed each way, live and closed connections together."""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable

from security_support import GateFactory, Pki, duplex_exchange, recv_exact, wait_for

from clawfed.security import TlsGate

Connect = Callable[..., ssl.SSLSocket]


def _totals(gate: TlsGate) -> tuple[int, int]:
    return gate.bytes_in, gate.bytes_out


def test_counters_start_at_zero(make_gate: GateFactory) -> None:
    gate, _ = make_gate()
    assert _totals(gate) == (0, 0)


def test_counters_count_plaintext_both_ways_and_survive_the_close(
    make_gate: GateFactory, connect: Connect, pki: Pki
) -> None:
    gate, _ = make_gate()
    first = connect(gate.port, pki.node)
    payload = os.urandom(3 * 1024 * 1024 + 17)
    assert duplex_exchange(first, payload, len(payload)) == payload
    # the echo sent everything back, so both directions carried exactly the payload
    wait_for(lambda: _totals(gate) == (len(payload), len(payload)), "the first exchange counted")

    second = connect(gate.port, pki.other_node)
    second.sendall(b"ping")
    assert recv_exact(second, 4) == b"ping"
    wait_for(lambda: gate.bytes_in == len(payload) + 4, "the second connection counted")

    first.close()
    second.close()
    wait_for(lambda: gate.connections() == [], "both connections to close")
    assert _totals(gate) == (len(payload) + 4, len(payload) + 4)


def test_refused_connections_count_nothing(
    make_gate: GateFactory, connect: Connect, pki: Pki
) -> None:
    gate, refusals = make_gate(is_revoked=lambda _identity: True)
    client = connect(gate.port, pki.node)
    try:
        client.sendall(b"x" * 1000)
    except OSError:
        pass  # the gate may already have closed the connection
    refusals.next()
    assert _totals(gate) == (0, 0)
