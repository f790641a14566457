"""Tests of the built-in models, the job-file model factory and custom-model import."""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from clawfed.core import ConfigError
from clawfed.learning.convert import weights_from_module
from clawfed.learning.custom import build_custom_model, import_object, split_dotted_path
from clawfed.learning.models import (
    MLP,
    MODEL_NAMES,
    LogisticRegression,
    build_model,
    logistic_regression,
    mlp,
    model_from_spec,
)

torch.set_num_threads(1)

MakePackage = Callable[[str], str]


@pytest.fixture
def user_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakePackage]:
    """Write ``<unique package>/models.py`` with the given source; yield its module name."""
    monkeypatch.syspath_prepend(str(tmp_path))
    made: list[str] = []

    def make(source: str) -> str:
        pkg = f"clawfed_userpkg_{uuid.uuid4().hex[:8]}"
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
        (tmp_path / pkg / "models.py").write_text(source)
        importlib.invalidate_caches()
        made.append(pkg)
        return f"{pkg}.models"

    yield make
    for name in [m for m in sys.modules if m.split(".")[0] in made]:
        del sys.modules[name]


GOOD = """
from torch import nn

class Builder:
    def __init__(self, width: int = 4) -> None:
        self.width = width

    def build(self, n_features: int) -> nn.Module:
        return nn.Sequential(nn.Linear(n_features, self.width), nn.ReLU(), nn.Linear(self.width, 1))

class Direct(nn.Module):
    def __init__(self, n_features: int, scale: float = 1.0) -> None:
        super().__init__()
        self.lin = nn.Linear(n_features, 1)
        self.scale = scale

    def forward(self, x):
        return self.lin(x) * self.scale

class NotAModel:
    def build(self, n_features: int) -> int:
        return n_features

class Exploding:
    def build(self, n_features: int) -> nn.Module:
        raise RuntimeError("no GPU here")

class Plain:
    pass

helper = 42
"""


@pytest.mark.parametrize("n", [1, 7])
def test_builtin_models_emit_one_logit_per_row(n: int) -> None:
    for model in (logistic_regression(n), mlp(n, [5, 3], dropout=0.2)):
        out = model(torch.zeros(4, n))
        assert out.shape == (4,)


def test_mlp_layout_and_dropout() -> None:
    m = mlp(3, [8, 4], dropout=0.5)
    assert isinstance(m, MLP)
    assert [tuple(p.shape) for p in m.parameters()] == [(8, 3), (8,), (4, 8), (4,), (1, 4), (1,)]
    assert sum(isinstance(x, nn.Dropout) for x in m.modules()) == 2
    assert not any(isinstance(x, nn.Dropout) for x in mlp(3, [8]).modules())
    assert isinstance(logistic_regression(3), LogisticRegression)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: logistic_regression(0), "n_features must be an integer >= 1, got 0"),
        (lambda: mlp(3, []), "at least one layer width"),
        (lambda: mlp(3, [4, 0]), "widths must be integers >= 1, got 0"),
        (lambda: mlp(3, "64"), "hidden must be a list"),  # type: ignore[arg-type]
        (lambda: mlp(3, [4], dropout=1.0), r"dropout must be a number in \[0, 1\), got 1.0"),
    ],
)
def test_builtin_models_refuse_bad_shapes(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        call()


def test_build_model_by_name_and_settings() -> None:
    assert MODEL_NAMES == ("logistic_regression", "mlp")
    m = build_model("mlp", 4, {"hidden": [3], "dropout": 0.1})
    assert [tuple(p.shape) for p in m.parameters()][0] == (3, 4)
    assert isinstance(build_model("logistic_regression", 4), LogisticRegression)


def test_build_model_unknown_name_lists_known_names() -> None:
    with pytest.raises(ConfigError, match="unknown model 'xgboost'; known models are logistic_"):
        build_model("xgboost", 4)


def test_build_model_refuses_unknown_settings() -> None:
    with pytest.raises(ConfigError, match="model mlp: unknown setting\\(s\\) 'hiden'"):
        build_model("mlp", 4, {"hiden": [3]})
    with pytest.raises(ConfigError, match="known settings: none"):
        build_model("logistic_regression", 4, {"hidden": [3]})


def test_seeded_build_is_reproducible_and_leaves_global_rng_alone() -> None:
    state = torch.get_rng_state()
    a = weights_from_module(build_model("mlp", 4, {"hidden": [5]}, seed=3))
    b = weights_from_module(build_model("mlp", 4, {"hidden": [5]}, seed=3))
    c = weights_from_module(build_model("mlp", 4, {"hidden": [5]}, seed=4))
    assert torch.equal(torch.get_rng_state(), state)
    assert all((a[n] == b[n]).all() for n in a)
    assert not (a["net.0.weight"] == c["net.0.weight"]).all()
    with pytest.raises(ConfigError, match="seed must be an integer"):
        build_model("mlp", 4, seed=-1)


def test_model_from_spec_builtin() -> None:
    m = model_from_spec({"name": "mlp", "hidden": [6], "dropout": 0.0}, 2)
    assert isinstance(m, MLP)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "exactly one of 'name'"),
        ({"name": "mlp", "custom": "a.b:C"}, "exactly one of 'name'"),
        ({"name": 3}, "model name must be a string, got 3"),
    ],
)
def test_model_from_spec_refuses_bad_sections(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        model_from_spec(spec, 3)


def test_custom_builder_class_with_settings(user_package: MakePackage) -> None:
    mod = user_package(GOOD)
    m = model_from_spec({"custom": f"{mod}:Builder", "width": 9}, 3, seed=0)
    assert [tuple(p.shape) for p in m.parameters()][0] == (9, 3)
    assert m(torch.zeros(2, 3)).shape == (2, 1)


def test_custom_module_subclass_and_dotted_form(user_package: MakePackage) -> None:
    mod = user_package(GOOD)
    m = build_custom_model(f"{mod}.Direct", 5, {"scale": 2.0})
    assert type(m).__name__ == "Direct"
    assert m.scale == 2.0


def test_split_dotted_path() -> None:
    assert split_dotted_path("a.b:C") == ("a.b", "C")
    assert split_dotted_path("a.b.C") == ("a.b", "C")
    assert split_dotted_path("a:Outer.Inner") == ("a", "Outer.Inner")
    for bad in ("", "nodots", "a.b:", ":C", "a b:C", "a.b:C:D", "1a:C"):
        with pytest.raises(ConfigError, match="must look like 'package.module:ClassName'"):
            split_dotted_path(bad)


@pytest.mark.parametrize(
    ("attr", "settings", "message"),
    [
        ("Missing", {}, "has no attribute 'Missing'"),
        ("helper", {}, "must name a class, got int"),
        ("Plain", {}, "must be a torch.nn.Module subclass or define a method build"),
        ("NotAModel", {}, "must produce a torch.nn.Module, got int"),
        ("Exploding", {}, r"Exploding.build\(3\) failed: RuntimeError: no GPU here"),
        ("Builder", {"widht": 3}, r"Builder\(widht=3\) failed: TypeError: .*'widht'"),
        ("Direct", {"nope": 1}, r"Direct\(3, nope=1\) failed: TypeError"),
    ],
)
def test_custom_model_errors_are_specific(
    user_package: MakePackage, attr: str, settings: dict[str, object], message: str
) -> None:
    mod = user_package(GOOD)
    with pytest.raises(ConfigError, match=message):
        build_custom_model(f"{mod}:{attr}", 3, settings)


def test_custom_module_not_installed() -> None:
    with pytest.raises(ConfigError, match="module 'no_such_pkg_xyz.models' not found; is its"):
        import_object("no_such_pkg_xyz.models:Net")


def test_custom_module_that_fails_to_import(user_package: MakePackage) -> None:
    mod = user_package("import no_such_dependency_xyz\n")
    with pytest.raises(ConfigError, match=f"importing '{mod}' failed: No module named"):
        import_object(f"{mod}:Net")
    mod2 = user_package("raise ValueError('bad config at import')\n")
    with pytest.raises(ConfigError, match="failed: ValueError: bad config at import"):
        import_object(f"{mod2}:Net")


def test_allowed_modules_are_checked_before_import(user_package: MakePackage) -> None:
    mod = user_package("raise SystemError('must never run')\n")
    pkg = mod.split(".")[0]
    with pytest.raises(ConfigError, match="outside the packages this node allows"):
        import_object(f"{mod}:Net", allowed_modules=["mypkg"])
    assert mod not in sys.modules
    with pytest.raises(ConfigError, match="outside the packages"):
        import_object(f"{pkg}x.models:Net", allowed_modules=[pkg])
    good = user_package(GOOD)
    gpkg = good.split(".")[0]
    assert import_object(f"{good}:Builder", allowed_modules=[gpkg]).__name__ == "Builder"  # type: ignore[attr-defined]
