"""Accuracy against privacy (ε) for the three-department fraud scenario, in process.

Two kinds of differential privacy are compared with plain FedAvg (ε = ∞), at δ = 1e-5:

- **client-level** DP-FedAvg (``clawfed.privacy.DPFedAvg``, central noise): protects a whole
  department's contribution. Each round the departments' deltas are clipped to L2 norm C
  and N(0, σ²C²) is added to their sum; σ is calibrated so that all rounds together spend ε.
- **sample-level** DP-SGD (``clawfed.privacy.dpsgd``, Opacus) inside each department,
  aggregated by plain FedAvg: protects every single transaction row; σ is calibrated per
  department so that its local steps over all rounds spend ε.

Same data, model (logistic regression on federated-standardized features), rounds and seeds
for every point. Metrics are on the pooled holdout rows of the three departments: ROC-AUC
(ranking; fraud is rare) and accuracy at threshold 0.5 (the majority class alone scores
about 0.95). Each point is the mean over ``--seeds`` seeds.

Usage: ``python bench/privacy_accuracy.py [--seeds 3] [--rounds 15] [--out docs/img/…]``
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from clawfed.aggregation import FedAvg, Strategy
from clawfed.core import Update, Weights
from clawfed.data import combine, load_harmonization, load_spec, load_split, local_moments
from clawfed.data.scenarios import DEFAULT_FRAUD_ROWS, FRAUD_DEPARTMENTS, make_fraud_scenario
from clawfed.learning.models import build_model
from clawfed.learning.torch_trainer import TorchTabularTrainer
from clawfed.learning.trainer import EvalConfig, FitConfig, TrainData, Trainer
from clawfed.privacy import DPFedAvg, PrivacyBudget, calibrate_noise
from clawfed.privacy.dpsgd import DPSGDSettings, DPSGDTabularTrainer

EPSILONS = (0.5, 1.0, 2.0, 4.0, 8.0, math.inf)
DELTA = 1e-5
CLIP = 0.5  # client-level clipping norm; about the median norm of a round's delta here
GRAD_CLIP = 1.0  # per-example gradient clipping norm of DP-SGD
# Plain SGD: with DP noise, Adam's per-coordinate normalization turns noise-dominated
# coordinates into random walks of size lr, and here SGD is the better baseline anyway.
FIT = FitConfig(epochs=1, batch_size=128, lr=1.0)


@dataclass
class Department:
    name: str
    train: TrainData
    holdout: TrainData


@dataclass(frozen=True)
class Point:
    mode: str
    epsilon: float
    auc: float
    auc_sd: float
    accuracy: float
    sigma: float


def load_departments(root: Path, seed: int) -> list[Department]:
    """The scenario's departments, split 70/30 and standardized with pooled moments."""
    csvs = make_fraud_scenario(seed, DEFAULT_FRAUD_ROWS, root)
    splits = {}
    for dept in csvs:
        spec = load_spec(root / f"{dept}.dataset.yaml")
        mapping = load_harmonization(root / f"{dept}.harmonization.yaml")
        splits[dept] = load_split(spec, mapping, holdout_fraction=0.3, seed=seed)
    names = {s[0].feature_names for s in splits.values()}
    assert len(names) == 1, "departments must encode the same features"
    scaler = combine([local_moments(train.features) for train, _ in splits.values()])
    out = []
    for dept, (train, hold) in splits.items():
        out.append(
            Department(
                dept,
                _train_data(scaler.transform(train.features), train.labels, train.feature_names),
                _train_data(scaler.transform(hold.features), hold.labels, hold.feature_names),
            )
        )
    return out


def _train_data(x: np.ndarray, y: np.ndarray, names: tuple[str, ...]) -> TrainData:
    return TrainData(np.ascontiguousarray(x, np.float32), np.asarray(y, np.int64), names)


def evaluate(weights: Weights, depts: list[Department]) -> tuple[float, float]:
    """ROC-AUC and accuracy of ``weights`` on the pooled holdout rows."""
    n_features = depts[0].train.num_features
    trainer = TorchTabularTrainer(build_model("logistic_regression", n_features, seed=0))
    trainer.set_weights(weights)
    x = np.concatenate([d.holdout.features for d in depts])
    y = np.concatenate([d.holdout.labels for d in depts])
    pooled = TrainData(x, y, depts[0].holdout.feature_names)
    metrics = trainer.evaluate(pooled, EvalConfig()).metrics
    return float(metrics.get("roc_auc", 0.5)), float(metrics["accuracy"])


def run_fedavg(
    depts: list[Department],
    strategy: Strategy,
    trainers: Sequence[Trainer],
    rounds: int,
    fit: FitConfig,
    init: Weights,
) -> Weights:
    """``rounds`` rounds of in-process federated training; returns the final global model."""
    global_w = init
    for r in range(1, rounds + 1):
        strategy.configure(r, [])
        agg = strategy.aggregator(global_w, r)
        for dept, trainer in zip(depts, trainers, strict=True):
            trainer.set_weights(global_w)
            result = trainer.fit(dept.train, replace(fit, seed=r))
            local = trainer.get_weights()
            delta = Weights(
                (n, np.subtract(local[n], global_w[n], dtype=np.float64).astype(global_w[n].dtype))
                for n in local
            )
            agg.add(Update(dept.name, result.num_samples, delta))
        global_w = agg.result()
    return global_w


def client_level(
    depts: list[Department], eps: float, rounds: int, seed: int
) -> tuple[float, float, float]:
    n_features = depts[0].train.num_features
    init_module = build_model("logistic_regression", n_features, seed=seed)
    init = TorchTabularTrainer(init_module).get_weights()
    trainers = [
        TorchTabularTrainer(build_model("logistic_regression", n_features, seed=seed))
        for _ in depts
    ]
    if math.isinf(eps):
        strategy: Strategy = FedAvg()
        sigma = 0.0
    else:
        budget = PrivacyBudget.calibrated(eps, DELTA, rounds)
        sigma = budget.noise_multiplier
        strategy = DPFedAvg(
            FedAvg(), clip_norm=CLIP, budget=budget, rng=np.random.default_rng(seed)
        )
    final = run_fedavg(depts, strategy, trainers, rounds, FIT, init)
    if isinstance(strategy, DPFedAvg):
        assert strategy.epsilon <= eps, "the accountant let the job overspend"
    auc, acc = evaluate(final, depts)
    return auc, acc, sigma


def sample_level(
    depts: list[Department], eps: float, rounds: int, seed: int
) -> tuple[float, float, float]:
    n_features = depts[0].train.num_features
    init = TorchTabularTrainer(
        build_model("logistic_regression", n_features, seed=seed)
    ).get_weights()
    trainers: list[Trainer] = []
    private: list[DPSGDTabularTrainer] = []
    sigmas = []
    for i, dept in enumerate(depts):
        module = build_model("logistic_regression", n_features, seed=seed)
        if math.isinf(eps):
            trainers.append(TorchTabularTrainer(module))
            continue
        batches = math.ceil(dept.train.num_samples / FIT.batch_size)  # Opacus: q = 1 / batches
        sigma = calibrate_noise(eps, DELTA, rounds * FIT.epochs * batches, 1.0 / batches)
        sigmas.append(sigma)
        settings = DPSGDSettings(sigma, GRAD_CLIP, DELTA)
        private.append(DPSGDTabularTrainer(module, settings, noise_seed=1000 * seed + i))
        trainers.append(private[-1])
    final = run_fedavg(depts, FedAvg(), trainers, rounds, FIT, init)
    assert all(t.epsilon() <= eps for t in private), "a department overspent its budget"
    auc, acc = evaluate(final, depts)
    return auc, acc, float(np.mean(sigmas)) if sigmas else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("docs/img/privacy_accuracy.png"))
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny model: threads only add contention
    started = time.perf_counter()
    points: list[Point] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = {s: load_departments(Path(tmp) / f"seed{s}", s) for s in range(args.seeds)}
        # ε = ∞ is plain FedAvg for both kinds of DP: run it once
        baseline = [client_level(data[s], math.inf, args.rounds, s) for s in range(args.seeds)]
        for mode, run in (
            ("client-level DP-FedAvg", client_level),
            ("sample-level DP-SGD", sample_level),
        ):
            for eps in EPSILONS:
                results = (
                    baseline
                    if math.isinf(eps)
                    else [run(data[s], eps, args.rounds, s) for s in range(args.seeds)]
                )
                aucs = [r[0] for r in results]
                points.append(
                    Point(
                        mode,
                        eps,
                        float(np.mean(aucs)),
                        float(np.std(aucs)),
                        float(np.mean([r[1] for r in results])),
                        float(np.mean([r[2] for r in results])),
                    )
                )
    elapsed = time.perf_counter() - started
    print_table(points, args)
    print(
        f"\n{len(FRAUD_DEPARTMENTS)} departments, {args.rounds} rounds, {args.seeds} seed(s), "
        f"δ = {DELTA:g}, {elapsed:.0f} s"
    )
    plot(points, args.out)
    print(f"plot written to {args.out}")


def print_table(points: list[Point], args: argparse.Namespace) -> None:
    del args
    print(
        "| ε | client-level DP-FedAvg: ROC-AUC | accuracy | σ "
        "| sample-level DP-SGD: ROC-AUC | accuracy | σ (mean) |"
    )
    print("|---|---|---|---|---|---|---|")
    by = {(p.mode, p.epsilon): p for p in points}
    for eps in EPSILONS:
        c = by[("client-level DP-FedAvg", eps)]
        s = by[("sample-level DP-SGD", eps)]
        label = "∞ (no DP)" if math.isinf(eps) else f"{eps:g}"
        print(
            f"| {label} | {c.auc:.3f} ± {c.auc_sd:.3f} | {c.accuracy:.3f} | "
            f"{'–' if math.isinf(eps) else f'{c.sigma:.2f}'} | {s.auc:.3f} ± {s.auc_sd:.3f} | "
            f"{s.accuracy:.3f} | {'–' if math.isinf(eps) else f'{s.sigma:.2f}'} |"
        )


def plot(points: list[Point], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finite = [e for e in EPSILONS if not math.isinf(e)]
    inf_x = finite[-1] * 2.5
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for mode, marker in (("client-level DP-FedAvg", "o"), ("sample-level DP-SGD", "s")):
        ps = [p for p in points if p.mode == mode]
        xs = [inf_x if math.isinf(p.epsilon) else p.epsilon for p in ps]
        ys = [p.auc for p in ps]
        sd = [p.auc_sd for p in ps]
        ax.errorbar(xs, ys, yerr=sd, marker=marker, capsize=3, label=mode)
    ax.set_xscale("log")
    ax.set_xticks([*finite, inf_x])
    ax.set_xticklabels([f"{e:g}" for e in finite] + ["∞"])
    ax.set_xlabel("ε (δ = 1e-5)")
    ax.set_ylabel("ROC-AUC, pooled holdout")
    ax.set_title("Fraud scenario, 3 departments: accuracy against privacy")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
