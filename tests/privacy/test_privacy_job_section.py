"""The job file's ``privacy:`` section: refusals naming the rule, per-round t and k, DP-SGD keys."""

from __future__ import annotations

import pytest

from clawfed.coordinator.jobspec import parse_job
from clawfed.coordinator.privacy_spec import DPSpec, SecureAggregationSpec
from clawfed.coordinator.task_config import task_config
from clawfed.core import ConfigError
from clawfed.privacy.accountant import epsilon_spent
from clawfed.privacy.secagg_wire import DPSGDKey

BASE = "name: j\nmodel: {name: noop}\nrounds: 4\nmin_nodes: 2\n"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("secure_aggregation: {threshold: 3, threshold_fraction: 0.7}",
         "set threshold (3) or threshold_fraction (0.7), not both"),
        ("secure_aggregation: {neighbours: 4}", "neighbours=4 applies to variant secagg_plus"),
        ("secure_aggregation: {variant: secagg_plus, neighbours: 5}", "neighbours must be even"),
        ("secure_aggregation: {ring_bits: 16}", "ring_bits must be 32 or 64, got 16"),
        ("secure_aggregation: {clip: 0}", "clip: Input should be greater than 0"),
        ("dp: {clip_norm: 1.0}", "set target_epsilon (with delta) to calibrate the noise"),
        ("dp: {clip_norm: 1.0, delta: 0, noise_multiplier: 1}", "dp.delta"),
        ("dp: {clip_norm: 1.0, target_epsilon: 0}", "dp.target_epsilon"),
        ("dp: {mode: distributed, clip_norm: 1.0, noise_multiplier: 1}",
         "privacy.dp.mode distributed needs secure_aggregation enabled"),
        ("secure_aggregation: {clip: 0.5}\n  dp: {clip_norm: 1.0, noise_multiplier: 1}",
         "privacy.secure_aggregation.clip=0.5 is below privacy.dp.clip_norm=1"),
        ("dp_sgd: {max_grad_norm: 1.0}", "set exactly one of noise_multiplier or target_epsilon"),
        ("secure_aggregation: {typo: 1}", "secure_aggregation.typo: unknown field"),
    ],
)  # fmt: skip
def test_bad_privacy_sections_are_refused_naming_the_rule(section: str, message: str) -> None:
    with pytest.raises(ConfigError, match="privacy") as err:
        parse_job(BASE + f"privacy:\n  {section}\n")
    assert message in str(err.value)


def test_job_level_rules_name_the_values() -> None:
    with pytest.raises(ConfigError, match=r"needs min_nodes >= 2 .* got min_nodes=1"):
        parse_job(
            BASE.replace("min_nodes: 2", "min_nodes: 1") + "privacy: {secure_aggregation: {}}\n"
        )
    with pytest.raises(ConfigError, match=r"threshold=2 must be more than half of the 4 holders"):
        parse_job(
            BASE + "participants: [a, b, c, d]\nprivacy: {secure_aggregation: {threshold: 2}}\n"
        )
    with pytest.raises(ConfigError, match="strategy 'median' needs each node's individual update"):
        parse_job(
            BASE + "strategy: {name: median}\nprivacy: {dp: {clip_norm: 1, noise_multiplier: 1}}\n"
        )
    spec = parse_job(BASE + "privacy: {secure_aggregation: {variant: secagg_plus}}\n")
    assert parse_job(spec.to_yaml()) == spec


def test_threshold_and_neighbours_per_round() -> None:
    plain = SecureAggregationSpec()
    assert [plain.threshold_for(n) for n in (2, 3, 10)] == [2, 2, 7]
    assert plain.neighbours_for(50) is None
    plus = SecureAggregationSpec(variant="secagg_plus")  # type: ignore[arg-type]
    assert plus.neighbours_for(50) == 12 and plus.threshold_for(50) == 9  # 2/3 of 13 holders
    assert plus.neighbours_for(7) is None  # 2·ceil(log2 7) = 6 >= 7 - 1: the complete graph
    assert plus.neighbours_for(8) == 6
    fixed = SecureAggregationSpec(threshold=5)
    assert fixed.threshold_for(9) == 5
    with pytest.raises(ConfigError, match=r"threshold=5 is more than the 4 nodes in the round"):
        fixed.threshold_for(4)
    assert SecureAggregationSpec(ring_bits=None).fixed_point(10, 1).ring_bits == 32
    assert SecureAggregationSpec().fixed_point(10, 100_000).ring_bits == 64


def test_dp_noise_is_calibrated_to_the_target_and_recorded() -> None:
    dp = DPSpec(clip_norm=1.0, target_epsilon=5.0, delta=1e-5)
    sigma = dp.sigma(10)
    assert epsilon_spent(sigma, 1e-5, 10) <= 5.0 < epsilon_spent(sigma * 0.99, 1e-5, 10)
    facts = dp.facts(10, 3)
    assert facts["privacy.epsilon"] == pytest.approx(epsilon_spent(sigma, 1e-5, 3))
    assert facts["privacy.target_epsilon"] == 5.0 and facts["privacy.noise_multiplier"] == sigma
    budget = dp.budget(10)
    assert budget is not None and budget.max_rounds() == 10
    assert DPSpec(clip_norm=1.0, noise_multiplier=1.0).budget(10) is None


def test_dp_sgd_keys_reach_every_task() -> None:
    spec = parse_job(
        BASE + "privacy: {dp_sgd: {max_grad_norm: 0.5, target_epsilon: 2.0, delta: 1.0e-6}}\n"
    )
    config = task_config(spec, round_no=1)
    assert config[DPSGDKey.MAX_GRAD_NORM] == 0.5
    assert config[DPSGDKey.TARGET_EPSILON] == 2.0
    assert config[DPSGDKey.DELTA] == 1e-6 and config[DPSGDKey.ROUNDS] == 4
    assert DPSGDKey.NOISE_MULTIPLIER not in config
    assert DPSGDKey.MAX_GRAD_NORM not in task_config(parse_job(BASE))
