"""Full-duplex byte relay between a TLS client socket and a plain upstream socket.

One thread per direction. The plain upstream socket is used in blocking mode. The TLS
socket is non-blocking and every OpenSSL call on it holds a per-connection lock, while
the wait for readiness happens outside the lock: OpenSSL forbids using one ``SSL``
object from two threads at once (openssl/openssl#20446), and CPython does not serialise
``SSLSocket.recv`` against ``SSLSocket.send`` (python/cpython#151508).
"""

from __future__ import annotations

import logging
import selectors
import socket
import ssl
import threading

#: Relay buffer per direction. A TLS read returns one record (<= 16 KiB); the records already
#: on hand are gathered up to this size before one ``sendall`` upstream.
BUFFER_SIZE = 512 * 1024
#: Largest plaintext of one TLS record.
_TLS_RECORD = 16 * 1024
#: Largest slice handed to one TLS ``send``, bounding how long the lock is held.
_TLS_SEND_SLICE = 256 * 1024
#: After one direction ended cleanly (half-close), how long the other may keep flowing.
HALF_CLOSE_GRACE_S = 30.0
#: How long the relay waits for its second thread once both directions were told to stop.
_JOIN_S = 5.0
#: Longest single wait for the TLS socket to become ready before re-checking for abort.
_POLL_S = 1.0

_log = logging.getLogger("clawfed.security.gate")


def raw_shutdown(sock: socket.socket | None, how: int) -> None:
    """Shut down the TCP connection under ``sock`` (also an ``SSLSocket``), ignoring errors.

    ``SSLSocket.shutdown`` drops the TLS state first, so a concurrent ``send`` could leak
    plaintext; the base-class call only acts on the file descriptor.
    """
    if sock is None:
        return
    try:
        socket.socket.shutdown(sock, how)
    except OSError:
        pass


class _TlsEnd:
    """The TLS socket, with every OpenSSL call serialised and waits done unlocked."""

    def __init__(self, tls: ssl.SSLSocket, aborted: threading.Event) -> None:
        tls.setblocking(False)
        self._tls = tls
        self._lock = threading.Lock()
        self._aborted = aborted

    def recv_more(self, buf: memoryview) -> int | None:
        """Read what is available now without waiting; ``None`` if nothing is."""
        with self._lock:
            try:
                return self._tls.recv_into(buf)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return None

    def recv_into(self, buf: bytearray | memoryview, sel: selectors.BaseSelector) -> int:
        while True:
            with self._lock:
                try:
                    return self._tls.recv_into(buf)
                except ssl.SSLWantReadError:
                    want = selectors.EVENT_READ
                except ssl.SSLWantWriteError:
                    want = selectors.EVENT_WRITE
            self._wait(sel, want)

    def sendall(self, data: memoryview, sel: selectors.BaseSelector) -> None:
        sent = 0
        while sent < len(data):
            with self._lock:
                try:
                    sent += self._tls.send(data[sent : sent + _TLS_SEND_SLICE])
                    continue
                except ssl.SSLWantWriteError:
                    want = selectors.EVENT_WRITE
                except ssl.SSLWantReadError:
                    want = selectors.EVENT_READ
            self._wait(sel, want)

    def _wait(self, sel: selectors.BaseSelector, events: int) -> None:
        try:
            key = sel.get_key(self._tls)
        except KeyError:
            sel.register(self._tls, events)
        else:
            if key.events != events:
                sel.modify(self._tls, events)
        while not sel.select(_POLL_S):
            if self._aborted.is_set():
                raise ConnectionAbortedError("relay aborted")


class Relay:
    """Copies bytes both ways until both directions are done, one thread per direction.

    A clean end of stream on one side is passed on as a half-close (``SHUT_WR``) to the
    other side, which then has ``grace_s`` seconds to finish; an error on either side
    closes both. ``abort`` (from any thread) ends the relay promptly.
    """

    def __init__(
        self,
        client: ssl.SSLSocket,
        upstream: socket.socket,
        *,
        name: str,
        grace_s: float = HALF_CLOSE_GRACE_S,
    ) -> None:
        self._client = client
        self._upstream = upstream
        self._name = name
        self._grace_s = grace_s
        self._aborted = threading.Event()
        self._tls = _TlsEnd(client, self._aborted)
        self._up_done = threading.Event()
        self._down_done = threading.Event()
        #: Plaintext bytes relayed so far from the client upstream, and back to the client.
        self.bytes_in = 0
        self.bytes_out = 0

    def run(self) -> None:
        """Relay client to upstream in the calling thread and upstream to client in a helper.

        Returns when both directions have ended; the sockets are left open for the caller.
        """
        down = threading.Thread(target=self._down, name=f"{self._name}-down", daemon=True)
        down.start()
        self._up()
        down.join(_JOIN_S)
        if down.is_alive():
            self.abort()
            down.join(_JOIN_S)
            if down.is_alive():
                _log.error("gate: relay thread %s did not stop", down.name)

    def abort(self) -> None:
        """End both directions now (safe from any thread)."""
        self._aborted.set()
        raw_shutdown(self._client, socket.SHUT_RDWR)
        raw_shutdown(self._upstream, socket.SHUT_RDWR)

    def _up(self) -> None:
        buf = bytearray(BUFFER_SIZE)
        view = memoryview(buf)
        clean = False
        try:
            with selectors.DefaultSelector() as sel:
                while not clean:
                    filled = self._tls.recv_into(buf, sel)
                    if filled == 0:
                        clean = True
                        break
                    # gather the records already on hand into one send
                    while filled < BUFFER_SIZE - _TLS_RECORD:
                        more = self._tls.recv_more(view[filled:])
                        if more is None:
                            break
                        if more == 0:
                            clean = True
                            break
                        filled += more
                    self._upstream.sendall(view[:filled])
                    self.bytes_in += filled
        except (OSError, ValueError) as exc:
            clean = False
            _log.debug("gate: %s client stream ended: %s", self._name, exc)
        finally:
            self._up_done.set()
        self._finish(clean, self._upstream, self._down_done)

    def _down(self) -> None:
        buf = bytearray(BUFFER_SIZE)
        view = memoryview(buf)
        clean = False
        try:
            with selectors.DefaultSelector() as sel:
                while True:
                    n = self._upstream.recv_into(buf)
                    if n == 0:
                        clean = True
                        break
                    self._tls.sendall(view[:n], sel)
                    self.bytes_out += n
        except (OSError, ValueError) as exc:
            _log.debug("gate: %s upstream stream ended: %s", self._name, exc)
        finally:
            self._down_done.set()
        self._finish(clean, self._client, self._up_done)

    def _finish(self, clean: bool, dst: socket.socket, other_done: threading.Event) -> None:
        if not clean:
            self.abort()
            return
        raw_shutdown(dst, socket.SHUT_WR)
        if not other_done.wait(self._grace_s):
            _log.debug("gate: %s half-closed for %.0f s, closing", self._name, self._grace_s)
            self.abort()
