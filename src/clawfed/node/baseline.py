"""The local-only baseline: the job's model trained on one department's data alone."""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np

from clawfed.aggregation import ConfigValue
from clawfed.core import ConfigError, Metrics, Weights
from clawfed.data import combine
from clawfed.node.learning_runner import LearningRunner, moments_from_weights
from clawfed.node.task_setup import ROUND, STANDARDIZE, STANDARDIZER


def local_baseline(
    runner: LearningRunner, config: Mapping[str, ConfigValue], rounds: int
) -> Metrics:
    """Holdout metrics of the job's model trained on this node's data only.

    The same model, initial weights, split and training settings as in the federated job,
    and as many local passes (``rounds`` fits of ``train.epochs`` epochs each, round numbers
    1..rounds as the round engine numbers them); only the other departments are missing.
    With ``data.standardize`` the features are standardized with this node's own moments
    (a department alone has no pooled ones); a ``data.standardizer`` in ``config`` is
    ignored.

    Parameters
    ----------
    runner
        The department's runner (its data).
    config
        The job's task config (``coordinator.jobspec.task_config``).
    rounds
        Number of federated rounds to match.

    Returns
    -------
    Metrics
        Accuracy, precision, recall, f1, roc_auc and log_loss on the node's holdout (those
        defined on it).

    Raises
    ------
    ConfigError
        For ``rounds`` < 1 or a bad config.
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ConfigError(f"rounds must be an integer >= 1, got {rounds!r}")
    local = {k: v for k, v in config.items() if k not in (STANDARDIZER, ROUND)}
    if local.get(STANDARDIZE) is True:
        own = combine([moments_from_weights(runner.stats(local))])
        local[STANDARDIZER] = json.dumps(own.to_dict())
    weights = runner.init(local)
    for round_no in range(1, rounds + 1):
        local[ROUND] = round_no
        delta = runner.fit(local, weights).delta
        weights = Weights((n, np.add(w, delta[n])) for n, w in weights.items())
    return runner.evaluate(local, weights).metrics
