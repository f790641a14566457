"""Enrollment kits: the one file a node needs to join the federation (identity, CA, address)."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from cryptography.exceptions import InvalidSignature

from clawfed.core.errors import ConfigError, PeerRefused, SecurityError
from clawfed.security.files import write_private_file
from clawfed.security.pki import (
    CertKey,
    CertKeyMismatch,
    PeerIdentity,
    Role,
    identity_from_cert,
    issue_node_cert,
    load_certificate,
    verify_chain,
)

#: Value of the ``format`` field of every kit this version writes and reads.
KIT_FORMAT = "clawfed-kit/1"
#: A kit holds three PEM blocks and a few names; anything larger is not a kit.
MAX_KIT_BYTES = 1 << 20
_FIELDS = ("node_id", "department", "coordinator", "ca_cert", "cert", "key")
_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)

_log = logging.getLogger(__name__)


class KitProblem(StrEnum):
    """What is wrong with a kit, machine-readable."""

    FILE_MISSING = "file_missing"
    UNREADABLE = "unreadable"
    TOO_LARGE = "too_large"
    NOT_JSON = "not_json"
    WRONG_FORMAT = "wrong_format"
    MISSING_FIELD = "missing_field"
    BAD_FIELD = "bad_field"
    KEY_MISMATCH = "key_mismatch"
    NOT_SIGNED_BY_CA = "not_signed_by_ca"
    IDENTITY_MISMATCH = "identity_mismatch"
    EXPIRED = "expired"
    BAD_COORDINATOR = "bad_coordinator"


class KitError(SecurityError):
    """A kit cannot be used; ``problem`` says why in a machine-readable way."""

    def __init__(self, problem: KitProblem, message: str) -> None:
        super().__init__(message)
        self.problem = problem


@dataclass(frozen=True)
class Kit:
    """Everything a node needs to connect: its identity, the CA and the coordinator address.

    Construction checks that the certificate matches the key, was issued by ``ca_cert``
    and names ``node_id`` / ``department`` as a node, and that ``coordinator`` is
    ``host:port`` (IPv6 in brackets: ``[fd00::1]:18789``).
    """

    node_id: str
    department: str
    coordinator: str
    ca_cert: str
    cert: str
    key: str = field(repr=False)

    def __post_init__(self) -> None:
        for name in _FIELDS:
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise KitError(
                    KitProblem.BAD_FIELD, f"kit field {name!r} must be a non-empty string"
                )
        try:
            parse_coordinator_address(self.coordinator)
        except ConfigError as exc:
            raise KitError(KitProblem.BAD_COORDINATOR, str(exc)) from exc
        try:
            load_certificate(self.ca_cert.encode("utf-8"))
        except SecurityError as exc:
            raise KitError(KitProblem.BAD_FIELD, f"kit field 'ca_cert': {exc}") from exc
        try:
            cert_key = CertKey(self.cert.encode("utf-8"), self.key.encode("utf-8"))
        except CertKeyMismatch as exc:
            raise KitError(KitProblem.KEY_MISMATCH, f"kit fields 'cert'/'key': {exc}") from exc
        except SecurityError as exc:
            raise KitError(KitProblem.BAD_FIELD, f"kit fields 'cert'/'key': {exc}") from exc
        cert = cert_key.certificate
        try:
            cert.verify_directly_issued_by(load_certificate(self.ca_cert.encode("utf-8")))
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise KitError(
                KitProblem.NOT_SIGNED_BY_CA,
                f"the node certificate (serial {cert.serial_number:x}) was not issued by the "
                "kit's CA certificate; ask the data admin for a fresh kit",
            ) from exc
        try:
            ident = identity_from_cert(cert)
        except SecurityError as exc:
            raise KitError(KitProblem.IDENTITY_MISMATCH, str(exc)) from exc
        wanted = (self.node_id, self.department, Role.NODE)
        found = (ident.node_id, ident.department, ident.role)
        if found != wanted:
            raise KitError(
                KitProblem.IDENTITY_MISMATCH,
                f"the kit names node {self.node_id!r} of {self.department!r}, but its "
                f"certificate is for {ident.role.value} {ident.node_id!r} of {ident.department!r}",
            )

    @property
    def host(self) -> str:
        """Host part of ``coordinator`` (without IPv6 brackets)."""
        return parse_coordinator_address(self.coordinator)[0]

    @property
    def port(self) -> int:
        """Port part of ``coordinator``."""
        return parse_coordinator_address(self.coordinator)[1]

    @property
    def cert_key(self) -> CertKey:
        """The node's certificate with its key."""
        return CertKey(self.cert.encode("utf-8"), self.key.encode("utf-8"))

    @property
    def identity(self) -> PeerIdentity:
        """The identity the node's certificate carries."""
        return identity_from_cert(self.cert.encode("utf-8"))


def build_kit(ca: CertKey, node_id: str, department: str, coordinator: str) -> Kit:
    """Issue a node certificate with ``ca`` and pack it into a kit for ``coordinator``."""
    node = issue_node_cert(ca, node_id, department)
    return Kit(
        node_id=node_id,
        department=department,
        coordinator=coordinator,
        ca_cert=ca.cert_pem.decode("ascii"),
        cert=node.cert_pem.decode("ascii"),
        key=node.key_pem.decode("ascii"),
    )


def write_kit(path: str | os.PathLike[str], kit: Kit) -> None:
    """Write ``kit`` to ``path`` as UTF-8 JSON, atomically and readable by the owner only."""
    doc = {"format": KIT_FORMAT, **{name: getattr(kit, name) for name in _FIELDS}}
    data = (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    write_private_file(path, data)


def load_kit(path: str | os.PathLike[str]) -> Kit:
    """Read and check a kit; every problem raises a ``KitError`` naming the file and the rule."""
    p = Path(path)
    doc = _read_document(p)
    tag = doc.get("format")
    if tag != KIT_FORMAT:
        raise KitError(
            KitProblem.WRONG_FORMAT,
            f"kit {p}: format must be {KIT_FORMAT!r}, got {tag!r}; is this a clawfed kit of "
            "a newer or older release?",
        )
    values: dict[str, str] = {}
    for name in _FIELDS:
        if name not in doc:
            raise KitError(KitProblem.MISSING_FIELD, f"kit {p}: required field {name!r} is missing")
        value = doc[name]
        if not isinstance(value, str) or not value:
            raise KitError(
                KitProblem.BAD_FIELD,
                f"kit {p}: field {name!r} must be a non-empty string, got {type(value).__name__}",
            )
        values[name] = value
    try:
        kit = Kit(**values)
    except KitError as exc:
        raise KitError(exc.problem, f"kit {p}: {exc}") from exc
    try:
        verify_chain(kit.cert.encode("utf-8"), kit.ca_cert.encode("utf-8"), at=datetime.now(UTC))
    except PeerRefused as exc:
        raise KitError(
            KitProblem.EXPIRED, f"kit {p}: {exc.detail}; ask the data admin for a fresh kit"
        ) from exc
    mode = p.stat().st_mode & 0o777
    if mode & 0o077:
        _log.warning("kit %s is readable by others (mode %o); run: chmod 600 %s", p, mode, p)
    return kit


def parse_coordinator_address(text: str) -> tuple[str, int]:
    """Split ``host:port`` or ``[v6addr]:port`` into host and port; ``ConfigError`` if malformed."""
    if not isinstance(text, str):
        raise ConfigError(f"coordinator address must be a string, got {type(text).__name__}")
    hint = "expected host:port, e.g. coordinator.corp:18789 or [fd00::1]:18789"
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ConfigError(f"coordinator address {text!r} is malformed; {hint}")
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise ConfigError(
                f"coordinator address {text!r}: {host!r} in brackets is not an IPv6 address"
            ) from exc
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ConfigError(f"coordinator address {text!r} has no port; {hint}")
        if ":" in host:
            raise ConfigError(
                f"coordinator address {text!r}: put an IPv6 address in brackets; {hint}"
            )
        if not _is_ipv4(host) and not _HOST_NAME.match(host):
            raise ConfigError(f"coordinator address {text!r}: {host!r} is not a valid host name")
    if not port_text.isascii() or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigError(
            f"coordinator address {text!r}: port must be a number from 1 to 65535, "
            f"got {port_text!r}"
        )
    return host, int(port_text)


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def _read_document(p: Path) -> dict[str, object]:
    try:
        size = p.stat().st_size
    except FileNotFoundError as exc:
        raise KitError(
            KitProblem.FILE_MISSING,
            f"kit file {p} does not exist; ask the data admin to run `clawfed enroll` for "
            "this node and copy the kit here",
        ) from exc
    except OSError as exc:
        raise KitError(KitProblem.UNREADABLE, f"cannot read kit {p}: {exc.strerror}") from exc
    if not p.is_file():
        raise KitError(KitProblem.UNREADABLE, f"kit {p} is not a regular file")
    if size > MAX_KIT_BYTES:
        raise KitError(
            KitProblem.TOO_LARGE, f"kit {p} is {size} bytes; a kit is at most {MAX_KIT_BYTES}"
        )
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise KitError(KitProblem.UNREADABLE, f"cannot read kit {p}: {exc.strerror}") from exc
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise KitError(
            KitProblem.NOT_JSON, f"kit {p} is not UTF-8 text (bad byte at offset {exc.start})"
        ) from exc
    except json.JSONDecodeError as exc:
        raise KitError(
            KitProblem.NOT_JSON,
            f"kit {p} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        ) from exc
    if not isinstance(doc, dict):
        raise KitError(
            KitProblem.NOT_JSON, f"kit {p} must hold a JSON object, got {type(doc).__name__}"
        )
    return doc
