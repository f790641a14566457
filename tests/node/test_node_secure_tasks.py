"""A node's secure-aggregation steps: full sessions against the server, order, DP, dispatch."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clawfed.coordinator.jobspec import JobSpec
from clawfed.coordinator.privacy_spec import DPSGDSpec, PrivacySpec
from clawfed.coordinator.task_config import task_config
from clawfed.core import ConfigError, TensorSpec, Weights
from clawfed.data.standardize import combine
from clawfed.node.dispatch import DispatchRunner
from clawfed.node.learning_runner import LearningRunner, LocalData, moments_from_weights
from clawfed.node.runner import FitAnswer, NoopRunner
from clawfed.node.secure_tasks import (
    STEP_OF_KIND,
    SecureAnswer,
    SecureTasks,
    prepare_update,
    run_secure,
)
from clawfed.privacy.dpsgd_task import dpsgd_request
from clawfed.privacy.errors import SecAggError, SecAggFailure
from clawfed.privacy.quantize import FixedPoint
from clawfed.privacy.secagg_config import SecAggConfig
from clawfed.privacy.secagg_messages import MaskedInput
from clawfed.privacy.secagg_server import SecAggServer
from clawfed.privacy.secagg_wire import (
    MESSAGE_TENSOR,
    DPSGDKey,
    SecureKey,
    SecureStep,
    message_from_weights,
)
from clawfed.wire._proto import federation_pb2 as pb

SIZE = 10
SPEC = (TensorSpec("w", "float32", (SIZE,)),)


def fit_returning(delta: np.ndarray, samples: int) -> Any:
    def fit(config: Mapping[str, Any], weights: Weights) -> FitAnswer:
        del config
        assert weights.spec() == SPEC
        return FitAnswer(samples, {"loss": 0.25}, Weights({"w": delta}))

    return fit


def session(nodes: list[str], threshold: int) -> SecAggConfig:
    fp = FixedPoint(1.0, 16, 1000, len(nodes), 64)
    return SecAggConfig("job/1/1", tuple(nodes), threshold, fp, SPEC)


def config(
    cfg: SecAggConfig, node: str, message: str | None = None, **extra: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {SecureKey.CONFIG: cfg.to_json(), SecureKey.NODE_ID: node, **extra}
    if message is not None:
        out[SecureKey.MESSAGE] = message
    return out


GLOBAL = Weights({"w": np.zeros(SIZE, np.float32)})


def run_session(
    tasks: dict[str, SecureTasks], cfg: SecAggConfig, dead_after_mask: frozenset[str] = frozenset()
) -> tuple[Weights, int]:
    """Drive every phase as the coordinator does, through the node's public ``run``."""
    server = SecAggServer(cfg)
    for n, t in tasks.items():
        answer = t.run(SecureStep.ADVERTISE, config(cfg, n), GLOBAL)
        server.receive_keys(message_from_weights(answer.payload, sender=n))  # type: ignore[arg-type]
    directory = server.close_keys().model_dump_json()
    for n, t in tasks.items():
        answer = t.run(SecureStep.SHARE, config(cfg, n, directory), None)
        server.receive_shares(message_from_weights(answer.payload, sender=n))  # type: ignore[arg-type]
    inboxes = server.close_shares()
    for n, t in tasks.items():
        answer = t.run(SecureStep.MASK, config(cfg, n, inboxes[n].model_dump_json()), None)
        server.receive_masked(MaskedInput.from_weights(cfg.session_id, n, answer.payload, 64))
    request = server.close_masked().model_dump_json()
    for n, t in tasks.items():
        if n in dead_after_mask:
            continue
        answer = t.run(SecureStep.UNMASK, config(cfg, n, request), None)
        server.receive_unmask(message_from_weights(answer.payload, sender=n))  # type: ignore[arg-type]
    result = server.finish()
    return result.weighted_sum, result.total_weight


def test_three_nodes_mask_and_the_server_recovers_the_weighted_sum() -> None:
    rng = np.random.default_rng(1)
    deltas = {n: rng.uniform(-0.5, 0.5, SIZE).astype(np.float32) for n in "abc"}
    samples = {"a": 3, "b": 5, "c": 7}
    tasks = {n: SecureTasks(fit_returning(deltas[n], samples[n])) for n in "abc"}
    total, weight = run_session(tasks, session(list("abc"), 2), frozenset({"c"}))
    want = sum(samples[n] * deltas[n].astype(np.float64) for n in "abc")
    assert weight == 15
    np.testing.assert_allclose(total["w"], want, atol=3 * 0.5 / 2**16)
    assert [t.active() for t in tasks.values()] == [0, 0, 1]  # c never unmasked


def test_steps_out_of_order_or_for_an_unknown_session_are_refused() -> None:
    cfg = session(["a", "b"], 2)
    tasks = SecureTasks(fit_returning(np.zeros(SIZE, np.float32), 1))
    with pytest.raises(SecAggError, match="which this node did not start") as err:
        tasks.run(SecureStep.SHARE, config(cfg, "a", "{}"), None)
    assert err.value.reason is SecAggFailure.WRONG_PHASE
    tasks.run(SecureStep.ADVERTISE, config(cfg, "a"), GLOBAL)
    inbox = '{"kind":"share_inbox","session_id":"job/1/1","recipient":"a","shares":[]}'
    with pytest.raises(SecAggError, match="mask needs phase shared"):
        tasks.run(SecureStep.MASK, config(cfg, "a", inbox), None)
    with pytest.raises(SecAggError, match="expected a KeyDirectory"):
        tasks.run(SecureStep.SHARE, config(cfg, "a", inbox), None)


def test_a_node_outside_the_session_or_without_the_model_refuses_to_advertise() -> None:
    cfg = session(["a", "b"], 2)
    tasks = SecureTasks(fit_returning(np.zeros(SIZE, np.float32), 1))
    with pytest.raises(SecAggError, match=r"\('z'\) is not a participant"):
        tasks.run(SecureStep.ADVERTISE, config(cfg, "z"), GLOBAL)
    with pytest.raises(ConfigError, match="must carry the global model"):
        tasks.run(SecureStep.ADVERTISE, config(cfg, "a"), None)
    with pytest.raises(ConfigError, match="needs 'secagg.config'"):
        tasks.run(SecureStep.ADVERTISE, {SecureKey.NODE_ID: "a"}, GLOBAL)


def test_dp_clips_the_update_weighs_it_one_and_withholds_metrics() -> None:
    fit = FitAnswer(40, {"loss": 0.5}, Weights({"w": np.full(SIZE, 3.0, np.float32)}))
    update, weight = prepare_update(
        {SecureKey.WEIGHTING: "uniform", SecureKey.DP_CLIP: 1.0, SecureKey.DP_NOISE_STD: 0.0}, fit
    )
    assert weight == 1
    assert update.l2_norm() == pytest.approx(1.0, rel=1e-6)
    assert update["w"].dtype == np.float32
    plain, samples = prepare_update({}, fit)
    assert samples == 40 and plain["w"] is fit.delta["w"]
    with pytest.raises(ConfigError, match="must be samples or uniform"):
        prepare_update({SecureKey.WEIGHTING: "equal"}, fit)
    cfg = session(["a", "b"], 2)
    tasks = SecureTasks(lambda _c, _w: fit)
    answer = tasks.run(SecureStep.ADVERTISE, config(cfg, "a", **{SecureKey.DP_CLIP: 1.0}), GLOBAL)
    assert answer.metrics == {} and answer.num_samples == 40
    assert tasks.run(SecureStep.ADVERTISE, config(cfg, "b"), GLOBAL).metrics == {"loss": 0.5}


def test_distributed_noise_has_the_requested_std() -> None:
    fit = FitAnswer(1, {}, Weights({"w": np.zeros(20_000, np.float32)}))
    update, _ = prepare_update({SecureKey.DP_CLIP: 1.0, SecureKey.DP_NOISE_STD: 0.3}, fit)
    assert float(np.std(update["w"])) == pytest.approx(0.3, rel=0.05)


def test_dispatch_runner_takes_part_and_other_runners_are_refused() -> None:
    runner = DispatchRunner({})
    cfg = session(["a", "b"], 2)
    job = {"model.name": "noop", "model.settings": '{"params": 10}'}
    answer = run_secure(runner, SecureStep.ADVERTISE, {**job, **config(cfg, "a")}, GLOBAL)
    assert isinstance(answer, SecureAnswer)
    assert (
        set(answer.payload) == {MESSAGE_TENSOR} and answer.payload[MESSAGE_TENSOR].dtype == np.uint8
    )
    with pytest.raises(ConfigError, match="NoopRunner.*cannot take part in secure aggregation"):
        run_secure(NoopRunner(), SecureStep.ADVERTISE, config(cfg, "a"), GLOBAL)
    assert set(STEP_OF_KIND) == {
        pb.TASK_KIND_SECAGG_ADVERTISE,
        pb.TASK_KIND_SECAGG_SHARE,
        pb.TASK_KIND_SECAGG_MASK,
        pb.TASK_KIND_SECAGG_UNMASK,
    }


def test_a_malformed_message_payload_is_a_bad_message() -> None:
    with pytest.raises(SecAggError, match="one uint8 tensor") as err:
        message_from_weights(Weights({"x": np.zeros(3, np.float32)}), sender="a")
    assert err.value.reason is SecAggFailure.BAD_MESSAGE and err.value.node_id == "a"
    with pytest.raises(SecAggError, match="malformed control message"):
        message_from_weights(Weights({MESSAGE_TENSOR: np.frombuffer(b"{}", np.uint8)}), sender="a")


def test_dp_sgd_from_the_job_trains_privately_and_reports_epsilon_so_far(
    fraud_dir: Path, fraud_job: JobSpec
) -> None:
    privacy = PrivacySpec(dp_sgd=DPSGDSpec(max_grad_norm=1.0, target_epsilon=3.0))
    job = fraud_job.model_copy(update={"privacy": privacy, "rounds": 4})
    runner = LearningRunner(
        {"fraud": LocalData("fraud", fraud_dir / "card.csv", fraud_dir / "card.harmonization.yaml")}
    )
    plain = dict(task_config(job.model_copy(update={"privacy": None}), round_no=1))
    pooled = combine([moments_from_weights(runner.stats(plain))])
    eps = []
    for round_no in (1, 4):
        config = task_config(job, round_no=round_no, standardizer=pooled.to_dict())
        assert config[DPSGDKey.TARGET_EPSILON] == 3.0 and config[DPSGDKey.ROUNDS] == 4
        answer = runner.fit(config, runner.init(config))
        answer.delta.check_finite()
        eps.append(answer.metrics["dpsgd_epsilon"])
    assert 0 < eps[0] < eps[1] <= 3.0 + 1e-6  # calibrated so that all 4 rounds fit the target
    assert (
        "dpsgd_epsilon"
        not in runner.fit(
            dict(
                task_config(
                    job.model_copy(update={"privacy": None}),
                    round_no=1,
                    standardizer=pooled.to_dict(),
                )
            ),
            runner.init(plain),
        ).metrics
    )
    with pytest.raises(ConfigError, match="exactly one of 'dpsgd.noise_multiplier'"):
        dpsgd_request({DPSGDKey.MAX_GRAD_NORM: 1.0})
