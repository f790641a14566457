"""Shared pieces of the coordinator tests: an in-memory ledger, and raw Session streams."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
from grpc import aio

from clawfed.coordinator.round_records import Progress, RoundReport
from clawfed.core import Weights
from clawfed.security.kit import Kit
from clawfed.wire.chunkwire import parse_coordinator_message, serialize_message

SESSION = "/clawfed.v1.Federation/Session"


class MemoryLedger:
    """Keeps a job's initial weights, completed rounds and failed attempts in lists.

    With ``fail_fast`` a failed attempt raises ``AssertionError`` (for tests in which no round
    may fail); otherwise it is appended to ``failed``.
    """

    def __init__(self, *, fail_fast: bool = False) -> None:
        self.fail_fast = fail_fast
        self.initial: Weights | None = None
        self.rounds: list[tuple[RoundReport, Weights]] = []
        self.failed: list[tuple[RoundReport, str]] = []

    def progress(self, job_id: str) -> Progress:
        del job_id
        w = self.rounds[-1][1] if self.rounds else self.initial
        return Progress(len(self.rounds), w, {})

    def save_initial(self, job_id: str, weights: Weights, source_node: str) -> None:
        del job_id, source_node
        self.initial = weights

    def save_prep(self, job_id: str, prep: Mapping[str, Any]) -> None:
        del job_id, prep

    def complete_round(
        self,
        report: RoundReport,
        weights: Weights,
        strategy_state: Mapping[str, Any],
        state_arrays: Weights | None = None,
    ) -> str:
        del strategy_state, state_arrays
        self.rounds.append((report, weights))
        return f"job@v{len(self.rounds)}"

    def record_failed_attempt(
        self, report: RoundReport, reason: str, *, final: bool = False
    ) -> None:
        if self.fail_fast:
            raise AssertionError(f"round {report.round_no} failed: {reason} (final={final})")
        self.failed.append((report, reason))


def node_credentials(kit: Kit) -> grpc.ChannelCredentials:
    """The TLS credentials a node holding ``kit`` dials the coordinator with."""
    return grpc.ssl_channel_credentials(
        root_certificates=kit.ca_cert.encode(),
        private_key=kit.key.encode(),
        certificate_chain=kit.cert.encode(),
    )


def session_call(channel: aio.Channel) -> aio.StreamStreamCall[object, object]:
    """Open the Session stream on ``channel``, speaking the wire byte by byte (no agent)."""
    method = channel.stream_stream(
        SESSION,
        request_serializer=serialize_message,
        response_deserializer=parse_coordinator_message,
    )
    return method(None)
