"""How secure-aggregation steps ride on the task stream: step names, config keys, payloads.

Each protocol phase is one task per node (``SecureStep``). Coordinator → node control
messages travel as JSON text in the task config (``SecureKey.MESSAGE``); node → coordinator
control messages come back as a one-tensor ``uint8`` payload (``message_weights``) through
the ordinary chunked upload path, and the masked input as the ``MaskedInput`` ring tensor.
Both sides import this module, so the keys are defined once.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from clawfed.core import Weights
from clawfed.privacy.errors import SecAggError, SecAggFailure
from clawfed.privacy.secagg_messages import ControlMessage, decode_message, encode_message

#: Name of the single uint8 tensor that carries a node's control message.
MESSAGE_TENSOR = "secagg/message"
#: Largest control message a node may send (a SecAgg ``ShareKeys`` for ~5,000 clients).
MAX_MESSAGE_BYTES = 8 << 20


class SecureStep(StrEnum):
    """The four phases of Bonawitz et al. (CCS 2017) as task kinds."""

    ADVERTISE = "secagg_advertise"  # train, then advertise public keys
    SHARE = "secagg_share"  # Shamir-share the secrets to the neighbours (encrypted)
    MASK = "secagg_mask"  # send the masked, fixed-point update
    UNMASK = "secagg_unmask"  # reveal the shares the coordinator needs to unmask the sum


class SecureKey(StrEnum):
    """Task-config keys of secure and differentially private rounds."""

    NODE_ID = "secagg.node_id"  # the node's id as its certificate names it
    CONFIG = "secagg.config"  # SecAggConfig JSON (every step)
    MESSAGE = "secagg.message"  # the coordinator's control message (share, mask, unmask)
    WEIGHTING = "secagg.weighting"  # "samples" (FedAvg) or "uniform" (DP-FedAvg)
    DP_CLIP = "dp.clip_norm"  # L2 clipping norm C of the node's delta (DP jobs)
    DP_NOISE_STD = "dp.noise_std"  # std of the node's own Gaussian noise (distributed DP)


class DPSGDKey(StrEnum):
    """Task-config keys of sample-level DP-SGD on the node (``privacy.dpsgd_task``)."""

    MAX_GRAD_NORM = "dpsgd.max_grad_norm"
    NOISE_MULTIPLIER = "dpsgd.noise_multiplier"  # σ, or:
    TARGET_EPSILON = "dpsgd.target_epsilon"  # calibrated on the node for all the job's rounds
    DELTA = "dpsgd.delta"
    ROUNDS = "dpsgd.rounds"  # the job's rounds (for calibration and ε so far)


class Weighting(StrEnum):
    """How a node weights its update inside the secure sum."""

    SAMPLES = "samples"
    UNIFORM = "uniform"


def message_weights(message: ControlMessage) -> Weights:
    """A control message as the one-tensor payload a node uploads."""
    raw = encode_message(message)
    return Weights({MESSAGE_TENSOR: np.frombuffer(raw, dtype=np.uint8).copy()})


def message_from_weights(weights: Weights | None, *, sender: str) -> ControlMessage:
    """The control message inside a node's payload; ``SecAggError(BAD_MESSAGE)`` otherwise."""
    arr = None if weights is None else weights.get(MESSAGE_TENSOR)
    if weights is None or arr is None or len(weights) != 1 or arr.dtype != np.uint8:
        shown = "nothing" if weights is None else repr(weights)
        raise SecAggError(
            SecAggFailure.BAD_MESSAGE,
            f"a secure-aggregation answer is one uint8 tensor {MESSAGE_TENSOR!r}, got {shown}",
            node_id=sender,
        )
    if arr.ndim != 1 or arr.size > MAX_MESSAGE_BYTES:
        raise SecAggError(
            SecAggFailure.BAD_MESSAGE,
            f"a control message is a 1-D byte string of at most {MAX_MESSAGE_BYTES} bytes, "
            f"got shape {arr.shape}",
            node_id=sender,
        )
    return decode_message(arr.tobytes(), sender=sender)
