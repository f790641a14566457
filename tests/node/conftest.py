"""Fixtures of the node tests: a small generated fraud scenario and its job."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from node_support import EXAMPLES, ROWS

from clawfed.coordinator.jobspec import JobSpec, parse_job
from clawfed.data.scenarios import make_fraud_scenario

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def fraud_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three departments, a few hundred rows each (seed 3)."""
    folder = tmp_path_factory.mktemp("fraud")
    make_fraud_scenario(3, ROWS, folder)
    return folder


@pytest.fixture(scope="session")
def fraud_job() -> JobSpec:
    """The example fraud job, shortened."""
    text = (EXAMPLES / "fraud-job.yaml").read_text(encoding="utf-8")
    return parse_job(text).model_copy(update={"rounds": 3})
