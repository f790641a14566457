"""``clawfed models list|show|diff|export``: the model registry, read from the workspace's store."""

from __future__ import annotations

import getpass
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from clawfed.cli.common import console, find_workspace
from clawfed.cli.federation_cmds import WorkspaceOpt
from clawfed.coordinator.jobspec import parse_job
from clawfed.coordinator.model_spec import NOOP_MODEL
from clawfed.coordinator.valuemap import value_change
from clawfed.coordinator.workspace import Workspace
from clawfed.core import ConfigError, Weights
from clawfed.governance.artifacts import ArtifactStore
from clawfed.governance.audit import AuditLog
from clawfed.governance.inspect import (
    ALL_DEPARTMENTS,
    HIGHER_IS_BETTER,
    check_artifact,
    diagnostics_from_metrics,
    find_job,
    metric_deltas,
    metric_dropped,
    most_influential,
    resolve_version,
    step_shares,
    version_round,
    weights_diff,
    without_diagnostics,
)
from clawfed.governance.jobs import JobRecord, JobStore
from clawfed.governance.registry import ModelRegistry, ModelVersion, Participant

if TYPE_CHECKING:
    from torch import nn

    from clawfed.learning.export import ExportedModel

app = typer.Typer(
    help="Model versions: list, show, diff and export (read from the workspace's store).",
    no_args_is_help=True,
)

_LINEAGE_SHOWN = 8


@dataclass(frozen=True)
class _Store:
    ws: Workspace
    jobs: JobStore
    registry: ModelRegistry
    audit: AuditLog

    def weights(self, version: ModelVersion) -> Weights:
        """The version's weights, read through the artifact store with its digest checked."""
        store = ArtifactStore(self.ws.artifacts / version.job_id)
        return store.load(version.artifact_path, version.sha256)


@contextmanager
def _open(workspace: Path | None) -> Iterator[_Store]:
    ws = find_workspace(workspace)
    with ws.database() as db:
        yield _Store(ws, JobStore(db), ModelRegistry(db), AuditLog(db))


def _fmt(value: float | None, spec: str = ".4f") -> str:
    return "—" if value is None else format(value, spec)


def _signed(value: float | None, spec: str = "+.4f") -> str:
    return "—" if value is None else format(value, spec)


def _metrics_text(metrics: Mapping[str, float]) -> str:
    shown = without_diagnostics(metrics)
    return ", ".join(f"{k} {v:.4f}" for k, v in sorted(shown.items())) or "—"


def _participants_text(people: Sequence[Participant]) -> str:
    return escape(", ".join(f"{p.department} {p.num_samples}" for p in people))


@app.command("list")
def list_versions(
    job: Annotated[str | None, typer.Option("--job", help="Only this job's versions.")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """List model versions: round, participants with sample counts, combined metrics."""
    with _open(workspace) as st:
        job_id = find_job(st.jobs, job).job_id if job is not None else None
        versions = st.registry.list(job_id)
    if not versions:
        console.print(f"job {job_id} has no model versions yet" if job_id else "no model versions")
        return
    table = Table("version", "job", "round", "participants (samples)", "metrics", "created (UTC)")
    for v in versions:
        table.add_row(
            v.version_id,
            v.job_id,
            str(v.round_no),
            _participants_text(v.participants),
            _metrics_text(v.metrics),
            v.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    console.print(table)


def _lineage_text(chain: Sequence[ModelVersion]) -> str:
    ids = [v.version_id for v in chain]
    if len(ids) > _LINEAGE_SHOWN:
        hidden = len(ids) - _LINEAGE_SHOWN + 2
        ids = [*ids[: _LINEAGE_SHOWN - 2], f"… ({hidden} more)", ids[-1]]
    return " ← ".join(ids)


def _metrics_table(version: ModelVersion) -> Table:
    combined = without_diagnostics(version.metrics)
    per_dept = {d: without_diagnostics(m) for d, m in sorted(version.department_metrics.items())}
    names = sorted(set(combined).union(*per_dept.values()))
    table = Table("scope", *names, title="metrics")
    table.add_row(ALL_DEPARTMENTS, *(_fmt(combined.get(n)) for n in names))
    for dept, values in per_dept.items():
        table.add_row(escape(dept), *(_fmt(values.get(n)) for n in names))
    return table


@app.command()
def show(
    version_id: Annotated[str, typer.Argument(help="Version id, e.g. fraud@v3 or fraud@latest.")],
    metric: Annotated[
        str | None,
        typer.Option(
            help="Metric whose drop versus the parent is explained (default roc_auc, "
            "else accuracy)."
        ),
    ] = None,
    drop_threshold: Annotated[
        float, typer.Option(help="Smallest fall of the metric that counts as a drop.", min=0.0)
    ] = 0.0,
    workspace: WorkspaceOpt = None,
) -> None:
    """Everything about one version: artifact, lineage, participants, strategy, metrics."""
    if metric is not None and metric not in HIGHER_IS_BETTER:
        raise ConfigError(f"--metric must be one of {', '.join(HIGHER_IS_BETTER)}, got {metric!r}")
    with _open(workspace) as st:
        v = resolve_version(st.registry, st.jobs, version_id)
        chain = st.registry.lineage(v.version_id)
        produced = version_round(st.jobs, v)
        mapping = parse_job(st.jobs.get(v.job_id).spec_yaml, source=v.job_id).value
    status = check_artifact(v.artifact_path, v.sha256)
    info = Table.grid(padding=(0, 2))
    info.add_column(style="bold")
    info.add_column()
    info.add_row("version", v.version_id)
    info.add_row("job", f"{v.job_id} (round {v.round_no})")
    info.add_row("created", v.created_at.isoformat(timespec="seconds"))
    info.add_row("sha256", v.sha256)
    info.add_row("artifact", escape(f"{v.artifact_path} ({status})"))
    info.add_row("parent", v.parent_version_id or "— (first version)")
    info.add_row("lineage", _lineage_text(chain))
    settings = ", ".join(f"{k}={val}" for k, val in sorted(v.strategy.settings.items()))
    info.add_row("strategy", escape(f"{v.strategy.name} ({settings or 'default settings'})"))
    info.add_row("samples", str(v.num_samples))
    change = value_change(mapping, chain[1].metrics, v.metrics) if mapping and chain[1:] else None
    if change is not None:  # the job's ``value:`` mapping (coordinator/valuemap.py)
        info.add_row("value", escape(f"vs {chain[1].version_id}: {change.text(zh=True)}"))
    if "privacy.epsilon" in v.metrics:  # DP-FedAvg jobs (coordinator/secure_round.py)
        info.add_row("privacy", _privacy_text(v.metrics))
    console.print(info)
    people = Table("node", "department", "samples", title="participants")
    for p in v.participants:
        people.add_row(escape(p.node_id), escape(p.department), str(p.num_samples))
    console.print(people)
    console.print(_metrics_table(v))
    diagnostics = diagnostics_from_metrics(produced.metrics if produced else v.metrics)
    if diagnostics:
        _print_diagnostics(v, diagnostics)
    if len(chain) > 1:
        _print_drop(v, chain[1], diagnostics, metric, drop_threshold)


def _privacy_text(m: Mapping[str, float]) -> str:
    """``ε = 1.234 at δ = 1e-05 (target 8, σ = 1.1, C = 1)`` from a version's privacy facts."""
    extra = [f"target {m['privacy.target_epsilon']:g}"] if "privacy.target_epsilon" in m else []
    extra += [f"σ = {m.get('privacy.noise_multiplier', 0):.4g}"]
    extra += [f"C = {m.get('privacy.clip_norm', 0):g}"]
    spent = f"ε = {m['privacy.epsilon']:.3f} at δ = {m.get('privacy.delta', 0):g}"
    return f"{spent} ({', '.join(extra)}), spent by this job so far"


def _departments(v: ModelVersion) -> dict[str, str]:
    return {p.node_id: p.department for p in v.participants}


def _sample_weights(
    v: ModelVersion, diagnostics: Mapping[str, tuple[float, float]]
) -> dict[str, float] | None:
    """FedAvg's weights (sample counts) when every diagnosed node is a participant."""
    samples = {p.node_id: float(p.num_samples) for p in v.participants}
    return samples if set(diagnostics) <= set(samples) else None


def _print_diagnostics(v: ModelVersion, diagnostics: Mapping[str, tuple[float, float]]) -> None:
    dept = _departments(v)
    shares = step_shares(diagnostics, weights=_sample_weights(v, diagnostics))
    table = Table(
        "department", "node", "update norm", "cosine to aggregate", "share of step",
        title=f"update diagnostics (round {v.round_no})",
    )  # fmt: skip
    for node, (norm, cos) in diagnostics.items():
        table.add_row(
            escape(dept.get(node, node)), escape(node), _fmt(norm, ".4g"), _fmt(cos),
            _fmt(shares[node], ".4g"),
        )  # fmt: skip
    console.print(table)


def _print_drop(
    v: ModelVersion,
    parent: ModelVersion,
    diagnostics: Mapping[str, tuple[float, float]],
    metric: str | None,
    threshold: float,
) -> None:
    drop = metric_dropped(v, parent, metric, threshold)
    if drop is None:
        return
    head = f"metric {drop.metric} dropped by {drop.drop:.4f}"
    detail = f"({parent.version_id} {drop.parent_value:.4f} → {v.version_id} {drop.value:.4f})"
    if not diagnostics:
        console.print(f"{head}; no update diagnostics were recorded for round {v.round_no}")
        console.print(f"  {detail}", highlight=False)
        return
    top = most_influential(diagnostics, weights=_sample_weights(v, diagnostics))
    who = escape(_departments(v).get(top.node_id, top.node_id))
    console.print(
        f"{head}; the update that moved the model most came from {who} "
        f"(norm {top.norm:.4g}, cosine {top.cosine:.4f})",
        highlight=False,
    )
    console.print(
        f"  {detail}; node {escape(top.node_id)}, share of the step {top.share:.4g}",
        highlight=False,
    )


def _shape(a: tuple[int, ...] | None, b: tuple[int, ...] | None) -> str:
    if a == b:
        return str(a)
    return f"{a if a is not None else '—'} → {b if b is not None else '—'}"


@app.command()
def diff(
    a: Annotated[str, typer.Argument(help="The older version, e.g. fraud@v2.")],
    b: Annotated[str, typer.Argument(help="The newer version, e.g. fraud@v3.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Compare two versions: metric deltas per department and parameter L2-norm deltas."""
    with _open(workspace) as st:
        va = resolve_version(st.registry, st.jobs, a)
        vb = resolve_version(st.registry, st.jobs, b)
        wa, wb = st.weights(va), st.weights(vb)
    console.print(f"[bold]{va.version_id}[/] → [bold]{vb.version_id}[/]")
    metrics = Table("scope", "metric", va.version_id, vb.version_id, "Δ", title="metrics")
    for d in metric_deltas(va, vb):
        metrics.add_row(escape(d.scope), d.metric, _fmt(d.before), _fmt(d.after), _signed(d.delta))
    console.print(metrics)
    wd = weights_diff(wa, wb)
    params = Table(
        "tensor", "shape", "‖A‖", "‖B‖", "‖B‖−‖A‖", "‖B−A‖", title="parameters (L2 norms)"
    )
    for t in wd.tensors:
        params.add_row(
            escape(t.name), _shape(t.shape_a, t.shape_b), _fmt(t.norm_a, ".6g"),
            _fmt(t.norm_b, ".6g"), _signed(t.norm_delta, "+.6g"), _fmt(t.diff_norm, ".6g"),
        )  # fmt: skip
    params.add_row(
        "(all)", "", _fmt(wd.norm_a, ".6g"), _fmt(wd.norm_b, ".6g"),
        _signed(wd.norm_delta, "+.6g"), _fmt(wd.diff_norm, ".6g"), style="bold",
    )  # fmt: skip
    console.print(params)


@app.command()
def export(
    version_id: Annotated[str, typer.Argument(help="Version id, e.g. fraud@v3.")],
    fmt: Annotated[
        str,
        typer.Option("--format", help="safetensors, onnx, torch_export or torchscript."),
    ],
    out: Annotated[Path, typer.Option(help="File to write (its suffix must match the format).")],
    force: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Rebuild a version's model from its job spec and export it, verified, to OUT."""
    if out.exists() and not force:
        raise ConfigError(f"{out} already exists; pass --force to replace it")
    if not out.parent.is_dir():
        raise ConfigError(f"folder {out.parent} does not exist; create it first")
    with _open(workspace) as st:
        v = resolve_version(st.registry, st.jobs, version_id)
        job = find_job(st.jobs, v.job_id)
        done = _export(job, st.weights(v), fmt, out)
        st.audit.append(
            "data-admin", "data_admin", "model.export", f"model:{v.version_id}",
            sorted({p.department for p in v.participants}),
            {"format": str(done.format), "path": str(done.path.resolve()),
             "sha256": done.sha256, "via": "cli", "os_user": _os_user()},
            "ok",
        )  # fmt: skip
    console.print(
        f"exported {v.version_id} as {done.format} to {done.path} "
        f"({done.size_bytes} bytes, sha256 {done.sha256})",
        highlight=False,
    )


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def _n_features(weights: Weights, where: str) -> int:
    """The model's input width: the last dimension of its first tensor.

    That is the input side of the first ``nn.Linear`` of the built-in models (its weight has
    shape ``(out, in)``) and the length of the ``noop`` model's single vector.
    """
    first = next(iter(weights.values()), None)
    if first is None or first.ndim < 1 or first.shape[-1] < 1:
        raise ConfigError(
            f"{where}: cannot tell the model's input width from its stored weights "
            "(the first tensor has no dimensions)"
        )
    return int(first.shape[-1])


def _export(job: JobRecord, weights: Weights, fmt: str, out: Path) -> ExportedModel:
    from clawfed.learning.export import ExportFormat, export_model

    try:
        form = ExportFormat(fmt)
    except ValueError:
        known = ", ".join(f.value for f in ExportFormat)
        raise ConfigError(f"--format must be one of {known}, got {fmt!r}") from None
    where = f"job {job.job_id}"
    model = parse_job(job.spec_yaml, source=f"stored {where}").model
    n_features = _n_features(weights, where)
    if model.name == NOOP_MODEL:
        if form is not ExportFormat.SAFETENSORS:
            raise ConfigError(
                f"{where} uses the '{NOOP_MODEL}' model, which has no computation graph; it can "
                f"only be exported as safetensors, got --format {form}"
            )
        module = _weights_only_module(weights)
    else:
        from clawfed.learning.models import model_from_spec

        section: dict[str, object] = dict(model.settings)
        if model.name is not None:
            section["name"] = model.name
        else:
            section["custom"] = str(model.custom)
        module = model_from_spec(section, n_features, seed=0)
    return export_model(module, weights, n_features, out, form)


def _weights_only_module(weights: Weights) -> nn.Module:
    """A module whose ``state_dict`` holds exactly ``weights`` (as buffers), for safetensors."""
    import numpy as np
    import torch
    from torch import nn

    root = nn.Module()
    for name, array in weights.items():
        *path, leaf = name.split(".")
        parent = root
        for part in path:
            child = parent._modules.get(part)
            if child is None:
                child = nn.Module()
                parent.add_module(part, child)
            parent = child
        parent.register_buffer(leaf, torch.from_numpy(np.array(array, copy=True)))
    return root
