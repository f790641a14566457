"""A 50 MB model crosses the real wire (mutual TLS, gate, gRPC) in chunks, both ways."""

from __future__ import annotations

import pytest
from conftest import WorkspaceFactory
from integration_support import enroll, job_yaml, run, running_agents, running_coordinator

from clawfed.coordinator.jobspec import parse_job
from clawfed.governance.artifacts import ArtifactStore
from clawfed.governance.jobs import JobStatus
from clawfed.governance.registry import ModelRegistry
from clawfed.governance.rounds import RoundRecord, RoundStatus

pytestmark = pytest.mark.slow  # moves 200 MB through TLS

PARAMS = 12_500_000
MODEL_BYTES = PARAMS * 4  # float32: 50 MB


def test_fifty_megabyte_model_completes_a_round_with_two_nodes(
    workspace_factory: WorkspaceFactory,
) -> None:
    # The coordinator and both nodes share this test's event loop, which hashes and copies
    # 50 MB at a time: heartbeats get the production-like slack they need for that.
    workspace = workspace_factory(heartbeat_interval_s=3.0)
    kits = [enroll(workspace, f"n{i}") for i in range(2)]

    async def scenario() -> tuple[str, str, list[RoundRecord], int, int]:
        async with running_coordinator(workspace) as c, running_agents(kits) as nodes:
            await nodes.connected()
            spec = parse_job(job_yaml("big", params=PARAMS, min_nodes=2, deadline_s=60))
            c.jobs.submit(spec, actor="test")
            await c.jobs.wait("big")
            info = c.jobs.info("big")
            version = ModelRegistry(c.db).latest("big")
            weights = ArtifactStore(workspace.artifacts / "big").load(
                version.artifact_path, version.sha256
            )
            return (
                info.status,
                info.message,
                c.jobs.store.rounds("big"),
                weights.nbytes,
                version.artifact_path.stat().st_size,
            )

    status, message, rounds, nbytes, file_size = run(scenario())

    assert status == JobStatus.COMPLETED, (message, [r.dropped for r in rounds])
    assert message == "final version big@v1"
    assert [(r.round_no, r.status) for r in rounds] == [(1, RoundStatus.COMPLETED)]
    assert rounds[0].bytes_down == 2 * MODEL_BYTES
    assert rounds[0].bytes_up == 2 * MODEL_BYTES
    assert sorted(p.node_id for p in rounds[0].participants) == ["n0", "n1"]
    assert nbytes == MODEL_BYTES
    assert MODEL_BYTES < file_size < MODEL_BYTES + 4096  # the tensor plus a safetensors header
