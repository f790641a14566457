"""Federation PKI: the CA, coordinator / node / admin certificates and peer identities."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from clawfed.core.errors import ConfigError, PeerRefused, RefusalReason, SecurityError

#: Days a node, admin or coordinator certificate stays valid unless told otherwise.
LEAF_VALID_DAYS = 825
#: Certificates start this long before "now" so that peers with slightly slow clocks accept them.
_CLOCK_SKEW = timedelta(minutes=5)
#: Upper bound of X.520 CN / O / OU lengths (RFC 5280, ub-common-name and friends).
_MAX_NAME_LEN = 64
_DNS_NAME = re.compile(
    r"^(?=.{1,253}$)(\*\.)?[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


class Role(StrEnum):
    """What a client certificate entitles its holder to be (its subject's OU)."""

    NODE = "node"
    ADMIN = "admin"


class CertKeyMismatch(SecurityError):
    """A private key was paired with a certificate issued for another key."""


@dataclass(frozen=True)
class CertKey:
    """A PEM certificate with its PEM (PKCS#8, unencrypted) private key.

    Construction checks that both parse and that the key belongs to the certificate.
    """

    cert_pem: bytes
    key_pem: bytes = field(repr=False)
    _cert: x509.Certificate = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        cert = load_certificate(self.cert_pem)
        key = _load_private_key(self.key_pem)
        if _spki(cert.public_key()) != _spki(key.public_key()):
            raise CertKeyMismatch(
                f"the private key does not belong to certificate {_describe(cert)}; "
                "keep each certificate with the key it was issued for"
            )
        object.__setattr__(self, "_cert", cert)

    @property
    def certificate(self) -> x509.Certificate:
        """The parsed certificate."""
        return self._cert

    @property
    def private_key(self) -> PrivateKeyTypes:
        """The parsed private key."""
        return _load_private_key(self.key_pem)

    @property
    def serial(self) -> int:
        """The certificate's serial number."""
        return self._cert.serial_number

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the certificate's DER encoding, lower-case hex."""
        return self._cert.fingerprint(hashes.SHA256()).hex()


@dataclass(frozen=True)
class PeerIdentity:
    """Who a client certificate says its holder is."""

    node_id: str
    department: str
    role: Role
    serial: int
    fingerprint: str


def create_ca(common_name: str, valid_days: int = 3650) -> CertKey:
    """Create a self-signed federation CA (ECDSA P-256) that may sign leaf certificates only.

    Parameters
    ----------
    common_name
        Subject CN of the CA, e.g. ``"clawfed federation CA"``.
    valid_days
        Lifetime in days, > 0.
    """
    _check_name("CA common name", common_name)
    _check_days(valid_days)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return _pack(cert, key)


def issue_server_cert(
    ca: CertKey,
    hosts: Sequence[str],
    *,
    common_name: str = "clawfed-coordinator",
    valid_days: int = LEAF_VALID_DAYS,
) -> CertKey:
    """Issue the coordinator's TLS server certificate.

    The SANs always hold DNS ``localhost`` and IP ``127.0.0.1``, then every entry of
    ``hosts``: an IP literal becomes an IP SAN, anything else a DNS SAN.
    """
    if isinstance(hosts, str):
        raise ConfigError(f"hosts must be a list of host names, got the single string {hosts!r}")
    sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    for host in hosts:
        san = _san_for(host)
        if san not in sans:
            sans.append(san)
    _check_name("server common name", common_name)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "coordinator"),
        ]
    )
    return _issue(
        ca, subject, eku=ExtendedKeyUsageOID.SERVER_AUTH, sans=sans, valid_days=valid_days
    )


def issue_node_cert(
    ca: CertKey, node_id: str, department: str, *, valid_days: int = LEAF_VALID_DAYS
) -> CertKey:
    """Issue a node's client certificate: CN=node_id, O=department, OU=node."""
    return _issue_client(ca, node_id, department, Role.NODE, valid_days)


def issue_admin_cert(
    ca: CertKey, name: str, *, department: str = "federation", valid_days: int = LEAF_VALID_DAYS
) -> CertKey:
    """Issue an administrator's client certificate: CN=name, O=department, OU=admin."""
    return _issue_client(ca, name, department, Role.ADMIN, valid_days)


def verify_chain(cert_pem: bytes, ca_pem: bytes, *, at: datetime | None = None) -> None:
    """Raise ``PeerRefused(UNKNOWN_CA)`` unless ``ca_pem`` signed ``cert_pem`` and both are valid.

    ``at`` (default: now, UTC) is the instant at which both validity periods must hold.
    """
    cert = load_certificate(cert_pem)
    ca = load_certificate(ca_pem)
    when = at if at is not None else datetime.now(UTC)
    if not _is_ca(ca):
        raise PeerRefused(RefusalReason.UNKNOWN_CA, f"{_describe(ca)} is not a CA certificate")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise PeerRefused(
            RefusalReason.UNKNOWN_CA,
            f"certificate {_describe(cert)} was not issued by the federation CA {_describe(ca)}",
        ) from exc
    for what, c in (("certificate", cert), ("CA certificate", ca)):
        start, end = c.not_valid_before_utc, c.not_valid_after_utc
        if not start <= when <= end:
            raise PeerRefused(
                RefusalReason.UNKNOWN_CA,
                f"{what} {_describe(c)} is valid from {start.isoformat()} to {end.isoformat()}, "
                f"not at {when.isoformat()}",
            )


def identity_from_cert(cert: x509.Certificate | bytes) -> PeerIdentity:
    """Read the peer identity (CN, O, OU) from a certificate given parsed, as DER or as PEM."""
    c = cert if isinstance(cert, x509.Certificate) else load_certificate(cert)
    node_id = _single_attr(c, NameOID.COMMON_NAME, "CN (node id)")
    department = _single_attr(c, NameOID.ORGANIZATION_NAME, "O (department)")
    ou = _single_attr(c, NameOID.ORGANIZATIONAL_UNIT_NAME, "OU (role)")
    try:
        role = Role(ou)
    except ValueError as exc:
        raise SecurityError(
            f"certificate {_describe(c)}: OU (role) must be one of "
            f"{', '.join(r.value for r in Role)}, got {ou!r}"
        ) from exc
    return PeerIdentity(
        node_id=node_id,
        department=department,
        role=role,
        serial=c.serial_number,
        fingerprint=c.fingerprint(hashes.SHA256()).hex(),
    )


def load_certificate(data: bytes) -> x509.Certificate:
    """Parse one X.509 certificate given as PEM or DER; ``SecurityError`` if it is neither."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SecurityError(f"a certificate must be bytes, got {type(data).__name__}")
    raw = bytes(data)
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(raw)
        return x509.load_der_x509_certificate(raw)
    except ValueError as exc:
        raise SecurityError(
            f"not a valid X.509 certificate in PEM or DER form ({len(raw)} bytes): {exc}"
        ) from exc


def _issue_client(ca: CertKey, name: str, department: str, role: Role, valid_days: int) -> CertKey:
    what = "node id" if role is Role.NODE else "admin name"
    _check_name(what, name)
    _check_name("department", department)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, department),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role.value),
        ]
    )
    return _issue(ca, subject, eku=ExtendedKeyUsageOID.CLIENT_AUTH, sans=[], valid_days=valid_days)


def _issue(
    ca: CertKey,
    subject: x509.Name,
    *,
    eku: x509.ObjectIdentifier,
    sans: list[x509.GeneralName],
    valid_days: int,
) -> CertKey:
    _check_days(valid_days)
    ca_cert = ca.certificate
    if not _is_ca(ca_cert):
        raise SecurityError(f"{_describe(ca_cert)} is not a CA certificate; it cannot sign")
    ca_key = ca.private_key
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise SecurityError(f"the CA key must be an ECDSA key, got {type(ca_key).__name__}")
    now = datetime.now(UTC)
    not_after = min(now + timedelta(days=valid_days), ca_cert.not_valid_after_utc)
    if not_after <= now:
        raise SecurityError(
            f"CA {_describe(ca_cert)} expired on {ca_cert.not_valid_after_utc.isoformat()}; "
            "create a new CA and re-enroll every node"
        )
    try:
        ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return _pack(builder.sign(ca_key, hashes.SHA256()), key)


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _pack(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> CertKey:
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return CertKey(cert.public_bytes(serialization.Encoding.PEM), key_pem)


def _load_private_key(data: bytes) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(bytes(data), password=None)
    except TypeError as exc:
        raise SecurityError(
            "the private key is encrypted; clawfed expects an unencrypted PKCS#8 PEM key "
            "protected by file permissions (0600)"
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SecurityError(f"not a valid PEM private key: {exc}") from exc


def _spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _single_attr(cert: x509.Certificate, oid: x509.ObjectIdentifier, label: str) -> str:
    attrs = cert.subject.get_attributes_for_oid(oid)
    if not attrs:
        raise SecurityError(
            f"certificate {_describe(cert)} has no {label} in its subject; "
            "it was not issued by clawfed enrollment"
        )
    if len(attrs) > 1:
        raise SecurityError(f"certificate {_describe(cert)} has {len(attrs)} {label} attributes")
    value = attrs[0].value
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    if not text:
        raise SecurityError(f"certificate {_describe(cert)} has an empty {label}")
    return text


def _describe(cert: x509.Certificate) -> str:
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()[:16]
    return f"'{cert.subject.rfc4514_string()}' (sha256 {digest}…)"


def _check_name(what: str, value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{what} must be a non-empty string, got {value!r}")
    if value != value.strip() or not value.isprintable():
        raise ConfigError(
            f"{what} must be printable without leading/trailing spaces, got {value!r}"
        )
    if len(value) > _MAX_NAME_LEN:
        raise ConfigError(
            f"{what} must be at most {_MAX_NAME_LEN} characters, got {len(value)}: {value!r}"
        )


def _check_days(valid_days: int) -> None:
    if isinstance(valid_days, bool) or not isinstance(valid_days, int) or valid_days <= 0:
        raise ConfigError(f"valid_days must be a whole number > 0, got {valid_days!r}")


def _san_for(host: str) -> x509.GeneralName:
    if not isinstance(host, str) or not host:
        raise ConfigError(f"server host names must be non-empty strings, got {host!r}")
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not _DNS_NAME.match(host):
        raise ConfigError(
            f"server host {host!r} is neither an IP address nor a valid DNS name "
            "(letters, digits, '-' and '.', IDNA A-labels for non-ASCII names)"
        )
    return x509.DNSName(host.lower())
