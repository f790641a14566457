"""The gate's TLS policy: its server context and how handshake failures are classified."""

from __future__ import annotations

import ssl
import tempfile
from pathlib import Path

from clawfed.core.errors import ConfigError, RefusalReason
from clawfed.security.files import write_private_file
from clawfed.security.pki import CertKey


def server_context(ca_cert_pem: bytes, server: CertKey) -> ssl.SSLContext:
    """TLS >= 1.2 server context requiring a client certificate from ``ca_cert_pem``, ALPN h2.

    Certificates are checked with OpenSSL's strict X.509 rules (``VERIFY_X509_STRICT``).

    Session tickets and renegotiation are off (no resumption is needed, and neither
    should write from inside a read). A TCP end of stream without ``close_notify`` counts
    as a clean end, so that a client's half-close leaves the other direction usable; the
    HTTP/2 framing above detects truncation.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    ctx.options |= ssl.OP_NO_TICKET | ssl.OP_NO_RENEGOTIATION | ssl.OP_IGNORE_UNEXPECTED_EOF
    ctx.num_tickets = 0
    ctx.set_alpn_protocols(["h2"])
    try:
        ctx.load_verify_locations(cadata=ca_cert_pem.decode("ascii"))
        with tempfile.TemporaryDirectory(prefix="clawfed-gate-") as tmp:
            cert_path, key_path = Path(tmp, "server.crt"), Path(tmp, "server.key")
            write_private_file(cert_path, server.cert_pem)
            write_private_file(key_path, server.key_pem)
            ctx.load_cert_chain(cert_path, key_path)
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"the gate cannot load its TLS certificates: {exc}") from exc
    return ctx


def classify_handshake_error(exc: OSError, timeout_s: float) -> tuple[RefusalReason, str]:
    """The refusal reason and a one-line detail for an exception from ``do_handshake``.

    A certificate that fails verification is ``UNKNOWN_CA``; a missing certificate, and
    every other handshake failure (not TLS at all, timeout, reset), is ``NO_CERTIFICATE``
    with a detail saying what happened.
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        return RefusalReason.UNKNOWN_CA, (
            f"client certificate failed verification: {exc.verify_message}"
        )
    if isinstance(exc, ssl.SSLError):
        if exc.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
            return RefusalReason.NO_CERTIFICATE, "the client sent no certificate"
        return RefusalReason.NO_CERTIFICATE, (
            f"TLS handshake failed ({exc.reason or exc}): not a TLS client, or no certificate"
        )
    if isinstance(exc, TimeoutError):
        return RefusalReason.NO_CERTIFICATE, (f"TLS handshake not completed within {timeout_s:g} s")
    return RefusalReason.NO_CERTIFICATE, (
        f"connection lost during the TLS handshake: {exc.strerror or exc}"
    )
