"""``clawfed models list|show|diff`` against a real workspace whose store is written directly."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_registry_support import (
    NOOP_SPEC,
    RoundInput,
    add_job,
    invoke,
    make_workspace,
    noop_weights,
    run_main,
    table_rows,
)

from clawfed.coordinator.workspace import Workspace
from clawfed.core import ConfigError, NotFoundError, StoreError
from clawfed.governance import ModelVersion

CREDIT, RISK = ("n-credit", "信贷部", 120), ("n-risk", "风控部", 80)


def _diag(**values: tuple[float, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for node, (norm, cos) in values.items():
        node_id = node.replace("_", "-")
        out[f"diag.{node_id}.norm"], out[f"diag.{node_id}.cosine"] = norm, cos
    return out


@dataclass(frozen=True)
class Fixture:
    ws: Workspace
    fraud: list[ModelVersion]
    churn: list[ModelVersion]


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    ws = make_workspace(tmp_path_factory.mktemp("models"))
    fraud = add_job(
        ws,
        "fraud",
        NOOP_SPEC.format(name="fraud", rounds=3),
        [
            RoundInput(
                noop_weights([3, 4, 0, 0, 0, 0]),
                [CREDIT, RISK],
                {"accuracy": 0.80, "roc_auc": 0.85, "log_loss": 0.40},
                {"信贷部": {"accuracy": 0.82}, "风控部": {"accuracy": 0.77}},
            ),
            RoundInput(  # roc_auc falls; the risk department's update dominated the step
                noop_weights([0, 4, 0, 0, 0, 0]),
                [CREDIT, RISK],
                {
                    "accuracy": 0.70,
                    "roc_auc": 0.80,
                    **_diag(n_credit=(0.5, 0.2), n_risk=(3.0, 0.9)),
                },
                {"信贷部": {"accuracy": 0.75}, "风控部": {"accuracy": 0.60}},
            ),
            RoundInput(  # recovers: no drop to explain
                noop_weights([0, 4, 1, 0, 0, 0]),
                [CREDIT, RISK],
                {
                    "accuracy": 0.90,
                    "roc_auc": 0.93,
                    **_diag(n_credit=(2.0, 0.99), n_risk=(0.1, -0.5)),
                },
                {"信贷部": {"accuracy": 0.91}, "风控部": {"accuracy": 0.88}},
            ),
        ],
    )
    churn = add_job(
        ws,
        "churn",
        NOOP_SPEC.format(name="churn", rounds=2),
        [
            RoundInput(noop_weights([1, 1, 1, 1]), [CREDIT], {"accuracy": 0.7}),
            RoundInput(noop_weights([1, 1, 1, 2]), [CREDIT], {"accuracy": 0.6}),
        ],
    )
    add_job(ws, "empty", NOOP_SPEC.format(name="empty", rounds=1), [])
    return Fixture(ws, fraud, churn)


def _ok(ws: Workspace, *args: str) -> str:
    result = invoke(ws, *args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def test_list_shows_every_version_with_participants_and_combined_metrics(fx: Fixture) -> None:
    rows = table_rows(_ok(fx.ws, "models", "list"))
    by_id = {r[0]: r for r in rows}
    assert set(by_id) == {"fraud@v1", "fraud@v2", "fraud@v3", "churn@v1", "churn@v2"}
    assert by_id["fraud@v2"][1:4] == ["fraud", "2", "信贷部 120, 风控部 80"]
    assert by_id["fraud@v2"][4] == "accuracy 0.7000, roc_auc 0.8000"  # no diag.* entries
    assert by_id["fraud@v1"][4] == "accuracy 0.8000, log_loss 0.4000, roc_auc 0.8500"
    assert by_id["fraud@v1"][5] == "2026-03-01 09:11:00"


def test_list_filters_by_job(fx: Fixture) -> None:
    rows = table_rows(_ok(fx.ws, "models", "list", "--job", "churn"))
    assert [r[0] for r in rows] == ["churn@v1", "churn@v2"]
    assert _ok(fx.ws, "models", "list", "--job", "empty").strip() == (
        "job empty has no model versions yet"
    )


def test_list_of_unknown_job_names_the_known_ones(fx: Fixture) -> None:
    result = invoke(fx.ws, "models", "list", "--job", "frod")
    assert isinstance(result.exception, NotFoundError)
    message = str(result.exception)
    assert message.startswith("no job 'frod'; known jobs: ")
    for job in ("fraud", "churn", "empty"):
        assert job in message


def test_show_prints_everything_about_a_version(fx: Fixture) -> None:
    v2 = fx.fraud[1]
    out = _ok(fx.ws, "models", "show", "fraud@v2")
    digest = hashlib.sha256(Path(v2.artifact_path).read_bytes()).hexdigest()
    assert v2.sha256 == digest
    info = {line.split()[0]: line.split(None, 1)[1].strip() for line in out.splitlines()[:9]}
    assert info["version"] == "fraud@v2"
    assert info["job"] == "fraud (round 2)"
    assert info["created"] == "2026-03-01T09:21:00+00:00"
    assert info["sha256"] == digest
    assert info["artifact"] == f"{v2.artifact_path} (verified)"
    assert info["parent"] == "fraud@v1"
    assert info["lineage"] == "fraud@v2 ← fraud@v1"
    assert info["strategy"] == "fedavg (server_lr=1.0)"
    assert info["samples"] == "200"
    rows = table_rows(out)
    assert ["n-credit", "信贷部", "120"] in rows and ["n-risk", "风控部", "80"] in rows
    assert ["(combined)", "0.7000", "0.8000"] in rows
    assert ["信贷部", "0.7500", "—"] in rows and ["风控部", "0.6000", "—"] in rows
    assert ["风控部", "n-risk", "3", "0.9000", "1.08"] in rows  # 80/200 · 3 · 0.9
    assert ["信贷部", "n-credit", "0.5", "0.2000", "0.06"] in rows  # 120/200 · 0.5 · 0.2


def test_show_explains_a_metric_drop_with_the_most_influential_department(fx: Fixture) -> None:
    out = _ok(fx.ws, "models", "show", "fraud@v2")
    assert (
        "metric roc_auc dropped by 0.0500; the update that moved the model most came from "
        "风控部 (norm 3, cosine 0.9000)"
    ) in out
    assert "(fraud@v1 0.8500 → fraud@v2 0.8000); node n-risk" in out
    by_accuracy = _ok(fx.ws, "models", "show", "fraud@v2", "--metric", "accuracy")
    assert "metric accuracy dropped by 0.1000; the update that moved" in by_accuracy
    higher_bar = _ok(fx.ws, "models", "show", "fraud@v2", "--drop-threshold", "0.06")
    assert "dropped" not in higher_bar


def test_show_without_a_drop_or_parent_says_nothing_about_drops(fx: Fixture) -> None:
    v3 = _ok(fx.ws, "models", "show", "fraud@v3")
    assert "dropped" not in v3
    assert "fraud@v3 ← fraud@v2 ← fraud@v1" in v3
    v1 = _ok(fx.ws, "models", "show", "fraud@v1")
    assert "— (first version)" in v1 and "dropped" not in v1
    assert "update diagnostics" not in v1


def test_show_latest_and_a_drop_without_diagnostics(fx: Fixture) -> None:
    out = _ok(fx.ws, "models", "show", "churn@latest")
    assert out.splitlines()[0].split() == ["version", "churn@v2"]
    assert "metric accuracy dropped by 0.1000; no update diagnostics were recorded for round 2" in (
        out
    )


def test_show_refuses_a_metric_that_cannot_drop(fx: Fixture) -> None:
    result = invoke(fx.ws, "models", "show", "fraud@v2", "--metric", "log_loss")
    assert isinstance(result.exception, ConfigError)
    assert "--metric must be one of roc_auc, accuracy" in str(result.exception)


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("fraud@v9", "model version 'fraud@v9' does not exist; job 'fraud' has versions "
         "fraud@v1, fraud@v2, fraud@v3"),
        ("fraud", "'fraud' is a job, not a version (version ids look like JOB@vN or JOB@latest); "
         "job 'fraud' has versions fraud@v1, fraud@v2, fraud@v3"),
        ("empty@v1", "model version 'empty@v1' does not exist; job 'empty' has no model "
         "versions yet"),
        ("empty@latest", "job 'empty' has no model versions yet"),
    ],
)  # fmt: skip
def test_unknown_versions_are_explained(fx: Fixture, ref: str, expected: str) -> None:
    result = invoke(fx.ws, "models", "show", ref)
    assert isinstance(result.exception, NotFoundError)
    assert str(result.exception) == expected


def test_unknown_job_in_a_version_id_lists_the_jobs(fx: Fixture) -> None:
    result = invoke(fx.ws, "models", "diff", "fraud@v1", "nojob@v1")
    assert isinstance(result.exception, NotFoundError)
    assert str(result.exception).startswith("no job 'nojob'; known jobs: ")


def test_diff_shows_metric_and_parameter_deltas(fx: Fixture) -> None:
    out = _ok(fx.ws, "models", "diff", "fraud@v1", "fraud@v2")
    assert out.splitlines()[0] == "fraud@v1 → fraud@v2"
    rows = table_rows(out)
    assert ["(combined)", "roc_auc", "0.8500", "0.8000", "-0.0500"] in rows
    assert ["(combined)", "log_loss", "0.4000", "—", "—"] in rows
    assert ["信贷部", "accuracy", "0.8200", "0.7500", "-0.0700"] in rows
    assert ["风控部", "accuracy", "0.7700", "0.6000", "-0.1700"] in rows
    assert not any(r[1].startswith("diag.") for r in rows if len(r) == 5)
    # w goes from (3, 4, 0…) to (0, 4, 0…): norms 5 -> 4, distance 3
    assert ["w", "(6,)", "5", "4", "-1", "3"] in rows
    assert ["(all)", "", "5", "4", "-1", "3"] in rows


def test_diff_across_shapes_marks_tensors_it_cannot_subtract(fx: Fixture) -> None:
    rows = table_rows(_ok(fx.ws, "models", "diff", "fraud@v1", "churn@v2"))
    assert ["w", "(6,) → (4,)", "5", "2.64575", "-2.35425", "—"] in rows
    assert ["(all)", "", "5", "2.64575", "-2.35425", "0"] in rows


def test_a_replaced_artifact_is_reported_by_show_and_refused_by_diff(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    v1, v2 = add_job(
        ws,
        "fraud",
        NOOP_SPEC.format(name="fraud", rounds=2),
        [RoundInput(noop_weights([1, 2]), [CREDIT]), RoundInput(noop_weights([2, 2]), [CREDIT])],
    )
    Path(v2.artifact_path).write_bytes(Path(v1.artifact_path).read_bytes())
    assert f"{v2.artifact_path} (digest mismatch)" in _ok(ws, "models", "show", "fraud@v2")
    result = invoke(ws, "models", "diff", "fraud@v1", "fraud@v2")
    assert isinstance(result.exception, StoreError)
    assert "is corrupt or was replaced" in str(result.exception)
    Path(v1.artifact_path).unlink()
    assert f"{v1.artifact_path} (missing)" in _ok(ws, "models", "show", "fraud@v1")


def test_a_missing_workspace_is_a_clear_error(tmp_path: Path) -> None:
    result = invoke(tmp_path / "nowhere", "models", "list")
    assert isinstance(result.exception, ConfigError)
    assert "no clawfed workspace found" in str(result.exception)


def test_errors_reach_the_user_as_exit_2_without_traceback(fx: Fixture, tmp_path: Path) -> None:
    code, out, err = run_main("models", "show", "fraud@v9", "-w", str(fx.ws.root))
    assert code == 2
    assert out == ""
    assert "error: model version 'fraud@v9' does not exist" in err
    assert "Traceback" not in err
    code, _, err = run_main("models", "list", "-w", str(tmp_path / "nowhere"))
    assert code == 2 and "no clawfed workspace found" in err
    code, out, _ = run_main("models", "list", "--job", "churn", "-w", str(fx.ws.root))
    assert code == 0 and "churn@v2" in out
