"""``mode: async`` job files through the FedBuff engine: the spec's settings, compression on
the wire, the pooled task config, and a slow department that never holds back the others."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from coordinator_support import MemoryLedger

from clawfed.coordinator.async_engine import AsyncRoundEngine
from clawfed.coordinator.gateway import TaskKind, TaskOutcome, TaskRequest
from clawfed.coordinator.jobspec import JobMode, parse_job
from clawfed.coordinator.memory_gateway import MemoryGateway
from clawfed.core import ConfigError, NodeInfo, Weights
from clawfed.wire.codecs import UpdateCompressor

D = 256


def node(value: float, delay: float, configs: list[Mapping[str, Any]]) -> Any:
    compressor = UpdateCompressor()

    async def behave(request: TaskRequest, weights: Weights | None) -> TaskOutcome:
        if request.kind is TaskKind.INIT:
            return TaskOutcome("x", 0, {}, Weights({"w": np.zeros(D, np.float32)}))
        assert weights is not None and request.expected != weights.spec()  # the int8 layout
        configs.append(request.config)
        await asyncio.sleep(delay)
        wire = compressor.encode(
            request.job_id, request.config, Weights({"w": np.full(D, value, np.float32)})
        )
        return TaskOutcome("x", 10, {"loss": value}, wire, bytes_up=wire.nbytes)

    return behave


def test_async_job_file_runs_fedbuff_with_compression_and_a_slow_node() -> None:
    spec = parse_job(
        "name: a\nmodel: {name: noop, settings: {params: 256}}\nrounds: 3\nmin_nodes: 1\n"
        "round_deadline_s: 30\nmode: async\nfedbuff: {buffer_size: 2}\ncompression: int8\n"
    )
    assert spec.mode is JobMode.ASYNC and spec.fedbuff is not None
    gw, ledger = MemoryGateway(), MemoryLedger(fail_fast=True)
    configs: list[Mapping[str, Any]] = []
    gw.connect(NodeInfo("fast1", "d1"), node(1.0, 0.0, configs))
    gw.connect(NodeInfo("fast2", "d2"), node(3.0, 0.0, configs))
    gw.connect(NodeInfo("slow", "d3"), node(100.0, 20.0, configs))
    engine = AsyncRoundEngine(gw, ledger, job_id="a", spec=spec, settings=spec.fedbuff)
    asyncio.run(asyncio.wait_for(engine.run(), 10))
    assert len(ledger.rounds) == 3
    for report, _ in ledger.rounds:
        assert "slow" not in [p.node_id for p in report.participants]
        assert report.bytes_up == 2 * (D + 4)  # two int8 updates with one float32 scale each
        assert report.details is not None and report.details.compression is not None
        assert report.details.compression.bytes_decoded == 2 * D * 4
        assert sum(w.share for w in report.details.weights) == pytest.approx(1.0)
    assert float(ledger.rounds[-1][1]["w"][0]) == pytest.approx(
        float(np.mean(ledger.rounds[-1][1]["w"])), rel=1e-6
    )
    assert "slow" in [n for n, _ in gw.cancelled]  # still training when the job ended
    # the tasks carry the job's full config (model, codec), as the sync engine sends it
    assert {c["model.name"] for c in configs} == {"noop"}
    assert {c["compression.codec"] for c in configs} == {"int8"}


def test_async_mode_refuses_what_fedbuff_cannot_do() -> None:
    base = "name: a\nmodel: {name: noop}\nrounds: 1\n"
    with pytest.raises(ConfigError, match="does not support strategy 'krum', contribution"):
        parse_job(base + "mode: async\nstrategy: {name: krum}\ncontribution: {}\n")
    with pytest.raises(ConfigError, match="does not support requires_approval"):
        parse_job(base + "mode: async\npurpose: fraud\nrequires_approval: true\n")
    with pytest.raises(ConfigError, match="fedbuff settings need `mode: async`"):
        parse_job(base + "fedbuff: {buffer_size: 2}\n")
    with pytest.raises(ConfigError, match="fedbuff.buffer_size"):
        parse_job(base + "mode: async\nfedbuff: {buffer_size: 0}\n")
