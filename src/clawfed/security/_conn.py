"""State of one connection accepted by the gate, shared by its thread and ``drop``/``stop``."""

from __future__ import annotations

import socket
import ssl
import threading

from clawfed.security._relay import Relay, raw_shutdown
from clawfed.security.pki import PeerIdentity

UpstreamKey = tuple[str, int]


class Conn:
    """One accepted TCP connection, from accept until it is closed."""

    def __init__(self, sock: socket.socket, peer_ip: str, peer_port: int) -> None:
        self.sock = sock
        self.peer_ip = peer_ip
        self.peer_port = peer_port
        self.tls: ssl.SSLSocket | None = None
        self.upstream: socket.socket | None = None
        self.upstream_key: UpstreamKey | None = None
        self.identity: PeerIdentity | None = None
        self.relay: Relay | None = None
        self.closed = False
        self._lock = threading.Lock()

    @property
    def label(self) -> str:
        """``ip:port`` of the peer, for logs."""
        return f"{self.peer_ip}:{self.peer_port}"

    def attach(self, *, tls: ssl.SSLSocket | None = None, up: socket.socket | None = None) -> bool:
        """Record a new socket unless the connection was aborted meanwhile."""
        with self._lock:
            if tls is not None:
                self.tls = tls
            if up is not None:
                self.upstream = up
            return not self.closed

    def attach_relay(self, relay: Relay) -> bool:
        """Record the relay unless the connection was aborted meanwhile."""
        with self._lock:
            self.relay = relay
            return not self.closed

    def abort(self) -> None:
        """Stop the connection from any thread; its own thread then cleans up."""
        with self._lock:
            self.closed = True
            raw_shutdown(self.tls if self.tls is not None else self.sock, socket.SHUT_RDWR)
            raw_shutdown(self.upstream, socket.SHUT_RDWR)
            if self.relay is not None:
                self.relay.abort()

    def close(self) -> None:
        """Release every socket; only the connection's own thread calls this, at the end."""
        with self._lock:
            self.closed = True
            for s in (self.tls, self.sock, self.upstream):
                if s is not None:
                    s.close()
