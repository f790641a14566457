"""The curated public API of ``clawfed.security``."""

from __future__ import annotations

import clawfed.security as security


def test_exported_members() -> None:
    assert set(security.__all__) == {
        "DEFAULT_ALLOWLIST",
        "DEFAULT_PORT",
        "KIT_FORMAT",
        "CertKey",
        "CertKeyMismatch",
        "IpAllowlist",
        "Kit",
        "KitError",
        "KitProblem",
        "PeerIdentity",
        "Refusal",
        "Role",
        "TlsGate",
        "build_kit",
        "create_ca",
        "identity_from_cert",
        "issue_admin_cert",
        "issue_node_cert",
        "issue_server_cert",
        "load_certificate",
        "load_kit",
        "parse_coordinator_address",
        "parse_grpc_peer",
        "read_cert_key",
        "verify_chain",
        "write_cert_key",
        "write_kit",
        "write_private_file",
    }
    for name in security.__all__:
        member = getattr(security, name)
        assert getattr(member, "__module__", "clawfed.security").startswith("clawfed.security")
    assert security.DEFAULT_PORT == 18789
