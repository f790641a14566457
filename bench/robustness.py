"""Fair and hard-to-fool aggregation on real data: scikit-learn's digits across 10 nodes.

What it measures, each on the held-out test split (20 % of the 1,797 digits):

1. clean accuracy by round of FedAvg, FedProx and FedAdam with IID and Dirichlet(α = 0.5,
   0.1) label skew;
2. 20 % and 30 % malicious nodes doing label flipping (train on 9 − y), sign flipping
   (send −Δ), scaling (send 10·Δ) or both (send −10·Δ), against FedAvg, coordinate
   median, trimmed mean (β = the malicious share), Krum and Multi-Krum (f = the malicious
   count, m = N − f) and norm bounding (C = the median update norm of the clean FedAvg
   run), IID split;
3. contribution (GTG-Shapley with a budget, exact Shapley as its reference, leave-one-out;
   utilities: accuracy and log-likelihood on the coordinator's validation split) of 7 honest
   nodes, 1 noise node, 1 copy-global free rider and 1 replay node, with free-rider flags,
   over three seeds; then anomaly attribution when two nodes turn malicious.

The model is softmax regression (``torch.nn.Linear(64, 10)``) trained locally with SGD on
cross-entropy (+ FedProx's proximal term when asked); the torch trainer of
``clawfed.learning`` is binary-only, so the multiclass loop is here, using
``clawfed.learning``'s ``TrainData``, ``FitConfig`` and weight conversion. Aggregation is
clawfed's own strategies, driven round by round in process.

Usage: ``python bench/robustness.py [--seed 0] [--rounds 30] [--quick] [--img docs/img]``
Prints markdown tables and writes ``robustness_*.png``. About 2 CPU-minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.patches import Patch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from clawfed.aggregation import PROXIMAL_MU_KEY, Strategy, build_strategy
from clawfed.aggregation.anomaly import (
    AnomalySettings,
    UpdateSketcher,
    attribute_anomaly,
)
from clawfed.aggregation.contribution import (
    ContributionLedger,
    ShapleySettings,
    evaluate_round,
    fedavg_subset,
)
from clawfed.aggregation.free_riders import FreeRiderDetector
from clawfed.core import NodeInfo, Update, Weights
from clawfed.learning import FitConfig, TrainData
from clawfed.learning.convert import load_weights, weights_from_module

N_NODES = 10
N_CLASSES = 10
FEATURES = tuple(f"px{i}" for i in range(64))


@dataclass(frozen=True)
class Split:
    """Per-node training data plus the coordinator's validation and the test split."""

    nodes: list[TrainData]
    val: TrainData
    test: TrainData


def load_split(partition: str, seed: int) -> Split:
    """Digits scaled to [0, 1]; test 20 %, validation 10 %, the rest over 10 nodes."""
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=seed
    )
    x_tr, x_val, y_tr, y_val = train_test_split(
        x_rest, y_rest, test_size=0.125, stratify=y_rest, random_state=seed
    )
    rng = np.random.default_rng(seed)
    parts = iid(len(y_tr), rng) if partition == "iid" else dirichlet(y_tr, float(partition), rng)
    nodes = [TrainData.from_arrays(x_tr[p], y_tr[p], FEATURES) for p in parts]
    return Split(
        nodes,
        TrainData.from_arrays(x_val, y_val, FEATURES),
        TrainData.from_arrays(x_test, y_test, FEATURES),
    )


def iid(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A random permutation cut into 10 near-equal parts."""
    return [np.sort(p) for p in np.array_split(rng.permutation(n), N_NODES)]


def dirichlet(y: np.ndarray, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Label skew: each class spread over nodes by Dir(α); redrawn until every node has ≥ 10."""
    for _ in range(1000):
        parts: list[list[int]] = [[] for _ in range(N_NODES)]
        for c in range(N_CLASSES):
            idx = rng.permutation(np.flatnonzero(y == c))
            cuts = (np.cumsum(rng.dirichlet([alpha] * N_NODES)) * len(idx)).astype(int)[:-1]
            for node, chunk in enumerate(np.split(idx, cuts)):
                parts[node].extend(chunk.tolist())
        if min(len(p) for p in parts) >= 10:
            return [np.sort(np.array(p)) for p in parts]
    raise RuntimeError(f"could not draw a Dirichlet({alpha}) split with >= 10 rows per node")


def new_model(seed: int) -> nn.Module:
    """Softmax regression, initial weights from ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Linear(64, N_CLASSES)


def fit_multiclass(
    module: nn.Module, data: TrainData, cfg: FitConfig, flip_labels: bool = False
) -> None:
    """SGD on cross-entropy (+ μ/2‖w − w_global‖² when ``cfg.proximal_mu`` > 0), in place."""
    x = torch.tensor(data.features)
    y = torch.tensor(data.labels)
    if flip_labels:
        y = (N_CLASSES - 1) - y
    anchor = [p.detach().clone() for p in module.parameters()]
    opt = torch.optim.SGD(module.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(y), generator=gen)
        for start in range(0, len(y), cfg.batch_size):
            idx = perm[start : start + cfg.batch_size]
            loss = F.cross_entropy(module(x[idx]), y[idx])
            if cfg.proximal_mu:
                prox = sum(
                    ((p - a) ** 2).sum() for p, a in zip(module.parameters(), anchor, strict=True)
                )
                loss = loss + 0.5 * cfg.proximal_mu * prox
            opt.zero_grad()
            loss.backward()
            opt.step()


def _logits(weights: Weights, data: TrainData) -> np.ndarray:
    return np.asarray(data.features @ weights["weight"].T + weights["bias"], dtype=np.float64)


def accuracy(weights: Weights, data: TrainData) -> float:
    """Top-1 accuracy of softmax regression ``weights`` on ``data`` (numpy, no torch)."""
    return float(np.mean(np.argmax(_logits(weights, data), axis=1) == data.labels))


def neg_log_loss(weights: Weights, data: TrainData) -> float:
    """Minus the mean cross-entropy of softmax regression ``weights`` on ``data``."""
    z = _logits(weights, data)
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(np.mean(log_p[np.arange(len(data.labels)), data.labels]))


#: A node's behaviour: (honest delta, round, its data, rng) -> the delta it sends.
Behaviour = Callable[[Weights, int, np.random.Generator], Weights]


def honest(delta: Weights, round_no: int, rng: np.random.Generator) -> Weights:
    """Sends what it trained."""
    del round_no, rng
    return delta


def sign_flip(delta: Weights, round_no: int, rng: np.random.Generator) -> Weights:
    """Sends −Δ."""
    del round_no, rng
    return delta.map(lambda a: -a)


def scale10(delta: Weights, round_no: int, rng: np.random.Generator) -> Weights:
    """Sends 10·Δ."""
    del round_no, rng
    return delta.map(lambda a: (10.0 * a).astype(a.dtype))


def noise(delta: Weights, round_no: int, rng: np.random.Generator) -> Weights:
    """Sends Gaussian noise with the norm a real update would have."""
    del round_no
    norm = delta.l2_norm()
    raw = delta.map(lambda a: rng.normal(size=a.shape).astype(a.dtype))
    return raw.map(lambda a: (a * norm / raw.l2_norm()).astype(a.dtype))


def copy_global(delta: Weights, round_no: int, rng: np.random.Generator) -> Weights:
    """Sends the global model back (a zero delta), claiming its samples."""
    del round_no, rng
    return delta.zeros_like()


class Replay:
    """Trains once, then replays that first update every round."""

    def __init__(self) -> None:
        self.first: Weights | None = None

    def __call__(self, delta: Weights, round_no: int, rng: np.random.Generator) -> Weights:
        del round_no, rng
        if self.first is None:
            self.first = delta
        return self.first


@dataclass
class RunResult:
    """Accuracy after each round, plus per-round updates when asked."""

    acc: list[float]
    norms: list[float]


def simulate(
    split: Split,
    strategy: Strategy,
    rounds: int,
    seed: int,
    *,
    behaviours: Sequence[Behaviour] | None = None,
    flip: Sequence[bool] | None = None,
    on_round: Callable[[int, Weights, list[Update], Weights], None] | None = None,
    epochs: int = 2,
) -> RunResult:
    """Run ``rounds`` rounds of ``strategy`` over the split's nodes; return test accuracy."""
    behaviours = behaviours or [honest] * N_NODES
    flip = flip or [False] * N_NODES
    nodes = [NodeInfo(f"n{i}", f"dept{i}") for i in range(N_NODES)]
    module = new_model(seed)
    global_w = weights_from_module(module)
    rng = np.random.default_rng(seed + 1)
    acc: list[float] = []
    norms: list[float] = []
    for r in range(1, rounds + 1):
        agg = strategy.aggregator(global_w, r)
        updates: list[Update] = []
        for instr in strategy.configure(r, nodes):
            i = int(instr.node_id[1:])
            mu = float(instr.config.get(PROXIMAL_MU_KEY, 0.0))
            cfg = FitConfig(epochs=epochs, batch_size=16, lr=0.3, proximal_mu=mu, seed=seed + r)
            load_weights(module, global_w)
            fit_multiclass(module, split.nodes[i], cfg, flip[i])
            local = weights_from_module(module)
            delta = Weights((n, local[n] - global_w[n]) for n in global_w)
            if behaviours[i] is honest and not flip[i]:
                norms.append(delta.l2_norm())
            sent = behaviours[i](delta, r, rng)
            u = Update(instr.node_id, split.nodes[i].num_samples, sent)
            updates.append(u)
            agg.add(u)
        new_w = agg.result()
        if on_round is not None:
            on_round(r, global_w, updates, new_w)
        global_w = new_w
        acc.append(accuracy(global_w, split.test))
    return RunResult(acc, norms)


CLEAN = {
    "FedAvg": ("fedavg", {}),
    "FedProx (μ=0.1)": ("fedprox", {"proximal_mu": 0.1}),
    "FedAdam (η=0.03)": ("fedadam", {"server_lr": 0.03, "tau": 1e-3}),
}
PARTITIONS = {"IID": "iid", "Dir(0.5)": "0.5", "Dir(0.1)": "0.1"}


def clean_experiment(rounds: int, seed: int) -> dict[str, dict[str, list[float]]]:
    """Accuracy by round of each clean strategy on each partition."""
    out: dict[str, dict[str, list[float]]] = {}
    for pname, part in PARTITIONS.items():
        split = load_split(part, seed)
        out[pname] = {}
        for sname, (name, settings) in CLEAN.items():
            out[pname][sname] = simulate(split, build_strategy(name, settings), rounds, seed).acc
    return out


def flip_scale10(delta: Weights, round_no: int, rng: np.random.Generator) -> Weights:
    """Sends −10·Δ (a scaled sign flip)."""
    return sign_flip(scale10(delta, round_no, rng), round_no, rng)


ATTACKS: dict[str, tuple[Behaviour, bool]] = {
    "label flip": (honest, True),
    "sign flip": (sign_flip, False),
    "scale ×10": (scale10, False),
    "−10·Δ": (flip_scale10, False),
}


def robust_rules(frac: float, max_norm: float) -> dict[str, Strategy]:
    """The rules compared under attack, configured for a malicious share ``frac``."""
    f = round(frac * N_NODES)
    return {
        "FedAvg": build_strategy("fedavg", {}),
        "median": build_strategy("median", {}),
        f"trimmed mean β={frac:g}": build_strategy("trimmed_mean", {"beta": frac}),
        f"Krum f={f}": build_strategy("krum", {"f": f}),
        f"Multi-Krum f={f},m={N_NODES - f}": build_strategy(
            "multi_krum", {"f": f, "m": N_NODES - f}
        ),
        f"norm bounding C={max_norm:.2f}": build_strategy("norm_bounding", {"max_norm": max_norm}),
    }


def attack_experiment(
    rounds: int, seed: int, max_norm: float
) -> dict[tuple[float, str], dict[str, float]]:
    """Final test accuracy of each rule, per (malicious share, attack); ('0', 'none') clean."""
    split = load_split("iid", seed)
    out: dict[tuple[float, str], dict[str, float]] = {}
    out[(0.0, "none")] = {
        k.split(" ")[0]: simulate(split, s, rounds, seed).acc[-1]
        for k, s in robust_rules(0.2, max_norm).items()
    }
    for frac in (0.2, 0.3):
        k = round(frac * N_NODES)
        for aname, (beh, flips) in ATTACKS.items():
            behaviours = [beh] * k + [honest] * (N_NODES - k)
            flip = [flips] * k + [False] * (N_NODES - k)
            res = {}
            for rname, strat in robust_rules(frac, max_norm).items():
                run = simulate(split, strat, rounds, seed, behaviours=behaviours, flip=flip)
                res[rname.split(" ")[0]] = run.acc[-1]
            out[(frac, aname)] = res
    return out


@dataclass
class ContributionOutcome:
    """Contribution ledgers per method, free-rider flag counts and the evaluation cost."""

    ledgers: dict[str, ContributionLedger]
    flags: dict[str, dict[str, int]]
    evaluations: dict[str, int]


KINDS = ["honest"] * 7 + ["noise", "copy-global", "replay"]
#: method -> (utility, evaluation budget or None for exact Shapley over all 2^10 subsets)
METHODS = {
    "GTG, accuracy": (accuracy, "budget"),
    "exact, accuracy": (accuracy, "exact"),
    "GTG, log-likelihood": (neg_log_loss, "budget"),
}


def contribution_experiment(
    rounds: int, seed: int, budget: int, *, exact: bool
) -> ContributionOutcome:
    """Per-round LOO and Shapley of honest, noise, copy-global and replay nodes under FedAvg.

    Utilities are evaluated on the coordinator's validation split; free-rider flags come
    from ``FreeRiderDetector`` on the same updates (policy ``flag``: nothing is changed).
    """
    split = load_split("iid", seed)
    behaviours: list[Behaviour] = [honest] * 7 + [noise, copy_global, Replay()]
    methods = {k: v for k, v in METHODS.items() if exact or v[1] != "exact"}
    ledgers = {k: ContributionLedger() for k in methods}
    evaluations = dict.fromkeys(methods, 0)
    detector = FreeRiderDetector()
    flags: dict[str, dict[str, int]] = {f"n{i}": {} for i in range(N_NODES)}

    def on_round(r: int, global_w: Weights, updates: list[Update], new_w: Weights) -> None:
        del new_w
        depts = {u.node_id: KINDS[int(u.node_id[1:])] for u in updates}
        for name, (metric, kind) in methods.items():
            cfg = ShapleySettings(
                max_evaluations=2**N_NODES if kind == "exact" else budget,
                seed=seed + r,
                within_tolerance=0.0,
            )
            rc = evaluate_round(
                r,
                updates,
                lambda w, metric=metric: metric(w, split.val),
                aggregate=fedavg_subset(global_w),
                settings=cfg,
            )
            evaluations[name] += rc.evaluations
            ledgers[name].add_round(rc, depts)
        sk = UpdateSketcher(global_w.spec())
        for f in detector.inspect(r, {u.node_id: sk.sketch(u.delta) for u in updates}):
            flags[f.node_id][f.kind] = flags[f.node_id].get(f.kind, 0) + 1

    simulate(
        split,
        build_strategy("fedavg", {}),
        rounds,
        seed,
        behaviours=behaviours,
        on_round=on_round,
    )
    return ContributionOutcome(ledgers, flags, evaluations)


def ranks_above(totals: dict[str, tuple[float, float]], kinds: set[str]) -> bool:
    """Whether every honest node's Σ Shapley exceeds every node of ``kinds``."""
    honest_min = min(v[1] for n, v in totals.items() if KINDS[int(n[1:])] == "honest")
    return all(v[1] < honest_min for n, v in totals.items() if KINDS[int(n[1:])] in kinds)


def anomaly_demo(rounds: int, seed: int) -> list[str]:
    """Scale ×10 attack on two nodes from round 3 under FedAvg: who is named when accuracy drops."""
    split = load_split("iid", seed)
    lines: list[str] = []
    prev: list[float | None] = [None]

    def attacker(delta: Weights, round_no: int, rng: np.random.Generator) -> Weights:
        return flip_scale10(delta, round_no, rng) if round_no >= 3 else delta

    def on_round(r: int, global_w: Weights, updates: list[Update], new_w: Weights) -> None:
        sk = UpdateSketcher(global_w.spec())
        sketches = {u.node_id: sk.sketch(u.delta) for u in updates}
        now = accuracy(new_w, split.val)
        rep = attribute_anomaly(
            r,
            prev[0],
            now,
            sketches,
            settings=AnomalySettings(threshold=0.02),
            departments={u.node_id: f"dept{u.node_id[1:]}" for u in updates},
        )
        if rep.triggered:
            lines.append(rep.summary())
        prev[0] = now

    behaviours: list[Behaviour] = [attacker] * 2 + [honest] * 8
    simulate(
        split, build_strategy("fedavg", {}), rounds, seed, behaviours=behaviours, on_round=on_round
    )
    return lines


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--budget", type=int, default=200, help="utility evaluations per round")
    ap.add_argument("--quick", action="store_true", help="10 rounds (smoke run)")
    ap.add_argument("--img", type=Path, default=Path("docs/img"))
    args = ap.parse_args()
    rounds = 10 if args.quick else args.rounds
    torch.set_num_threads(1)
    plt.switch_backend("Agg")
    t0 = time.perf_counter()
    args.img.mkdir(parents=True, exist_ok=True)

    print(f"# Robustness bench: digits, {N_NODES} nodes, seed {args.seed}, {rounds} rounds\n")
    clean = clean_experiment(rounds, args.seed)
    marks = sorted({1, 5, 10, 20, rounds} & set(range(1, rounds + 1)))
    print("## Clean accuracy (%) by round, test split\n")
    print("| partition | strategy | " + " | ".join(f"r{m}" for m in marks) + " |")
    print("|---|---|" + "---|" * len(marks))
    for pname, runs in clean.items():
        for sname, acc in runs.items():
            print(f"| {pname} | {sname} | " + " | ".join(pct(acc[m - 1]) for m in marks) + " |")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
    for ax, (pname, runs) in zip(axes, clean.items(), strict=True):
        for sname, acc in runs.items():
            ax.plot(range(1, rounds + 1), [100 * a for a in acc], label=sname)
        ax.set_title(pname)
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(args.img / "robustness_clean.png", dpi=110)
    plt.close(fig)

    clean_fedavg = clean["IID"]["FedAvg"][-1]
    split = load_split("iid", args.seed)
    norms = simulate(split, build_strategy("fedavg", {}), rounds, args.seed).norms
    max_norm = float(np.median(norms))
    attacks = attack_experiment(rounds, args.seed, max_norm)
    print(f"\n## Under attack (IID): final test accuracy (%), clean FedAvg = {pct(clean_fedavg)}\n")
    print(
        f"Norm bounding C = median honest update norm of the clean run = {max_norm:.3f}. "
        "✓ = within 3 points of clean FedAvg.\n"
    )
    rules = list(next(iter(attacks.values())))
    print("| malicious | attack | " + " | ".join(rules) + " |")
    print("|---|---|" + "---|" * len(rules))
    for (frac, aname), res in attacks.items():
        cells = [f"{pct(res[r])}{' ✓' if res[r] >= clean_fedavg - 0.03 else ' ✗'}" for r in rules]
        print(f"| {int(100 * frac)} % | {aname} | " + " | ".join(cells) + " |")
    fig, axes = plt.subplots(1, 2, figsize=(13, 4), sharey=True)
    width = 0.8 / len(rules)
    for ax, frac in zip(axes, (0.2, 0.3), strict=True):
        names = [a for (f, a) in attacks if f == frac]
        for j, r in enumerate(rules):
            vals = [100 * attacks[(frac, a)][r] for a in names]
            ax.bar(np.arange(len(names)) + j * width, vals, width, label=r)
        ax.axhline(100 * clean_fedavg, color="k", ls="--", lw=1, label="clean FedAvg")
        ax.axhline(100 * (clean_fedavg - 0.03), color="gray", ls=":", lw=1, label="−3 points")
        ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names)
        ax.set_title(f"{int(100 * frac)} % malicious nodes")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("final test accuracy (%)")
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(args.img / "robustness_attacks.png", dpi=110)
    plt.close(fig)

    contrib = contribution_experiment(rounds, args.seed, args.budget, exact=True)
    print(f"\n## Contribution over {rounds} rounds (FedAvg, IID, validation split)\n")
    cost = ", ".join(f"{k}: {v}" for k, v in contrib.evaluations.items())
    print(
        f"Σ over rounds of per-round values, in points of the utility ×100. GTG budget "
        f"{args.budget} utility evaluations per round; total evaluations: {cost}.\n"
    )
    names = list(contrib.ledgers)
    totals = {k: led.totals() for k, led in contrib.ledgers.items()}
    main_t = totals["GTG, accuracy"]
    order = sorted(main_t, key=lambda n: -main_t[n][1])
    print(
        "| node | kind | "
        + " | ".join(f"Σ Shapley ({k})" for k in names)
        + " | Σ LOO (accuracy) | free-rider flags |"
    )
    print("|---|---|" + "---|" * len(names) + "---|---|")
    for nid in order:
        fl = ", ".join(f"{k}×{c}" for k, c in contrib.flags[nid].items()) or "—"
        cells = " | ".join(f"{100 * totals[k][nid][1]:+.1f}" for k in names)
        print(f"| {nid} | {KINDS[int(nid[1:])]} | {cells} | {100 * main_t[nid][0]:+.1f} | {fl} |")
    seeds = [args.seed, args.seed + 1, args.seed + 2]
    summary = {k: [0, 0] for k in names if k != "exact, accuracy"}
    for s in seeds:
        out = (
            contrib
            if s == args.seed
            else contribution_experiment(rounds, s, args.budget, exact=False)
        )
        for k in summary:
            t = out.ledgers[k].totals()
            summary[k][0] += ranks_above(t, {"noise", "copy-global"})
            summary[k][1] += ranks_above(t, {"replay"})
    print(f"\nSeeds {seeds}: in how many does every honest node rank above …\n")
    print("| method | noise and copy-global | replay |")
    print("|---|---|---|")
    for k, (a, b) in summary.items():
        print(f"| {k} | {a}/{len(seeds)} | {b}/{len(seeds)} |")
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.8))
    colors = {
        "honest": "tab:green",
        "noise": "tab:red",
        "copy-global": "tab:orange",
        "replay": "tab:purple",
    }
    for ax, k in zip(axes, names, strict=True):
        ax.bar(
            order,
            [100 * totals[k][n][1] for n in order],
            color=[colors[KINDS[int(n[1:])]] for n in order],
        )
        ax.axhline(0, color="k", lw=0.8)
        ax.set_title(f"Σ Shapley, {k}")
    axes[0].legend(handles=[Patch(color=c, label=k) for k, c in colors.items()], fontsize=8)
    fig.tight_layout()
    fig.savefig(args.img / "robustness_contribution.png", dpi=110)
    plt.close(fig)

    lines = anomaly_demo(min(rounds, 10), args.seed)
    print("\n## Anomaly attribution (n0, n1 send −10·Δ from round 3, FedAvg)\n")
    for line in lines or ["no round's validation accuracy fell by more than 2 points"]:
        print(f"- {line}")
    print(f"\nTotal time {time.perf_counter() - t0:.0f} s; plots in {args.img}/robustness_*.png")


if __name__ == "__main__":
    main()
