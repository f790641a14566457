"""The aggregation sections of a job file: parsing, refusals naming the rule, task config."""

from __future__ import annotations

import pytest

from clawfed.aggregation.free_riders import FreeRiderPolicy
from clawfed.coordinator.jobspec import parse_job
from clawfed.coordinator.task_config import task_config
from clawfed.core import ConfigError
from clawfed.wire.codecs import CodecName, UpdateCompressor, codec_from_config

BASE = "name: j\nmodel: {name: noop}\nrounds: 2\n"


def test_sections_parse_with_shorthands_and_round_trip_through_yaml() -> None:
    spec = parse_job(
        BASE + "free_riders: downweight\ncompression: topk\n"
        "weighting: {samples: 0.5, quality: 2, contribution: 1.0}\n"
        "contribution: {metric: log_loss, validators: [audit-1], every: 2}\n"
        "anomaly: {metric: loss, threshold: 0.1}\n"
    )
    assert spec.free_riders is not None and spec.free_riders.policy is FreeRiderPolicy.DOWNWEIGHT
    assert spec.compression is not None and spec.compression.codec is CodecName.TOPK
    assert spec.weighting is not None and spec.weighting.formula().quality_exponent == 2.0
    assert spec.contribution is not None and not spec.contribution.better_high()
    assert not spec.anomaly_options().settings().higher_is_better
    assert parse_job(spec.to_yaml()) == spec


def test_jobs_without_the_sections_keep_their_stored_form() -> None:
    spec = parse_job(BASE)
    assert "compression" not in spec.to_yaml() and "anomaly" not in spec.to_yaml()
    assert not any(k.startswith("compression.") for k in task_config(spec))
    assert spec.anomaly_options().settings().metric == "accuracy"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("strategy: {name: median}\nweighting: {}\n",
         "weighting cannot be used with strategy 'median': its rule ignores sample counts"),
        ("strategy: {name: quality_weighted}\nweighting: {}\n",
         "weighting cannot be used with strategy 'quality_weighted'"),
        ("strategy: {name: krum}\nfree_riders: downweight\n",
         "free_riders policy downweight has no effect with strategy 'krum'"),
        ("strategy: {name: quality_weighted}\nfree_riders: downweight\n",
         "downweight cannot be combined with strategy 'quality_weighted'"),
        ("min_nodes: 3\nprivacy: {secure_aggregation: {threshold_fraction: 0.6}}\n"
         "free_riders: flag\ncompression: int8\n",
         "privacy: free_riders, compression need(s) each node's individual update"),
        ("free_riders: ignore\n", "free_riders.policy: Input should be 'flag', 'downweight'"),
        ("free_riders: {policy: flag, copy_ratio: 2}\n", "free_riders.copy_ratio"),
        ("weighting: {min_factor: 5, max_factor: 1}\n", "min_factor (5.0) must be <= max_factor"),
        ("weighting: {samples: .nan}\n", "weighting.samples"),
        ("weighting: {typo: 1}\n", "weighting.typo: unknown field"),
        ("compression: {codec: topk, topk_ratio: 0}\n", "compression.topk_ratio"),
        ("contribution: {validators: []}\n", "must name at least one node"),
        ("contribution: {max_evaluations: 2}\n", "contribution.max_evaluations"),
        ("anomaly: {threshold: -1}\n", "anomaly.threshold"),
    ],
)  # fmt: skip
def test_bad_sections_are_refused_naming_the_rule(extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_job(BASE + extra)


def test_compression_reaches_the_node_and_error_feedback_stays_there() -> None:
    import numpy as np

    from clawfed.core import Weights

    config = task_config(parse_job(BASE + "compression: {codec: topk, topk_ratio: 0.5}\n"))
    codec, feedback = codec_from_config(config)
    assert (codec.name, feedback) == (CodecName.TOPK, True)
    node = UpdateCompressor()
    delta = Weights({"w": np.array([4.0, 1.0, 0.5, 3.0], np.float32)})
    first = node.encode("j", config, delta)
    assert first["w::idx"].tolist() == [0, 3]
    # what top-k dropped (1.0 and 0.5) is carried into the next update
    second = node.encode("j", config, Weights({"w": np.zeros(4, np.float32)}))
    assert second["w::idx"].tolist() == [1, 2]
    assert second["w::val"].tolist() == [1.0, 0.5]
    assert node.encode("other", {}, delta) is delta  # no compression for that job
    with pytest.raises(ConfigError, match="compression.topk_ratio' must be a number"):
        codec_from_config({"compression.codec": "topk", "compression.topk_ratio": "x"})
