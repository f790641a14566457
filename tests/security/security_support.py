"""Helpers shared by the security tests: PKI record, echo upstream, refusal sink, waits."""

from __future__ import annotations

import queue
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from clawfed.core import RefusalReason
from clawfed.security import CertKey, PeerIdentity, Refusal, Role, TlsGate

WAIT_S = 10.0


@dataclass(frozen=True)
class Pki:
    """A federation CA with certificates for every test role, plus a foreign CA."""

    ca: CertKey
    server: CertKey
    node: CertKey
    other_node: CertKey
    admin: CertKey
    foreign_ca: CertKey
    foreign_node: CertKey


class EchoServer:
    """Plain TCP echo server on 127.0.0.1 standing in for the coordinator's gRPC port.

    Echoes until the client half-closes, then half-closes too. Records each peer address.
    """

    def __init__(self) -> None:
        self._ls = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._ls.getsockname()[1])
        self.peers: list[tuple[str, int]] = []
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._accept = threading.Thread(target=self._loop, name="test-echo-accept", daemon=True)
        self._accept.start()

    def _loop(self) -> None:
        while True:
            try:
                conn, addr = self._ls.accept()
            except OSError:
                return
            with self._lock:
                self.peers.append((str(addr[0]), int(addr[1])))
                self._conns.append(conn)
                t = threading.Thread(target=self._echo, args=(conn,), daemon=True)
                self._threads.append(t)
            t.start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def stop(self) -> None:
        try:
            self._ls.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._ls.close()
        self._accept.join(WAIT_S)
        with self._lock:
            conns, threads = list(self._conns), list(self._threads)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in threads:
            t.join(WAIT_S)


class Refusals:
    """Collects what a gate passes to ``on_refusal``."""

    def __init__(self) -> None:
        self._q: queue.Queue[Refusal] = queue.Queue()

    def __call__(self, refusal: Refusal) -> None:
        self._q.put(refusal)

    def next(self) -> Refusal:
        try:
            return self._q.get(timeout=WAIT_S)
        except queue.Empty:
            raise AssertionError(f"no refusal reported within {WAIT_S} s") from None

    def empty(self) -> bool:
        return self._q.empty()


GateFactory = Callable[..., tuple[TlsGate, Refusals]]


def recv_exact(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        part = sock.recv(n - len(out))
        if not part:
            raise AssertionError(f"stream ended after {len(out)} of {n} bytes")
        out += part
    return bytes(out)


def is_closed_by_peer(sock: socket.socket) -> bool:
    """Whether the next read shows the connection ended (EOF or an error), within WAIT_S."""
    sock.settimeout(WAIT_S)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def expect(refusal: Refusal, reason: RefusalReason, *, node_id: str | None = None) -> None:
    assert refusal.reason is reason, refusal
    assert refusal.peer_ip == "127.0.0.1"
    assert refusal.node_id == node_id
    assert refusal.at.tzinfo is not None


def identity_of(gate: TlsGate, node_id: str) -> PeerIdentity:
    matches = [i for i in gate.connections() if i.node_id == node_id]
    assert len(matches) == 1, gate.connections()
    assert matches[0].role in (Role.NODE, Role.ADMIN)
    return matches[0]


def duplex_exchange(sock: ssl.SSLSocket, payload: bytes, expect_len: int) -> bytes:
    """Send ``payload`` while reading ``expect_len`` bytes back, from this one thread.

    A single thread with a non-blocking socket: an ``SSLSocket`` must not be read and
    written from two threads at once (the very race the gate's relay locks against).
    """
    sock.setblocking(False)
    view = memoryview(payload)
    received = bytearray()
    sent = 0
    deadline = time.monotonic() + 3 * WAIT_S
    with selectors.DefaultSelector() as sel:
        sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
        while len(received) < expect_len:
            if time.monotonic() > deadline:
                raise AssertionError(f"exchange stuck at {sent} sent, {len(received)} received")
            sel.select(0.5)
            try:
                while chunk := sock.recv(1 << 20):
                    received += chunk
                else:
                    break  # end of stream
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
            if sent < len(view):
                try:
                    sent += sock.send(view[sent : sent + 256 * 1024])
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    pass
                if sent == len(view):
                    sel.modify(sock, selectors.EVENT_READ)
    sock.setblocking(True)
    return bytes(received)
