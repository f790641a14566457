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


def _library_file(tensors: dict[str, np.ndarray], meta: dict[str, str], path: Path) -> bytes:
    """What ``safetensors.numpy.save_file`` writes, with the header's keys sorted."""
    import json

    from safetensors.numpy import save_file

    save_file(tensors, path, metadata=meta)
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + length])
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    head = text.encode("utf-8")
    head += b" " * (-len(head) % 8)
    return len(head).to_bytes(8, "little") + head + raw[8 + length :]


def test_artifact_bytes_equal_the_safetensors_library_output(tmp_path: Path) -> None:
    # the store writes tensors straight from their buffers; the file must be exactly what
    # the safetensors library itself lays out (every dtype, 0-d and empty tensors too)
    rng = np.random.default_rng(4)
    weights = Weights(
        [
            ("z", rng.standard_normal((3, 4)).astype(np.float32)),
            ("a", np.arange(5, dtype=np.int64)),
            ("flags", np.array([True, False, True])),
            ("scalar", np.array(2.5)),
            ("empty", np.zeros((0, 3), np.float16)),
            ("i8", np.arange(-3, 4, dtype=np.int8)),
            ("u8", np.arange(3, dtype=np.uint8)),
            ("i16", np.arange(4, dtype=np.int16)),
            ("i32", np.arange(4, dtype=np.int32)),
            ("A", np.ones(3, np.float32)),
            ("half", np.array([1.5, -2.0], np.float16)),
            ("big_endian", np.arange(3, dtype=">f8")),
        ]
    )
    meta = {"job": "fraud", "部门": "信贷部"}
    artifact = ArtifactStore(tmp_path / "store").save(weights, "m", meta)
    tensors = {k: v.astype(v.dtype.newbyteorder("<"), order="C") for k, v in weights.items()}
    full_meta = {**meta, "clawfed.order": json_order(weights)}
    expected = _library_file(tensors, full_meta, tmp_path / "library.safetensors")
    assert artifact.path.read_bytes() == expected
    back = ArtifactStore(tmp_path / "store").load(artifact.path, artifact.sha256)
    for name, arr in weights.items():
        np.testing.assert_array_equal(back[name], arr)
        assert back[name].shape == arr.shape


def json_order(weights: Weights) -> str:
    import json

    return json.dumps(list(weights), ensure_ascii=False)
