"""Runs the example of docs/custom-model.md exactly as written there."""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

from clawfed.core import ConfigError
from clawfed.learning.models import model_from_spec

torch.set_num_threads(1)

DOC = Path(__file__).resolve().parents[2] / "docs" / "custom-model.md"


def _block(marker: str) -> str:
    """The fenced code block that follows ``<!-- marker -->`` in the doc."""
    text = DOC.read_text(encoding="utf-8")
    m = re.search(rf"<!-- {re.escape(marker)} -->\n```\w+\n(.*?)\n```", text, re.DOTALL)
    assert m is not None, f"doc has no block marked {marker!r}"
    return m.group(1) + "\n"


@pytest.fixture
def installed_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Install the doc's ``mypkg/models.py`` on sys.path and chdir to a folder with job.yaml."""
    assert "mypkg" not in sys.modules
    pkg = tmp_path / "site" / "mypkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text(_block("example-file: mypkg/models.py"))
    work = tmp_path / "work"
    work.mkdir()
    (work / "job.yaml").write_text(_block("example-job"))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.chdir(work)
    importlib.invalidate_caches()
    yield work
    for name in [m for m in sys.modules if m == "mypkg" or m.startswith("mypkg.")]:
        del sys.modules[name]


@pytest.mark.usefixtures("installed_example")
def test_doc_example_runs_and_learns() -> None:
    namespace: dict[str, object] = {"__name__": "doc_example"}
    exec(compile(_block("example-run"), str(DOC), "exec"), namespace)
    result = namespace["result"]
    model = namespace["model"]
    assert type(model).__name__ == "_Residual"
    assert model.block[0].in_features == 16  # type: ignore[attr-defined]  # width from the job
    assert result.metrics["accuracy"] >= 0.9  # type: ignore[attr-defined]
    assert result.notes == ()  # type: ignore[attr-defined]


def test_doc_example_misspelled_setting_is_a_clear_error(installed_example: Path) -> None:
    job = yaml.safe_load((installed_example / "job.yaml").read_text())
    spec = {**job["model"], "widht": 8}
    with pytest.raises(ConfigError, match=r"mypkg.models:ResidualNet.*unexpected keyword.*widht"):
        model_from_spec(spec, 6)
