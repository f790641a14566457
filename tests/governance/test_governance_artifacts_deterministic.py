"""Equal models give byte-identical artifacts, so a version's SHA-256 names its content."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clawfed.core import Weights
from clawfed.governance.artifacts import ArtifactStore


def test_same_weights_and_metadata_give_the_same_digest(tmp_path: Path) -> None:
    weights = Weights({"b": np.arange(5, dtype=np.float32), "a": np.ones((2, 3), np.float64)})
    meta = {"job": "fraud", "round": "3", "department": "信贷部", "x": "1", "y": "2"}
    digests = {ArtifactStore(tmp_path / str(i)).save(weights, "m", meta).sha256 for i in range(6)}
    assert len(digests) == 1
    store = ArtifactStore(tmp_path / "0")
    artifact = store.save(weights, "m", meta)
    back = store.load(artifact.path, artifact.sha256)
    assert list(back) == ["b", "a"]
    np.testing.assert_array_equal(back["a"], weights["a"])
    assert store.metadata(artifact.path) == meta
