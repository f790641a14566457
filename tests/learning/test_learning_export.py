"""Tests of model export: every format loads back and agrees with the torch model."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx.reference import ReferenceEvaluator
from torch import nn

from clawfed.core import ConfigError, Weights
from clawfed.learning.convert import weights_from_module
from clawfed.learning.export import (
    FEATURE_NAMES_KEY,
    ExportError,
    ExportFormat,
    export_model,
    load_safetensors,
    load_torch_export,
    load_torchscript,
    read_feature_names,
)
from clawfed.learning.models import build_model

torch.set_num_threads(1)

NAMES = ("age", "income", "tenure")


def _trained() -> tuple[nn.Module, Weights]:
    """An MLP with dropout, and weights that differ from the module's own."""
    model = build_model("mlp", 3, {"hidden": [5], "dropout": 0.2}, seed=0)
    weights = build_model("mlp", 3, {"hidden": [5], "dropout": 0.2}, seed=1)
    return model, weights_from_module(weights)


def _expected(weights: Weights, x: np.ndarray) -> np.ndarray:
    ref = build_model("mlp", 3, {"hidden": [5], "dropout": 0.2})
    ref.load_state_dict({k: torch.tensor(v) for k, v in weights.items()})
    ref.eval()
    with torch.no_grad():
        out: np.ndarray = ref(torch.from_numpy(x)).numpy()
    return out


@pytest.fixture
def probe() -> np.ndarray:
    return np.random.default_rng(9).standard_normal((7, 3)).astype(np.float32)


def test_safetensors_round_trip_is_exact_and_ordered(tmp_path: Path) -> None:
    model, weights = _trained()
    out = export_model(
        model, weights, 3, tmp_path / "m.safetensors", "safetensors", feature_names=NAMES
    )
    assert out.format is ExportFormat.SAFETENSORS
    assert out.sha256 == hashlib.sha256(out.path.read_bytes()).hexdigest()
    assert out.size_bytes == out.path.stat().st_size
    back = load_safetensors(out.path)
    assert list(back) == list(weights)
    for n in weights:
        assert back[n].dtype == weights[n].dtype
        np.testing.assert_array_equal(back[n], weights[n])
    assert read_feature_names(out.path) == NAMES


def test_onnx_export_passes_checker_and_agrees(tmp_path: Path, probe: np.ndarray) -> None:
    model, weights = _trained()
    out = export_model(
        model, weights, 3, tmp_path / "m.onnx", ExportFormat.ONNX, feature_names=NAMES
    )
    proto = onnx.load(str(out.path))
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["features"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[1].dim_value == 3
    assert {p.key for p in proto.metadata_props} >= {FEATURE_NAMES_KEY}
    assert read_feature_names(out.path) == NAMES
    (got,) = ReferenceEvaluator(proto).run(None, {"features": probe})
    np.testing.assert_allclose(np.asarray(got), _expected(weights, probe), rtol=1e-5, atol=1e-6)
    assert not [p.name for p in tmp_path.iterdir() if p.name != "m.onnx"]  # no sidecar, no temp


def test_torch_export_agrees(tmp_path: Path, probe: np.ndarray) -> None:
    model, weights = _trained()
    out = export_model(model, weights, 3, tmp_path / "m.pt2", "torch_export")
    loaded = load_torch_export(out.path)
    got = loaded(torch.from_numpy(probe)).detach().numpy()
    np.testing.assert_allclose(got, _expected(weights, probe), rtol=1e-6, atol=1e-7)


def test_torchscript_agrees(tmp_path: Path, probe: np.ndarray) -> None:
    model, weights = _trained()
    out = export_model(model, weights, 3, tmp_path / "m.pt", "torchscript")
    loaded = load_torchscript(out.path)
    got = loaded(torch.from_numpy(probe)).detach().numpy()
    np.testing.assert_allclose(got, _expected(weights, probe), rtol=1e-6, atol=1e-7)


def test_export_does_not_touch_the_callers_module(tmp_path: Path) -> None:
    model, weights = _trained()
    own = weights_from_module(model)
    model.train()
    export_model(model, weights, 3, tmp_path / "m.pt", "torchscript")
    after = weights_from_module(model)
    assert all(np.array_equal(own[n], after[n]) for n in own)
    assert model.training


def test_safetensors_export_is_reproducible(tmp_path: Path) -> None:
    """Global model versions are named by sha256, so the same weights must give the same file."""
    model, weights = _trained()
    digests = {
        export_model(
            model, weights, 3, tmp_path / f"{i}.safetensors", "safetensors", feature_names=NAMES
        ).sha256
        for i in range(6)  # safetensors' own metadata map changes order between writes
    }
    assert len(digests) == 1


class _DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.lin(x).squeeze(-1)
        if bool(out.sum() > 0):  # Python branching on data: torch.export cannot trace it
            return out
        return -out


def test_failed_export_keeps_the_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "m.pt2"
    target.write_bytes(b"previous version")
    model = _DataDependent()
    with pytest.raises(ExportError, match="exporting _DataDependent to torch_export failed"):
        export_model(model, weights_from_module(model), 3, target, "torch_export")
    assert target.read_bytes() == b"previous version"
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt2"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fmt": "pickle"}, "export format must be one of safetensors, onnx, torch_export, "),
        ({"path": "m.onnx"}, r"a safetensors export must be a file ending in \.safetensors"),
        ({"n_features": 0}, "n_features must be an integer >= 1, got 0"),
        ({"feature_names": ["a"]}, "1 feature name"),
    ],
)
def test_bad_export_requests(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    model, weights = _trained()
    args: dict[str, object] = {
        "path": "m.safetensors",
        "fmt": "safetensors",
        "n_features": 3,
        "feature_names": None,
        **kwargs,
    }
    with pytest.raises(ConfigError, match=message):
        export_model(
            model,
            weights,
            args["n_features"],  # type: ignore[arg-type]
            tmp_path / str(args["path"]),
            args["fmt"],  # type: ignore[arg-type]
            feature_names=args["feature_names"],  # type: ignore[arg-type]
        )


def test_weights_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    model, _ = _trained()
    other = weights_from_module(build_model("logistic_regression", 3))
    with pytest.raises(ConfigError, match="weights do not fit the model MLP"):
        export_model(model, other, 3, tmp_path / "m.onnx", "onnx")
    assert not list(tmp_path.iterdir())


def test_read_feature_names_needs_a_known_suffix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="read from .onnx or .safetensors"):
        read_feature_names(tmp_path / "m.pt")
