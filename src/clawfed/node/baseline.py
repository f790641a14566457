"""Reference models for a federated job: each department alone, and all departments pooled."""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np

from clawfed.aggregation import ConfigValue
from clawfed.core import ConfigError, DataError, Metrics, Weights
from clawfed.data import combine
from clawfed.learning import TrainData
from clawfed.learning.models import model_from_spec
from clawfed.learning.torch_trainer import TorchTabularTrainer
from clawfed.node.learning_runner import (
    LearningRunner,
    LocalData,
    load_offer,
    moments_from_weights,
    resolve_offer,
)
from clawfed.node.task_setup import ROUND, STANDARDIZE, STANDARDIZER, parse_task_config


def _check_rounds(rounds: int) -> None:
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ConfigError(f"rounds must be an integer >= 1, got {rounds!r}")


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
        The job's task config (``coordinator.task_config.task_config``).
    rounds
        Number of federated rounds to match.

    Returns
    -------
    Metrics
        Accuracy, precision, recall, f1, roc_auc, recall_at_1pct_fpr and log_loss on the
        node's holdout (those defined on it).

    Raises
    ------
    ConfigError
        For ``rounds`` < 1 or a bad config.
    """
    _check_rounds(rounds)
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


def training_rows(local: LocalData, config: Mapping[str, ConfigValue]) -> TrainData:
    """The training rows a node offering ``local`` trains on for a task ``config``.

    The same file, harmonization, columns, encoding and split (``data.holdout_fraction``,
    seed ``train.seed``) as ``LearningRunner``; standardized with the config's
    ``data.standardizer`` when it holds one. For references computed where all departments'
    files are at hand (the demo); a real node never hands its rows out.

    Raises
    ------
    ConfigError
        For a bad config or dataset description.
    DataError
        When the file cannot be read or encoded, or the standardizer's width differs.
    """
    setup = parse_task_config(config)
    data = setup.data
    train, _ = load_offer(resolve_offer(local), data)
    features = train.features
    if setup.standardizer is not None:
        if setup.standardizer.num_features != train.num_features:
            raise DataError(
                f"dataset {local.name!r}: the standardizer covers "
                f"{setup.standardizer.num_features} feature(s) but the rows encode "
                f"{train.num_features}"
            )
        features = setup.standardizer.transform(features)
    return TrainData.from_arrays(features, train.labels, train.feature_names)


def pooled_reference(
    datasets: Mapping[str, LocalData], config: Mapping[str, ConfigValue], rounds: int
) -> dict[str, Metrics]:
    """Each department's holdout metrics of one model trained on all training rows pooled.

    What a central data lake would give (the federation's reference, not something it may
    do): the departments' training rows concatenated, standardized with the pooled moments
    (as the federated job's STATS phase does), and the job's model trained from the same
    initial weights with the same settings for ``rounds`` fits of ``train.epochs`` epochs
    (each round's batch order seeded as the nodes seed it). Every department's holdout is
    scored by its own ``LearningRunner``: the rows its node evaluates the federated model on.

    Parameters
    ----------
    datasets
        Department id -> what its node offers for the job's dataset.
    config
        The job's task config (``coordinator.task_config.task_config``); a ``data.standardizer``
        or ``round`` in it is replaced.
    rounds
        Number of federated rounds to match.

    Returns
    -------
    dict
        Department id -> its holdout metrics (as ``local_baseline``).

    Raises
    ------
    ConfigError
        For ``rounds`` < 1, no dataset, or a bad config.
    """
    _check_rounds(rounds)
    if not datasets:
        raise ConfigError("pooled_reference needs at least one department's dataset, got none")
    runners = {dept: LearningRunner({local.name: local}) for dept, local in datasets.items()}
    pooled = {k: v for k, v in config.items() if k not in (STANDARDIZER, ROUND)}
    if pooled.get(STANDARDIZE) is True:
        moments = combine([moments_from_weights(r.stats(pooled)) for r in runners.values()])
        pooled[STANDARDIZER] = json.dumps(moments.to_dict())
    parts = [training_rows(local, pooled) for local in datasets.values()]
    widths = {dept: p.feature_names for dept, p in zip(datasets, parts, strict=True)}
    if len(set(widths.values())) > 1:
        raise DataError(
            "the departments encode different features, so their rows cannot be pooled: "
            + "; ".join(f"{d}: {len(names)} features" for d, names in widths.items())
        )
    rows = TrainData.from_arrays(
        np.concatenate([p.features for p in parts]),
        np.concatenate([p.labels for p in parts]),
        parts[0].feature_names,
    )
    start = next(iter(runners.values())).init(pooled)
    setup = parse_task_config(pooled)
    trainer = TorchTabularTrainer(
        model_from_spec(setup.model, rows.num_features, seed=setup.fit.seed), num_threads=1
    )
    trainer.set_weights(start)
    for round_no in range(1, rounds + 1):
        trainer.fit(rows, parse_task_config({**pooled, ROUND: round_no}).round_fit())
    weights = trainer.get_weights()
    return {dept: runner.evaluate(pooled, weights).metrics for dept, runner in runners.items()}
