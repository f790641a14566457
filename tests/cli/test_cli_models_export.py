"""``clawfed models export``: rebuilding a version's model from its job spec and exporting it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cli_registry_support import (
    LOGREG_SPEC,
    NOOP_SPEC,
    RoundInput,
    add_job,
    invoke,
    make_workspace,
    noop_weights,
    table_rows,
)
from onnx.reference import ReferenceEvaluator

from clawfed.coordinator.workspace import Workspace
from clawfed.core import ConfigError
from clawfed.learning.convert import weights_from_module
from clawfed.learning.export import INPUT_NAME, load_safetensors, load_torchscript
from clawfed.learning.models import build_model

PEOPLE = [("n-credit", "信贷部", 50), ("n-risk", "风控部", 70)]
MLP_SPEC = LOGREG_SPEC.replace(
    "{{name: logistic_regression}}", "{{name: mlp, settings: {{hidden: [5]}}}}"
)


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    workspace = make_workspace(tmp_path_factory.mktemp("export"))
    add_job(
        workspace,
        "bench",
        NOOP_SPEC.format(name="bench", rounds=1),
        [RoundInput(noop_weights([0.5, -1.0, 2.0]), PEOPLE)],
    )
    for name, spec, model in (
        ("fraud", LOGREG_SPEC, _model(seed=1)),
        ("deep", MLP_SPEC, build_model("mlp", 4, {"hidden": [5]}, seed=2)),
    ):
        add_job(
            workspace,
            name,
            spec.format(name=name, rounds=1),
            [RoundInput(weights_from_module(model), PEOPLE, {"accuracy": 0.9})],
        )
    return workspace


def _model(seed: int) -> torch.nn.Module:
    return build_model("logistic_regression", 4, seed=seed).eval()


def _probe() -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(7).standard_normal((6, 4)).astype(np.float32))


def test_noop_exports_as_safetensors_and_the_export_is_audited(ws: Workspace) -> None:
    out = ws.root.parent / "bench.safetensors"
    result = invoke(
        ws, "models", "export", "bench@v1", "--format", "safetensors", "--out", str(out)
    )
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.stdout.startswith(f"exported bench@v1 as safetensors to {out}")
    back = load_safetensors(out)
    assert list(back) == ["w"]
    np.testing.assert_array_equal(back["w"], np.array([0.5, -1.0, 2.0], dtype=np.float32))
    rows = table_rows(invoke(ws, "audit", "show", "--action", "model.export").stdout)
    assert [r[2:7] for r in rows] == [
        ["data-admin", "data_admin", "model.export", "model:bench@v1", "信贷部, 风控部"]
    ]
    assert '"format":"safetensors"' in rows[0][8]


def test_noop_cannot_be_exported_as_a_graph(ws: Workspace) -> None:
    out = ws.root.parent / "bench.onnx"
    result = invoke(ws, "models", "export", "bench@v1", "--format", "onnx", "--out", str(out))
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception) == (
        "job bench uses the 'noop' model, which has no computation graph; it can only be "
        "exported as safetensors, got --format onnx"
    )
    assert not out.exists()


def test_logistic_regression_exports_to_onnx_matching_the_stored_model(ws: Workspace) -> None:
    out = ws.root.parent / "fraud.onnx"
    result = invoke(ws, "models", "export", "fraud@v1", "--format", "onnx", "--out", str(out))
    assert result.exit_code == 0, (result.output, result.exception)
    probe = _probe()
    (got,) = ReferenceEvaluator(str(out)).run(None, {INPUT_NAME: probe.numpy()})
    with torch.no_grad():
        want = _model(seed=1)(probe).numpy()
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)


def test_logistic_regression_exports_to_torchscript(ws: Workspace) -> None:
    out = ws.root.parent / "fraud.pt"
    result = invoke(
        ws, "models", "export", "fraud@v1", "--format", "torchscript", "--out", str(out)
    )
    assert result.exit_code == 0, (result.output, result.exception)
    probe = _probe()
    with torch.no_grad():
        got = load_torchscript(out)(probe).numpy()
        want = _model(seed=1)(probe).numpy()
        other = _model(seed=3)(probe).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert not np.allclose(got, other)  # the stored weights were used, not fresh ones


def test_an_mlp_is_rebuilt_with_its_settings_and_input_width(ws: Workspace) -> None:
    out = ws.root.parent / "deep.safetensors"
    result = invoke(ws, "models", "export", "deep@v1", "--format", "safetensors", "--out", str(out))
    assert result.exit_code == 0, (result.output, result.exception)
    assert [tuple(a.shape) for a in load_safetensors(out).values()] == [(5, 4), (5,), (1, 5), (1,)]


def test_existing_files_are_kept_unless_forced(ws: Workspace) -> None:
    out = ws.root.parent / "keep.safetensors"
    out.write_bytes(b"precious")
    args = ["models", "export", "fraud@v1", "--format", "safetensors", "--out", str(out)]
    result = invoke(ws, *args)
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception) == f"{out} already exists; pass --force to replace it"
    assert out.read_bytes() == b"precious"
    assert invoke(ws, *args, "--force").exit_code == 0
    assert list(load_safetensors(out)) == ["linear.weight", "linear.bias"]


@pytest.mark.parametrize(
    ("fmt", "name", "message"),
    [
        ("pickle", "m.pkl", "--format must be one of safetensors, onnx, torch_export, torchscript, "
         "got 'pickle'"),
        ("onnx", "m.pt", "a onnx export must be a file ending in .onnx, got 'm.pt'"),
        ("onnx", "missing/m.onnx", "does not exist; create it first"),
    ],
)  # fmt: skip
def test_bad_export_options_are_explained(ws: Workspace, fmt: str, name: str, message: str) -> None:
    out = ws.root.parent / name
    result = invoke(ws, "models", "export", "fraud@v1", "--format", fmt, "--out", str(out))
    assert isinstance(result.exception, ConfigError)
    assert message in str(result.exception)
    assert not out.exists()
