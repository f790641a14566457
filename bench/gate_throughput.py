"""Throughput of the mutual-TLS gate: push bytes through it to a sink and back from a source.

Usage: ``.venv/bin/python bench/gate_throughput.py [--mb 500]``

Three set-ups move the same volume over loopback, each with one TCP connection:

* ``plain``: client -> sink, no TLS, no gate (the ceiling of this machine);
* ``tls direct``: TLS client -> a Python TLS server that sinks (one TLS hop, no relay);
* ``gate``: TLS client -> ``TlsGate`` -> plain sink (what the coordinator runs).

The sink reads until end of stream and answers with the byte count; for the download
direction a source sends the requested number of bytes and closes.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from clawfed.security import (
    IpAllowlist,
    TlsGate,
    create_ca,
    issue_node_cert,
    issue_server_cert,
    write_cert_key,
)

CHUNK = 1 << 20


def _sink(conn: socket.socket) -> None:
    buf = bytearray(CHUNK)
    total = 0
    while n := conn.recv_into(buf):
        total += n
    conn.sendall(struct.pack("!Q", total))


def _source(conn: socket.socket) -> None:
    want = struct.unpack("!Q", _read_exact(conn, 8))[0]
    block = memoryview(os.urandom(CHUNK))
    left = want
    while left:
        step = min(left, CHUNK)
        conn.sendall(block[:step])
        left -= step


def _read_exact(conn: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        part = conn.recv(n - len(out))
        if not part:
            raise ConnectionError("stream ended early")
        out += part
    return bytes(out)


class _Server:
    """Serves each accepted connection with ``handler`` on its own thread."""

    def __init__(
        self, handler: Callable[[socket.socket], None], ctx: ssl.SSLContext | None = None
    ) -> None:
        self._ls = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._ls.getsockname()[1])
        self._handler = handler
        self._ctx = ctx
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            try:
                raw, _ = self._ls.accept()
            except OSError:
                return
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        conn = self._ctx.wrap_socket(raw, server_side=True) if self._ctx else raw
        with conn:
            self._handler(conn)

    def close(self) -> None:
        self._ls.close()


def _upload(connect: Callable[[], socket.socket], total: int) -> float:
    block = memoryview(os.urandom(CHUNK))
    conn = connect()
    start = time.perf_counter()
    left = total
    while left:
        step = min(left, CHUNK)
        conn.sendall(block[:step])
        left -= step
    socket.socket.shutdown(conn, socket.SHUT_WR)  # end of stream without TLS close_notify
    got = struct.unpack("!Q", _read_exact(conn, 8))[0]
    elapsed = time.perf_counter() - start
    conn.close()
    if got != total:
        raise SystemExit(f"sink received {got} bytes, sent {total}")
    return total / elapsed / 1e6


def _download(connect: Callable[[], socket.socket], total: int) -> float:
    conn = connect()
    buf = bytearray(CHUNK)
    start = time.perf_counter()
    conn.sendall(struct.pack("!Q", total))
    got = 0
    while n := conn.recv_into(buf):
        got += n
    elapsed = time.perf_counter() - start
    conn.close()
    if got != total:
        raise SystemExit(f"received {got} bytes, expected {total}")
    return total / elapsed / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=500, help="megabytes per run (default 500)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell, best kept")
    args = parser.parse_args()
    total, repeat = args.mb * 1_000_000, max(1, args.repeat)

    ca = create_ca("bench CA")
    server = issue_server_cert(ca, [])
    node = issue_node_cert(ca, "bench-node", "信贷部")
    client_ctx = ssl.create_default_context(cadata=ca.cert_pem.decode())
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory(prefix="clawfed-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        write_cert_key(node, tmp / "node.crt", tmp / "node.key")
        write_cert_key(server, tmp / "server.crt", tmp / "server.key")
        client_ctx.load_cert_chain(tmp / "node.crt", tmp / "node.key")
        server_ctx.load_cert_chain(tmp / "server.crt", tmp / "server.key")
    server_ctx.options |= ssl.OP_IGNORE_UNEXPECTED_EOF  # the client half-closes with a FIN

    def tls_to(port: int) -> Callable[[], socket.socket]:
        def connect() -> socket.socket:
            raw = socket.create_connection(("127.0.0.1", port))
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return client_ctx.wrap_socket(raw, server_hostname="localhost")

        return connect

    def plain_to(port: int) -> Callable[[], socket.socket]:
        return lambda: socket.create_connection(("127.0.0.1", port))

    sink, source = _Server(_sink), _Server(_source)
    tls_sink, tls_source = _Server(_sink, server_ctx), _Server(_source, server_ctx)
    gates = []
    for upstream in (sink, source):
        gate = TlsGate(
            listen_host="127.0.0.1",
            listen_port=0,
            upstream_port=upstream.port,
            ca_cert_pem=ca.cert_pem,
            server=server,
            allowlist=IpAllowlist(),
            is_revoked=lambda _identity: False,
            on_refusal=lambda r: print(f"refused: {r}", file=sys.stderr),
        )
        gate.start()
        gates.append(gate)

    runs = [
        ("plain", plain_to(sink.port), plain_to(source.port)),
        ("tls direct", tls_to(tls_sink.port), tls_to(tls_source.port)),
        ("gate", tls_to(gates[0].port), tls_to(gates[1].port)),
    ]
    print(
        f"{total / 1e6:.0f} MB per run, best of {repeat}, one connection, loopback, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"{'path':<12} {'upload MB/s':>12} {'download MB/s':>14}")
    try:
        for name, up, down in runs:
            up_rate = max(_upload(up, total) for _ in range(repeat))
            down_rate = max(_download(down, total) for _ in range(repeat))
            print(f"{name:<12} {up_rate:>12.0f} {down_rate:>14.0f}")
    finally:
        for gate in gates:
            gate.stop()
        for srv in (sink, source, tls_sink, tls_source):
            srv.close()


if __name__ == "__main__":
    main()
