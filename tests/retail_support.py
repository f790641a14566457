"""The retail sales-forecast job shared by the chat and coordinator tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from clawfed.coordinator.jobspec import JobSpec, parse_job
from clawfed.coordinator.query import CurrentModel
from clawfed.coordinator.task_config import task_config
from clawfed.core import Weights
from clawfed.data.retail import make_retail_scenario
from clawfed.data.standardize import combine
from clawfed.node.dispatch import DispatchRunner, LocalData
from clawfed.node.learning_runner import moments_from_weights

JOB_FILE = Path(__file__).resolve().parents[1] / "examples" / "retail-job.yaml"
JOB = "retail-sales"


def retail_spec(**changes: Any) -> JobSpec:
    """``examples/retail-job.yaml`` with ``changes``."""
    data = yaml.safe_load(JOB_FILE.read_text(encoding="utf-8"))
    data.update(changes)
    return parse_job(yaml.safe_dump(data, allow_unicode=True), source="test")


def trained_federation(folder: Path) -> tuple[dict[str, DispatchRunner], CurrentModel]:
    """Three retail departments' runners and a model trained on them for two FedAvg rounds."""
    files = make_retail_scenario(4, folder)
    runners = {d: DispatchRunner({"retail": LocalData("retail", p)}) for d, p in files.items()}
    spec = retail_spec()
    stats = [moments_from_weights(r.stats(task_config(spec))) for r in runners.values()]
    standardizer = combine(stats).to_dict()
    weights = runners["sales"].init(task_config(spec, standardizer=standardizer))
    for round_no in (1, 2):
        config = task_config(spec, round_no=round_no, standardizer=standardizer)
        answers = [r.fit(config, weights) for r in runners.values()]
        total = sum(a.num_samples for a in answers)
        weights = Weights(
            (n, weights[n] + sum(a.delta[n] * (a.num_samples / total) for a in answers))
            for n in weights.keys()
        )
    return runners, CurrentModel(spec, f"{JOB}@v2", weights, standardizer)
