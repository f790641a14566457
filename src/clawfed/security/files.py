"""Key and certificate files: atomic writes, owner-only permissions for secrets."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from clawfed.core.errors import SecurityError
from clawfed.security.pki import CertKey


def write_private_file(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + ``os.replace``) with mode 0600."""
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise SecurityError(f"cannot write {target}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise SecurityError(f"cannot write {target}: {exc.strerror or exc}") from exc


def write_cert_key(
    cert_key: CertKey, cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]
) -> None:
    """Write a certificate (mode 0644) and its private key (mode 0600), each atomically."""
    write_private_file(key_path, cert_key.key_pem)
    write_private_file(cert_path, cert_key.cert_pem)
    os.chmod(cert_path, 0o644)


def read_cert_key(cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]) -> CertKey:
    """Read a certificate and its key written by ``write_cert_key``."""
    try:
        cert_pem = Path(cert_path).read_bytes()
        key_pem = Path(key_path).read_bytes()
    except OSError as exc:
        raise SecurityError(
            f"cannot read certificate/key {exc.filename}: {exc.strerror or exc}"
        ) from exc
    return CertKey(cert_pem, key_pem)
