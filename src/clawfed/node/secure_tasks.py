"""A node's part in secure rounds: train, then run the four SecAgg steps the coordinator pushes.

The coordinator sends one task per protocol phase (``SecureStep``); this module keeps the
node's ``SecAggClient`` and its pending update between them, keyed by session. The update
is clipped (and, for distributed DP, noised) before masking; it never leaves the node
unmasked, and it is forgotten once masked. Bonawitz et al., CCS 2017; Bell et al., CCS 2020.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

from clawfed.aggregation import ConfigValue
from clawfed.core import ConfigError, Metrics, Weights
from clawfed.node.runner import FitAnswer
from clawfed.privacy.errors import SecAggError, SecAggFailure
from clawfed.privacy.secagg_client import SecAggClient
from clawfed.privacy.secagg_config import SecAggConfig
from clawfed.privacy.secagg_messages import (
    ControlMessage,
    KeyDirectory,
    ShareInbox,
    UnmaskRequest,
    decode_message,
)
from clawfed.privacy.secagg_wire import SecureKey, SecureStep, Weighting, message_weights
from clawfed.wire._proto import federation_pb2 as pb

#: The protobuf task kind of each secure step (what the agent receives).
STEP_OF_KIND: Mapping[int, SecureStep] = {
    pb.TASK_KIND_SECAGG_ADVERTISE: SecureStep.ADVERTISE,
    pb.TASK_KIND_SECAGG_SHARE: SecureStep.SHARE,
    pb.TASK_KIND_SECAGG_MASK: SecureStep.MASK,
    pb.TASK_KIND_SECAGG_UNMASK: SecureStep.UNMASK,
}
#: Sessions a node keeps at once (a retried round opens a new one; old ones are evicted).
MAX_SESSIONS = 4

#: Local training: the job's fit on the global weights, as ``DispatchRunner.fit``.
FitFunction = Callable[[Mapping[str, ConfigValue], Weights], FitAnswer]
M = TypeVar("M", KeyDirectory, ShareInbox, UnmaskRequest)


@dataclass(frozen=True)
class SecureAnswer:
    """What a secure step sends back: public sample count, metrics, and its payload."""

    num_samples: int
    metrics: Metrics
    payload: Weights


@runtime_checkable
class SecureRunner(Protocol):
    """A task runner that can take part in secure rounds (``DispatchRunner`` is one)."""

    def secure(
        self, step: SecureStep, config: Mapping[str, ConfigValue], weights: Weights | None
    ) -> SecureAnswer:
        """Run one secure step."""
        ...


def run_secure(
    runner: object, step: SecureStep, config: Mapping[str, ConfigValue], weights: Weights | None
) -> SecureAnswer:
    """Run ``step`` on ``runner``; ``ConfigError`` if the runner cannot do secure rounds."""
    if not isinstance(runner, SecureRunner):
        raise ConfigError(
            f"this node's runner ({type(runner).__name__}) cannot take part in secure "
            "aggregation; run the node with the standard runner (clawfed node)"
        )
    return runner.secure(step, config, weights)


@dataclass
class _Session:
    client: SecAggClient
    update: Weights | None
    weight: int


def _text(config: Mapping[str, ConfigValue], key: SecureKey) -> str:
    value = config.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"a secure-aggregation task needs {key.value!r} (text), got {value!r}")
    return value


def _number(config: Mapping[str, ConfigValue], key: SecureKey) -> float | None:
    value = config.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"task config {key.value!r} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ConfigError(f"task config {key.value!r} must be a finite number >= 0, got {value!r}")
    return number


def _expect(config: Mapping[str, ConfigValue], kind: type[M], sender: str) -> M:
    message: ControlMessage = decode_message(
        _text(config, SecureKey.MESSAGE).encode(), sender=sender
    )
    if not isinstance(message, kind):
        raise SecAggError(
            SecAggFailure.BAD_MESSAGE,
            f"expected a {kind.__name__} from the coordinator, got {type(message).__name__}",
        )
    return message


def prepare_update(config: Mapping[str, ConfigValue], fit: FitAnswer) -> tuple[Weights, int]:
    """The delta as it enters the secure sum, and its integer weight.

    DP jobs (``dp.clip_norm`` set) clip the delta to L2 norm C, add the node's share of the
    noise (``dp.noise_std``, 0 for central DP) and weigh every node 1; other jobs weigh the
    update by the node's sample count (FedAvg), which the sum reveals only in total.
    """
    weighting = config.get(SecureKey.WEIGHTING, Weighting.SAMPLES.value)
    try:
        mode = Weighting(str(weighting))
    except ValueError:
        raise ConfigError(
            f"task config {SecureKey.WEIGHTING.value!r} must be samples or uniform, "
            f"got {weighting!r}"
        ) from None
    delta = fit.delta
    clip = _number(config, SecureKey.DP_CLIP)
    if clip is not None:
        from clawfed.privacy.dp import privatize_update  # dp_accounting loads SciPy

        noise = _number(config, SecureKey.DP_NOISE_STD) or 0.0
        delta = privatize_update(delta, clip, noise)
    return delta, (1 if mode is Weighting.UNIFORM else fit.num_samples)


class SecureTasks:
    """The node's secure-aggregation sessions; thread-safe (steps run in worker threads).

    Parameters
    ----------
    fit
        Local training on the job's data (the delta it returns is masked, never sent).
    """

    def __init__(self, fit: FitFunction) -> None:
        self._fit = fit
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._lock = threading.Lock()

    def run(
        self, step: SecureStep, config: Mapping[str, ConfigValue], weights: Weights | None
    ) -> SecureAnswer:
        """Run one step of a session named by the task's ``secagg.config``.

        Raises
        ------
        SecAggError
            For a message out of order, from another session, or failing its checks.
        ConfigError
            For a task config without the secure-aggregation keys.
        """
        cfg = SecAggConfig.from_json(_text(config, SecureKey.CONFIG))
        node_id = _text(config, SecureKey.NODE_ID)
        if step is SecureStep.ADVERTISE:
            return self._advertise(cfg, node_id, config, weights)
        session = self._session(cfg.session_id, step)
        client = session.client
        if step is SecureStep.SHARE:
            message = client.share_keys(_expect(config, KeyDirectory, node_id))
            return SecureAnswer(0, {}, message_weights(message))
        if step is SecureStep.MASK:
            update = session.update
            if update is None:
                raise SecAggError(SecAggFailure.WRONG_PHASE, "this session's update was masked")
            masked = client.mask(_expect(config, ShareInbox, node_id), update, session.weight)
            session.update = None  # never kept after masking
            return SecureAnswer(0, {}, masked.to_weights())
        response = client.unmask(_expect(config, UnmaskRequest, node_id))
        with self._lock:
            self._sessions.pop(cfg.session_id, None)
        return SecureAnswer(0, {}, message_weights(response))

    def _advertise(
        self,
        cfg: SecAggConfig,
        node_id: str,
        config: Mapping[str, ConfigValue],
        weights: Weights | None,
    ) -> SecureAnswer:
        if weights is None:
            raise ConfigError("a secure-aggregation advertise task must carry the global model")
        if node_id not in cfg.participants:
            raise SecAggError(
                SecAggFailure.BAD_MESSAGE,
                f"this node ({node_id!r}) is not a participant of session {cfg.session_id!r}",
            )
        fit = self._fit(config, weights)
        update, weight = prepare_update(config, fit)
        client = SecAggClient(cfg, node_id)
        message = client.advertise()
        with self._lock:
            self._sessions[cfg.session_id] = _Session(client, update, weight)
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        metrics = {} if SecureKey.DP_CLIP in config else dict(fit.metrics)
        return SecureAnswer(fit.num_samples, metrics, message_weights(message))

    def _session(self, session_id: str, step: SecureStep) -> _Session:
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None:
            raise SecAggError(
                SecAggFailure.WRONG_PHASE,
                f"step {step} for session {session_id!r}, which this node did not start "
                "(it restarted, or the session was evicted)",
            )
        return session

    def active(self) -> int:
        """Sessions held now."""
        with self._lock:
            return len(self._sessions)
