"""Federation security: PKI, enrollment kits, IP allowlists and the mutual-TLS gate."""

from clawfed.security.allowlist import DEFAULT_ALLOWLIST, IpAllowlist
from clawfed.security.files import read_cert_key, write_cert_key, write_private_file
from clawfed.security.gate import DEFAULT_PORT, Refusal, TlsGate
from clawfed.security.kit import (
    KIT_FORMAT,
    Kit,
    KitError,
    KitProblem,
    build_kit,
    load_kit,
    parse_coordinator_address,
    write_kit,
)
from clawfed.security.peer import parse_grpc_peer
from clawfed.security.pki import (
    CertKey,
    CertKeyMismatch,
    PeerIdentity,
    Role,
    create_ca,
    identity_from_cert,
    issue_admin_cert,
    issue_node_cert,
    issue_server_cert,
    load_certificate,
    verify_chain,
)

__all__ = [
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
]
