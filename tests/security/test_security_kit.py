"""Enrollment kits: round trip, file mode, and one specific error for every kind of bad kit."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from security_support import Pki

from clawfed.core import ConfigError, SecurityError
from clawfed.security import (
    KIT_FORMAT,
    Kit,
    KitError,
    KitProblem,
    Role,
    build_kit,
    load_kit,
    parse_coordinator_address,
    write_kit,
)


@pytest.fixture
def kit(pki: Pki) -> Kit:
    return build_kit(pki.ca, "credit", "信贷部", "coordinator.corp:18789")


def _doc(kit: Kit) -> dict[str, Any]:
    return {
        "format": KIT_FORMAT,
        "node_id": kit.node_id,
        "department": kit.department,
        "coordinator": kit.coordinator,
        "ca_cert": kit.ca_cert,
        "cert": kit.cert,
        "key": kit.key,
    }


def _write(path: Path, doc: object) -> Path:
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return path


def _problem(path: Path) -> KitError:
    with pytest.raises(KitError) as info:
        load_kit(path)
    err = info.value
    assert str(path) in str(err)
    return err


def test_kit_round_trip_is_private_and_utf8(kit: Kit, pki: Pki, tmp_path: Path) -> None:
    path = tmp_path / "credit.kit"
    write_kit(path, kit)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = path.read_bytes()
    assert "信贷部".encode() in raw  # stored as UTF-8, not \\u escapes
    doc = json.loads(raw.decode("utf-8"))
    assert doc["format"] == "clawfed-kit/1"
    assert set(doc) == {"format", "node_id", "department", "coordinator", "ca_cert", "cert", "key"}

    loaded = load_kit(path)
    assert loaded == kit
    assert (loaded.host, loaded.port) == ("coordinator.corp", 18789)
    assert loaded.identity.role is Role.NODE
    assert loaded.cert_key.fingerprint == loaded.identity.fingerprint
    assert loaded.ca_cert.encode() == pki.ca.cert_pem
    assert "PRIVATE" not in repr(loaded)
    assert [p.name for p in tmp_path.iterdir()] == ["credit.kit"]  # no temp file left


def test_write_replaces_an_existing_kit_atomically(kit: Kit, pki: Pki, tmp_path: Path) -> None:
    path = tmp_path / "credit.kit"
    write_kit(path, kit)
    newer = build_kit(pki.ca, "credit", "信贷部", "[fd00::1]:18789")
    write_kit(path, newer)
    assert load_kit(path) == newer
    assert load_kit(path).host == "fd00::1"


def test_missing_file(tmp_path: Path) -> None:
    assert _problem(tmp_path / "absent.kit").problem is KitProblem.FILE_MISSING


def test_directory_is_not_a_kit(tmp_path: Path) -> None:
    assert _problem(tmp_path).problem is KitProblem.UNREADABLE


def test_not_json(tmp_path: Path) -> None:
    path = tmp_path / "x.kit"
    path.write_text('{"format": "clawfed-kit/1",', encoding="utf-8")
    err = _problem(path)
    assert err.problem is KitProblem.NOT_JSON
    assert "line 1" in str(err)
    assert err.__cause__ is not None


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "x.kit"
    path.write_bytes(b'{"node_id": "\xff\xfe"}')
    assert _problem(path).problem is KitProblem.NOT_JSON


def test_json_but_not_an_object(tmp_path: Path) -> None:
    assert _problem(_write(tmp_path / "x.kit", ["a"])).problem is KitProblem.NOT_JSON


def test_too_large(tmp_path: Path) -> None:
    path = tmp_path / "x.kit"
    path.write_bytes(b" " * (1024 * 1024 + 1))
    assert _problem(path).problem is KitProblem.TOO_LARGE


@pytest.mark.parametrize("tag", ["clawfed-kit/2", None, 1])
def test_wrong_format_tag(kit: Kit, tmp_path: Path, tag: object) -> None:
    doc = _doc(kit)
    doc["format"] = tag
    err = _problem(_write(tmp_path / "x.kit", doc))
    assert err.problem is KitProblem.WRONG_FORMAT
    assert repr(tag) in str(err)


@pytest.mark.parametrize(
    "field", ["node_id", "department", "coordinator", "ca_cert", "cert", "key"]
)
def test_missing_field(kit: Kit, tmp_path: Path, field: str) -> None:
    doc = _doc(kit)
    del doc[field]
    err = _problem(_write(tmp_path / "x.kit", doc))
    assert err.problem is KitProblem.MISSING_FIELD
    assert repr(field) in str(err)


def test_field_of_wrong_type(kit: Kit, tmp_path: Path) -> None:
    doc = _doc(kit)
    doc["cert"] = 42
    err = _problem(_write(tmp_path / "x.kit", doc))
    assert err.problem is KitProblem.BAD_FIELD
    assert "'cert'" in str(err)


def test_cert_not_matching_key(kit: Kit, pki: Pki, tmp_path: Path) -> None:
    doc = _doc(kit)
    doc["key"] = pki.other_node.key_pem.decode()
    err = _problem(_write(tmp_path / "x.kit", doc))
    assert err.problem is KitProblem.KEY_MISMATCH
    assert err.__cause__ is not None


def test_garbage_pem(kit: Kit, tmp_path: Path) -> None:
    doc = _doc(kit)
    doc["cert"] = "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"
    err = _problem(_write(tmp_path / "x.kit", doc))
    assert err.problem is KitProblem.BAD_FIELD
    assert isinstance(err, SecurityError)


def test_cert_not_signed_by_the_kits_ca(kit: Kit, pki: Pki, tmp_path: Path) -> None:
    doc = _doc(kit)
    doc["ca_cert"] = pki.foreign_ca.cert_pem.decode()
    err = _problem(_write(tmp_path / "x.kit", doc))
    assert err.problem is KitProblem.NOT_SIGNED_BY_CA
    assert "fresh kit" in str(err)


def test_names_must_match_the_certificate(kit: Kit, pki: Pki, tmp_path: Path) -> None:
    doc = _doc(kit)
    doc["department"] = "合规部"
    err = _problem(_write(tmp_path / "x.kit", doc))
    assert err.problem is KitProblem.IDENTITY_MISMATCH
    assert "合规部" in str(err) and "信贷部" in str(err)

    admin_doc = _doc(kit)
    admin_doc.update(
        node_id="alice",
        department="federation",
        cert=pki.admin.cert_pem.decode(),
        key=pki.admin.key_pem.decode(),
    )
    err = _problem(_write(tmp_path / "y.kit", admin_doc))
    assert err.problem is KitProblem.IDENTITY_MISMATCH
    assert "admin 'alice'" in str(err)


def test_expired_certificate(kit: Kit, pki: Pki, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    ca_key = pki.ca.private_key
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, "credit"),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "信贷部"),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "node"),
                ]
            )
        )
        .issuer_name(pki.ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=10))
        .not_valid_after(now - timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    doc = _doc(kit)
    doc["cert"] = cert.public_bytes(serialization.Encoding.PEM).decode()
    doc["key"] = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    err = _problem(_write(tmp_path / "x.kit", doc))
    assert err.problem is KitProblem.EXPIRED
    assert "valid from" in str(err)


@pytest.mark.parametrize(
    "address",
    [
        "coordinator.corp",
        "coordinator.corp:",
        "coordinator.corp:0",
        "coordinator.corp:65536",
        "coord:80x",
        "::1:18789",
        "[::1]18789",
        "[not-v6]:18789",
        "bad_host!:18789",
        ":18789",
    ],
)
def test_malformed_coordinator_address(kit: Kit, tmp_path: Path, address: str) -> None:
    doc = _doc(kit)
    doc["coordinator"] = address
    err = _problem(_write(tmp_path / "x.kit", doc))
    assert err.problem is KitProblem.BAD_COORDINATOR
    assert repr(address) in str(err)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("coordinator.corp:18789", ("coordinator.corp", 18789)),
        ("10.0.0.5:1", ("10.0.0.5", 1)),
        ("[fd00::1]:65535", ("fd00::1", 65535)),
        ("localhost:18789", ("localhost", 18789)),
    ],
)
def test_parse_coordinator_address(address: str, expected: tuple[str, int]) -> None:
    assert parse_coordinator_address(address) == expected


def test_parse_coordinator_address_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="port must be a number from 1 to 65535"):
        parse_coordinator_address("host:99999")


def test_kit_constructor_validates_too(pki: Pki, kit: Kit) -> None:
    with pytest.raises(KitError) as info:
        Kit(
            node_id="credit",
            department="信贷部",
            coordinator="coordinator.corp:18789",
            ca_cert=kit.ca_cert,
            cert=kit.cert,
            key=pki.node.key_pem.decode(),
        )
    assert info.value.problem is KitProblem.KEY_MISMATCH
