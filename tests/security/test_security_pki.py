"""The federation PKI: CA, server / node / admin certificates, chain checks, identities."""

from __future__ import annotations

import hashlib
import ipaddress
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from security_support import Pki

from clawfed.core import ConfigError, PeerRefused, RefusalReason, SecurityError
from clawfed.security import (
    CertKey,
    CertKeyMismatch,
    Role,
    create_ca,
    identity_from_cert,
    issue_admin_cert,
    issue_node_cert,
    issue_server_cert,
    read_cert_key,
    verify_chain,
    write_cert_key,
)


def _ext(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.Extension:  # type: ignore[type-arg]
    return cert.extensions.get_extension_for_class(kind)


def test_ca_is_a_p256_ca_that_signs_leaves_only(pki: Pki) -> None:
    ca = pki.ca.certificate
    key = ca.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    bc = _ext(ca, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = _ext(ca, x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign and not ku.digital_signature
    ski = _ext(ca, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(key)
    assert ca.subject == ca.issuer
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "clawfed test CA"
    ca.verify_directly_issued_by(ca)  # self-signed
    lifetime = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert timedelta(days=3650) <= lifetime <= timedelta(days=3651)


def test_server_cert_names_loopback_and_every_extra_host(pki: Pki) -> None:
    server = issue_server_cert(pki.ca, ["coord.corp.example", "10.1.2.3", "fd00::7", "localhost"])
    cert = server.certificate
    san = _ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "coord.corp.example"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("10.1.2.3"),
        ipaddress.ip_address("fd00::7"),
    ]
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    aki = _ext(cert, x509.AuthorityKeyIdentifier).value
    ca_ski = _ext(pki.ca.certificate, x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    assert not _ext(cert, x509.BasicConstraints).value.ca
    verify_chain(server.cert_pem, pki.ca.cert_pem)


def test_server_cert_without_extra_hosts_still_has_loopback(pki: Pki) -> None:
    san = _ext(issue_server_cert(pki.ca, []).certificate, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]


def test_node_cert_subject_in_utf8_and_client_auth(pki: Pki) -> None:
    cert = pki.node.certificate
    subject = cert.subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "credit"
    org = subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0]
    assert org.value == "信贷部"
    assert org._type is x509.name._ASN1Type.UTF8String
    assert "信贷部".encode() in cert.public_bytes(serialization.Encoding.DER)
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "node"
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert _ext(cert, x509.KeyUsage).value.digital_signature
    verify_chain(pki.node.cert_pem, pki.ca.cert_pem)


def test_serials_are_random_and_distinct(pki: Pki) -> None:
    serials = {issue_node_cert(pki.ca, "credit", "信贷部").serial for _ in range(5)}
    assert len(serials) == 5
    assert all(s.bit_length() > 64 for s in serials)


def test_identity_from_node_and_admin_certs_in_every_form(pki: Pki) -> None:
    der = pki.node.certificate.public_bytes(serialization.Encoding.DER)
    for form in (pki.node.cert_pem, der, pki.node.certificate):
        ident = identity_from_cert(form)
        assert (ident.node_id, ident.department, ident.role) == ("credit", "信贷部", Role.NODE)
        assert ident.serial == pki.node.serial
        assert ident.fingerprint == hashlib.sha256(der).hexdigest() == pki.node.fingerprint
    admin = identity_from_cert(issue_admin_cert(pki.ca, "bob", department="数据治理").cert_pem)
    assert (admin.node_id, admin.department, admin.role) == ("bob", "数据治理", Role.ADMIN)


def _cert_with(pki: Pki, attrs: list[x509.NameAttribute]) -> x509.Certificate:  # type: ignore[type-arg]
    key = ec.generate_private_key(ec.SECP256R1())
    ca_key = pki.ca.private_key
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attrs))
        .issuer_name(pki.ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )


def test_identity_needs_cn_o_and_a_known_ou(pki: Pki) -> None:
    cn = x509.NameAttribute(NameOID.COMMON_NAME, "credit")
    org = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "信贷部")
    ou = x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "node")
    with pytest.raises(SecurityError, match=r"no O \(department\)"):
        identity_from_cert(_cert_with(pki, [cn, ou]))
    with pytest.raises(SecurityError, match=r"no CN \(node id\)"):
        identity_from_cert(_cert_with(pki, [org, ou]))
    with pytest.raises(SecurityError, match=r"no OU \(role\)"):
        identity_from_cert(_cert_with(pki, [cn, org]))
    odd = x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "coordinator")
    with pytest.raises(SecurityError, match="must be one of node, admin, got 'coordinator'"):
        identity_from_cert(_cert_with(pki, [cn, org, odd]))
    with pytest.raises(SecurityError, match="not a valid X.509 certificate"):
        identity_from_cert(b"\x30\x03garbage")


def test_verify_chain_refuses_foreign_and_out_of_period(pki: Pki) -> None:
    with pytest.raises(PeerRefused) as info:
        verify_chain(pki.foreign_node.cert_pem, pki.ca.cert_pem)
    assert info.value.reason is RefusalReason.UNKNOWN_CA
    assert "not issued by the federation CA" in info.value.detail

    cert = pki.node.certificate
    for when in (
        cert.not_valid_after_utc + timedelta(seconds=1),
        cert.not_valid_before_utc - timedelta(seconds=1),
    ):
        with pytest.raises(PeerRefused) as info:
            verify_chain(pki.node.cert_pem, pki.ca.cert_pem, at=when)
        assert info.value.reason is RefusalReason.UNKNOWN_CA
        assert "is valid from" in info.value.detail

    with pytest.raises(PeerRefused, match="not a CA certificate"):
        verify_chain(pki.other_node.cert_pem, pki.node.cert_pem)


def test_certkey_checks_its_parts_and_hides_the_key(pki: Pki) -> None:
    with pytest.raises(CertKeyMismatch, match="does not belong"):
        CertKey(pki.node.cert_pem, pki.other_node.key_pem)
    with pytest.raises(SecurityError, match="not a valid PEM private key"):
        CertKey(
            pki.node.cert_pem, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
        )
    with pytest.raises(SecurityError, match="not a valid X.509"):
        CertKey(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", pki.node.key_pem)
    assert b"PRIVATE KEY" in pki.node.key_pem
    assert "PRIVATE" not in repr(pki.node)
    assert pki.node.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted


def test_encrypted_key_is_refused_with_a_hint(pki: Pki) -> None:
    key = pki.node.private_key
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(SecurityError, match="encrypted"):
        CertKey(pki.node.cert_pem, encrypted)


def test_cert_key_files_round_trip_with_private_key_mode(pki: Pki, tmp_path: Path) -> None:
    cert_path, key_path = tmp_path / "node.crt", tmp_path / "node.key"
    write_cert_key(pki.node, cert_path, key_path)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert_path.stat().st_mode) == 0o644
    assert read_cert_key(cert_path, key_path) == pki.node
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.crt", "node.key"]
    with pytest.raises(SecurityError, match="cannot read"):
        read_cert_key(tmp_path / "absent.crt", key_path)


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda ca: issue_node_cert(ca, "", "信贷部"), "node id must be a non-empty string"),
        (lambda ca: issue_node_cert(ca, "x" * 65, "信贷部"), "at most 64 characters"),
        (lambda ca: issue_node_cert(ca, "credit\n", "信贷部"), "printable"),
        (lambda ca: issue_node_cert(ca, "credit", " 信贷部"), "department must be printable"),
        (lambda ca: issue_node_cert(ca, "credit", "信贷部", valid_days=0), "valid_days"),
        (lambda ca: issue_server_cert(ca, ["bad host!"]), "'bad host!' is neither"),
        (lambda ca: issue_server_cert(ca, "coord.example"), "single string"),
        (lambda ca: issue_admin_cert(ca, ""), "admin name"),
    ],
)
def test_bad_names_are_config_errors(pki: Pki, call: object, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        call(pki.ca)  # type: ignore[operator]


def test_only_a_ca_can_issue(pki: Pki) -> None:
    with pytest.raises(SecurityError, match="not a CA certificate"):
        issue_node_cert(pki.node, "x", "y")
    with pytest.raises(ConfigError, match="valid_days"):
        create_ca("ca", valid_days=-1)
