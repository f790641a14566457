"""``TlsGate``: the mutual-TLS front door that admits, refuses and audits every peer.

The coordinator's gRPC server listens in plaintext on loopback only; the gate listens on
the public address, terminates mutual TLS in Python (so every refusal is seen, logged
and audited with its reason) and relays the decrypted bytes to the gRPC port. The gRPC
servicer learns who is calling with ``identity_for(context.peer())``.
"""

from __future__ import annotations

import logging
import math
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from clawfed.core.errors import ConfigError, PeerRefused, RefusalReason, SecurityError
from clawfed.security._conn import Conn, UpstreamKey
from clawfed.security._relay import Relay
from clawfed.security._tls import classify_handshake_error, server_context
from clawfed.security.allowlist import IpAllowlist
from clawfed.security.peer import normalise_ip, parse_grpc_peer
from clawfed.security.pki import (
    CertKey,
    PeerIdentity,
    Role,
    identity_from_cert,
    load_certificate,
    verify_chain,
)

#: Port of the federation service (DESIGN.md).
DEFAULT_PORT = 18789
#: Connections (admitted or still in their handshake) beyond this are closed at once.
MAX_CONNECTIONS = 1024
#: How long ``stop`` waits for all connection threads together.
_STOP_TIMEOUT_S = 10.0
_UPSTREAM_HOST = "127.0.0.1"

_log = logging.getLogger("clawfed.security.gate")


@dataclass(frozen=True)
class Refusal:
    """One refused connection, as handed to ``on_refusal`` (and from there to the audit log)."""

    at: datetime
    peer_ip: str
    reason: RefusalReason
    detail: str
    node_id: str | None = None


class TlsGate:
    """Terminates mutual TLS for the coordinator and relays admitted peers to its gRPC port.

    Each accepted connection is checked in order: (1) the peer IP is in ``allowlist``
    (else ``IP_NOT_ALLOWED``, before any TLS); (2) a TLS >= 1.2 handshake with ALPN ``h2``
    and a client certificate issued by the federation CA completes within
    ``handshake_timeout_s`` (``UNKNOWN_CA`` if the certificate fails verification,
    ``NO_CERTIFICATE`` if none was sent or the handshake failed otherwise); (3) the
    certificate names a role in ``allowed_roles`` (else ``NOT_A_NODE``); (4)
    ``is_revoked(identity)`` is false (else ``REVOKED``; an exception there also refuses).
    Every refusal is logged at WARNING and passed to ``on_refusal``.
    """

    def __init__(
        self,
        *,
        listen_host: str,
        listen_port: int,
        upstream_port: int,
        ca_cert_pem: bytes,
        server: CertKey,
        allowlist: IpAllowlist,
        is_revoked: Callable[[PeerIdentity], bool],
        on_refusal: Callable[[Refusal], None],
        allowed_roles: frozenset[Role] = frozenset({Role.NODE, Role.ADMIN}),
        handshake_timeout_s: float = 10.0,
    ) -> None:
        if not isinstance(listen_port, int) or not 0 <= listen_port <= 65535:
            raise ConfigError(f"listen_port must be 0..65535 (0: any free), got {listen_port!r}")
        if not isinstance(upstream_port, int) or not 1 <= upstream_port <= 65535:
            raise ConfigError(f"upstream_port must be 1..65535, got {upstream_port!r}")
        if not math.isfinite(handshake_timeout_s) or handshake_timeout_s <= 0:
            raise ConfigError(f"handshake_timeout_s must be > 0 s, got {handshake_timeout_s!r}")
        roles = frozenset(Role(r) for r in allowed_roles)
        if not roles:
            raise ConfigError("allowed_roles must name at least one role (node, admin)")
        load_certificate(ca_cert_pem)
        try:
            verify_chain(server.cert_pem, ca_cert_pem)
        except PeerRefused as exc:
            raise ConfigError(f"the gate's server certificate is unusable: {exc.detail}") from exc
        self._listen_host = listen_host
        self._listen_port = listen_port
        self._upstream_port = upstream_port
        self._allowlist = allowlist
        self._is_revoked = is_revoked
        self._on_refusal = on_refusal
        self._allowed_roles = roles
        self._handshake_timeout_s = float(handshake_timeout_s)
        self._ctx = server_context(ca_cert_pem, server)
        self._lock = threading.Lock()
        self._conns: set[Conn] = set()
        self._by_upstream: dict[UpstreamKey, Conn] = {}
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._accept_thread: threading.Thread | None = None
        self._port: int | None = None
        self._closed_bytes = (0, 0)  # (in, out) of the connections already closed

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> int:
        """Bind and start accepting; returns the bound port (useful with ``listen_port=0``)."""
        if self._listener is not None or self._stopping.is_set():
            raise RuntimeError("a TlsGate can be started once")
        try:
            infos = socket.getaddrinfo(
                self._listen_host,
                self._listen_port,
                type=socket.SOCK_STREAM,
                flags=socket.AI_PASSIVE,
            )
            family, addr = infos[0][0], infos[0][4]
            listener = socket.create_server(addr[:2], family=family, backlog=128)
        except OSError as exc:
            raise ConfigError(
                f"the gate cannot listen on {self._listen_host}:{self._listen_port}: "
                f"{exc.strerror or exc}"
            ) from exc
        listener.setblocking(False)
        self._listener = listener
        self._wake = socket.socketpair()
        self._port = int(listener.getsockname()[1])
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"clawfed-gate-accept-{self._port}", daemon=True
        )
        self._accept_thread.start()
        _log.info(
            "gate listening on %s:%d, relaying to %s:%d",
            self._listen_host,
            self._port,
            _UPSTREAM_HOST,
            self._upstream_port,
        )
        return self._port

    def stop(self) -> None:
        """Close the listener and every connection and join all threads (bounded waits)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._wake is not None:
            try:
                self._wake[1].send(b"x")
            except OSError:
                pass
        if self._accept_thread is not None:
            self._accept_thread.join(_STOP_TIMEOUT_S)
        for s in (self._listener, *(self._wake or ())):
            if s is not None:
                s.close()
        with self._lock:
            conns, threads = list(self._conns), list(self._threads)
        for conn in conns:
            conn.abort()
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in threads if t.is_alive()]
        if stuck:
            _log.error("gate: %d connection thread(s) did not stop: %s", len(stuck), stuck)
        _log.info("gate on port %s stopped", self._port)

    def __enter__(self) -> TlsGate:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port; only after ``start``."""
        if self._port is None:
            raise RuntimeError("the gate has not been started")
        return self._port

    # -- queries and control ---------------------------------------------------------------

    def identity_for(self, peer: str) -> PeerIdentity | None:
        """Who is behind a gRPC ``context.peer()`` string, or ``None`` if not relayed by the gate.

        ``peer`` names the upstream connection the gate opened, e.g. ``"ipv4:127.0.0.1:54321"``.
        """
        key = parse_grpc_peer(peer)
        if key is None:
            return None
        with self._lock:
            conn = self._by_upstream.get(key)
        return None if conn is None else conn.identity

    def connections(self) -> list[PeerIdentity]:
        """Identities of every admitted connection that is still open."""
        with self._lock:
            return [c.identity for c in self._by_upstream.values() if c.identity is not None]

    @property
    def bytes_in(self) -> int:
        """Plaintext bytes relayed from admitted clients to the upstream port, in total."""
        with self._lock:
            live = sum(c.relay.bytes_in for c in self._conns if c.relay is not None)
            return self._closed_bytes[0] + live

    @property
    def bytes_out(self) -> int:
        """Plaintext bytes relayed from the upstream port back to clients, in total."""
        with self._lock:
            live = sum(c.relay.bytes_out for c in self._conns if c.relay is not None)
            return self._closed_bytes[1] + live

    def drop(self, node_id: str) -> int:
        """Close every connection (admitted or being admitted) of ``node_id``; returns how many."""
        with self._lock:
            victims = [
                c for c in self._conns if c.identity is not None and c.identity.node_id == node_id
            ]
        for conn in victims:
            conn.abort()
        if victims:
            _log.info("gate: dropped %d connection(s) of node %s", len(victims), node_id)
        return len(victims)

    # -- internals -------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None and self._wake is not None
        listener, wake = self._listener, self._wake[0]
        with selectors.DefaultSelector() as sel:
            sel.register(listener, selectors.EVENT_READ)
            sel.register(wake, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in sel.select(timeout=1.0):
                    if key.fileobj is wake or self._stopping.is_set():
                        return
                    try:
                        sock, addr = listener.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError as exc:
                        _log.error("gate: accept failed: %s", exc)
                        self._stopping.wait(0.1)
                        continue
                    self._spawn(sock, normalise_ip(str(addr[0])), int(addr[1]))

    def _spawn(self, sock: socket.socket, ip: str, port: int) -> None:
        sock.setblocking(True)
        conn = Conn(sock, ip, port)
        with self._lock:
            if self._stopping.is_set() or len(self._conns) >= MAX_CONNECTIONS:
                full = not self._stopping.is_set()
                sock.close()
                if full:
                    _log.warning(
                        "gate: %s:%d closed, %d connections open", ip, port, len(self._conns)
                    )
                return
            self._conns.add(conn)
            thread = threading.Thread(
                target=self._serve, args=(conn,), name=f"clawfed-gate-{conn.label}", daemon=True
            )
            thread.start()
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)

    def _serve(self, conn: Conn) -> None:
        try:
            self._admit_and_relay(conn)
        except Exception:
            _log.exception("gate: unexpected error on the connection from %s", conn.label)
        finally:
            with self._lock:
                self._conns.discard(conn)
                if conn.upstream_key is not None:
                    self._by_upstream.pop(conn.upstream_key, None)
                if conn.relay is not None:
                    done_in, done_out = self._closed_bytes
                    self._closed_bytes = (
                        done_in + conn.relay.bytes_in,
                        done_out + conn.relay.bytes_out,
                    )
            conn.close()

    def _admit_and_relay(self, conn: Conn) -> None:
        if not self._allowlist.allows(conn.peer_ip):
            self._refuse(
                conn,
                RefusalReason.IP_NOT_ALLOWED,
                f"{conn.peer_ip} is outside the allowlist {list(self._allowlist.cidrs)}",
            )
            return
        tls = self._handshake(conn)
        if tls is None:
            return
        identity = self._check_identity(conn, tls)
        if identity is None:
            return
        try:
            up = socket.create_connection(
                (_UPSTREAM_HOST, self._upstream_port), timeout=self._handshake_timeout_s
            )
        except OSError as exc:
            _log.error(
                "gate: upstream %s:%d unreachable for node %s from %s: %s",
                _UPSTREAM_HOST,
                self._upstream_port,
                identity.node_id,
                conn.label,
                exc,
            )
            return
        up.settimeout(None)
        up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not conn.attach(up=up):
            return
        local = up.getsockname()
        key = (normalise_ip(str(local[0])), int(local[1]))
        relay = Relay(tls, up, name=f"clawfed-gate-{conn.label}")
        with self._lock:
            conn.upstream_key = key
            self._by_upstream[key] = conn
        if not conn.attach_relay(relay):
            return
        _log.info(
            "gate: admitted %s %s (%s) from %s",
            identity.role.value,
            identity.node_id,
            identity.department,
            conn.label,
        )
        relay.run()
        _log.info("gate: connection of %s from %s closed", identity.node_id, conn.label)

    def _handshake(self, conn: Conn) -> ssl.SSLSocket | None:
        sock = conn.sock
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            sock.settimeout(self._handshake_timeout_s)
            tls = self._ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        except OSError as exc:
            _log.info("gate: connection from %s lost before TLS: %s", conn.label, exc)
            return None
        if not conn.attach(tls=tls):
            return None
        try:
            tls.do_handshake()
        except OSError as exc:  # ssl.SSLError and TimeoutError are OSErrors
            if not conn.closed:
                reason, detail = classify_handshake_error(exc, self._handshake_timeout_s)
                self._refuse(conn, reason, detail)
            return None
        tls.settimeout(None)
        return tls

    def _check_identity(self, conn: Conn, tls: ssl.SSLSocket) -> PeerIdentity | None:
        der = tls.getpeercert(binary_form=True)
        if der is None:
            self._refuse(conn, RefusalReason.NO_CERTIFICATE, "the client sent no certificate")
            return None
        try:
            identity = identity_from_cert(der)
        except SecurityError as exc:
            self._refuse(conn, RefusalReason.NOT_A_NODE, str(exc))
            return None
        if identity.role not in self._allowed_roles:
            allowed = ", ".join(sorted(r.value for r in self._allowed_roles))
            self._refuse(
                conn,
                RefusalReason.NOT_A_NODE,
                f"certificate role {identity.role.value!r} is not admitted here (allowed: "
                f"{allowed})",
                identity.node_id,
            )
            return None
        with self._lock:
            conn.identity = identity  # visible to drop() from here on
        if conn.closed:
            return None
        try:
            revoked = bool(self._is_revoked(identity))
            why = f"certificate serial {identity.serial:x} of {identity.node_id} is revoked"
        except Exception as exc:
            _log.exception("gate: revocation check failed for %s", identity.node_id)
            revoked, why = True, f"revocation check failed, refusing to be safe: {exc!r}"
        if revoked:
            self._refuse(conn, RefusalReason.REVOKED, why, identity.node_id)
            return None
        return identity

    def _refuse(
        self, conn: Conn, reason: RefusalReason, detail: str, node_id: str | None = None
    ) -> None:
        refusal = Refusal(datetime.now(UTC), conn.peer_ip, reason, _one_line(detail), node_id)
        _log.warning(
            "gate refused %s (node %s): %s: %s",
            conn.label,
            _one_line(node_id) if node_id else "unknown",
            reason.value,
            refusal.detail,
        )
        try:
            self._on_refusal(refusal)
        except Exception:
            _log.exception("gate: on_refusal callback failed for the refusal of %s", conn.label)


def _one_line(text: str) -> str:
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)
