"""The exception tree of clawfed and the reason codes carried by refusals and rejections.

::

    ClawfedError
     ├── ConfigError              a config file, job file or option is wrong
     ├── DataError                a dataset cannot be read or does not match its declaration
     ├── SecurityError            certificates, keys, kits
     │    └── PeerRefused         a peer was refused a connection (carries a RefusalReason)
     ├── WireError                the coordinator-node protocol
     │    ├── ProtocolVersionMismatch
     │    └── PayloadError        a tensor payload is malformed (carries a RejectReason)
     ├── UpdateRejected           an update failed validation (carries a RejectReason)
     ├── StoreError               the SQL store or the artifact folder
     │    └── NotFoundError       a named record does not exist
     └── JobError                 a job cannot run or has failed
"""

from __future__ import annotations

from enum import StrEnum


class ClawfedError(Exception):
    """Base of every error clawfed raises on purpose; its message is fit for a user."""


class ConfigError(ClawfedError):
    """A configuration value, file or command-line option is invalid."""


class DataError(ClawfedError):
    """A dataset cannot be read or does not match what was declared."""


class SecurityError(ClawfedError):
    """A certificate, key, kit or identity check failed."""


class RefusalReason(StrEnum):
    """Why the coordinator refused a connecting peer."""

    NO_CERTIFICATE = "no_certificate"
    UNKNOWN_CA = "unknown_ca"
    REVOKED = "revoked"
    IP_NOT_ALLOWED = "ip_not_allowed"
    NOT_A_NODE = "not_a_node"
    NOT_AN_ADMIN = "not_an_admin"
    DUPLICATE_SESSION = "duplicate_session"
    PROTOCOL_MISMATCH = "protocol_mismatch"
    UNKNOWN_NODE = "unknown_node"


class PeerRefused(SecurityError):
    """A peer was refused; ``reason`` says why in a machine-readable way."""

    def __init__(self, reason: RefusalReason, detail: str) -> None:
        super().__init__(f"connection refused ({reason}): {detail}")
        self.reason = reason
        self.detail = detail


class WireError(ClawfedError):
    """The coordinator-node protocol was violated or the stream broke."""


class ProtocolVersionMismatch(WireError):
    """The two sides speak different protocol versions."""

    def __init__(self, ours: int, theirs: int) -> None:
        super().__init__(
            f"protocol version mismatch: this side speaks v{ours}, the peer speaks v{theirs}; "
            "upgrade the older of the two so both run the same clawfed release"
        )
        self.ours = ours
        self.theirs = theirs


class RejectReason(StrEnum):
    """Why an update (or its payload) was rejected."""

    UNKNOWN_TENSOR = "unknown_tensor"
    MISSING_TENSOR = "missing_tensor"
    SHAPE_MISMATCH = "shape_mismatch"
    DTYPE_MISMATCH = "dtype_mismatch"
    NON_FINITE = "non_finite"
    DIGEST_MISMATCH = "digest_mismatch"
    TRUNCATED = "truncated"
    OVERSIZE = "oversize"
    BAD_CHUNK = "bad_chunk"
    BAD_HEADER = "bad_header"
    BAD_SAMPLE_COUNT = "bad_sample_count"
    NODE_ERROR = "node_error"


class PayloadError(WireError):
    """A tensor payload could not be reassembled; ``reason`` says why."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"payload rejected ({reason}): {detail}")
        self.reason = reason
        self.detail = detail


class UpdateRejected(ClawfedError):
    """An update failed validation against the global model; ``reason`` says why."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"update rejected ({reason}): {detail}")
        self.reason = reason
        self.detail = detail


class StoreError(ClawfedError):
    """The SQL store or the artifact folder failed or holds inconsistent data."""


class NotFoundError(StoreError):
    """A named record (node, job, version) does not exist."""


class JobError(ClawfedError):
    """A job cannot be run, or failed while running."""
