"""ArtifactStore: safetensors round trip in model order, atomic writes and digest checks."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from clawfed.core import Weights
from clawfed.core.errors import StoreError
from clawfed.governance import ArtifactStore
from clawfed.governance.artifacts import ORDER_KEY


def _weights() -> Weights:
    rng = np.random.default_rng(7)
    return Weights(
        [
            ("z.weight", rng.standard_normal((3, 4)).astype(np.float32)),
            ("a.bias", rng.standard_normal(4)),  # float64
            ("m.count", np.arange(6, dtype=np.int64).reshape(2, 3)),
            ("b.mask", np.array([True, False, True])),
            ("c.half", np.ones((2, 2), dtype=np.float16)),
            ("scalar", np.array(3.5, dtype=np.float32)),
            ("empty", np.zeros((0, 5), dtype=np.float32)),
            ("strided", np.arange(20, dtype=np.int32).reshape(4, 5)[:, ::2]),
            ("bigendian", np.arange(3, dtype=">f4")),
        ]
    )


def test_round_trip_keeps_order_dtypes_shapes_and_values(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    w = _weights()
    art = store.save(w, "credit-risk@v1", {"job": "credit-risk", "round": "1"})
    assert art.path.parent == (tmp_path / "artifacts").resolve()
    assert art.path.name.startswith("credit-risk@v1.") and art.path.suffix == ".safetensors"
    assert art.sha256 == hashlib.sha256(art.path.read_bytes()).hexdigest()
    assert art.nbytes == art.path.stat().st_size
    back = store.load(art.path, art.sha256)
    assert list(back) == list(w)
    for name in w:
        assert back[name].dtype.name == w[name].dtype.name, name
        assert back[name].shape == w[name].shape, name
        np.testing.assert_array_equal(back[name], w[name])
    assert store.metadata(art.path) == {"job": "credit-risk", "round": "1"}
    assert list(tmp_path.joinpath("artifacts").iterdir()) == [art.path]


def test_relative_paths_resolve_under_the_root(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    art = store.save(_weights(), "m", {})
    assert list(store.load(Path(art.path.name), art.sha256.upper())) == list(_weights())


def test_same_name_new_content_does_not_overwrite(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    one = store.save(Weights({"w": np.zeros(3, np.float32)}), "m", {})
    two = store.save(Weights({"w": np.ones(3, np.float32)}), "m", {})
    assert one.path != two.path and one.sha256 != two.sha256
    np.testing.assert_array_equal(store.load(one.path, one.sha256)["w"], np.zeros(3))
    same = store.save(Weights({"w": np.zeros(3, np.float32)}), "m", {})
    assert same == one


def test_digest_mismatch_names_the_file(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    art = store.save(_weights(), "m", {})
    with pytest.raises(StoreError, match=f"artifact {art.path} is corrupt") as info:
        store.load(art.path, "0" * 64)
    assert art.sha256 in str(info.value)


def test_a_flipped_byte_is_detected(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    art = store.save(_weights(), "m", {})
    data = bytearray(art.path.read_bytes())
    data[-1] ^= 0x01
    art.path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="corrupt or was replaced"):
        store.load(art.path, art.sha256)


def test_missing_file_and_bad_digest_are_store_errors(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    with pytest.raises(StoreError, match="cannot read artifact .*nope.safetensors"):
        store.load(tmp_path / "nope.safetensors", "0" * 64)
    with pytest.raises(StoreError, match="expected_sha256 must be 64 hex digits"):
        store.load(tmp_path / "nope.safetensors", "abc")


def test_a_file_that_is_not_safetensors_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{oops")
    digest = hashlib.sha256(junk.read_bytes()).hexdigest()
    with pytest.raises(StoreError, match="not a valid safetensors file"):
        ArtifactStore(tmp_path).load(junk, digest)


def test_a_file_without_clawfed_order_is_refused(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": np.zeros(2, np.float32)}, foreign)
    digest = hashlib.sha256(foreign.read_bytes()).hexdigest()
    with pytest.raises(StoreError, match=f"metadata '{ORDER_KEY}' does not list"):
        ArtifactStore(tmp_path).load(foreign, digest)


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "a b", "..\\x", "x" * 151])
def test_bad_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(StoreError, match="artifact name must be"):
        ArtifactStore(tmp_path).save(_weights(), name, {})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("meta", "rule"),
    [({ORDER_KEY: "x"}, "reserved"), ({"k": 1}, "non-empty str to str"), ({"": "v"}, "non-empty")],
)
def test_bad_metadata_is_refused(tmp_path: Path, meta: dict[str, object], rule: str) -> None:
    with pytest.raises(StoreError, match=rule):
        ArtifactStore(tmp_path).save(_weights(), "m", meta)  # type: ignore[arg-type]


def test_failed_write_leaves_no_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create artifact folder"):
        ArtifactStore(blocker / "sub").save(_weights(), "m", {})
    store = ArtifactStore(tmp_path / "ok")
    store.save(Weights({"w": np.zeros(1, np.float32)}), "m", {})
    assert [p.suffix for p in (tmp_path / "ok").iterdir()] == [".safetensors"]


def test_non_weights_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="weights must be a Weights"):
        ArtifactStore(tmp_path).save({"w": np.zeros(1)}, "m", {})  # type: ignore[arg-type]
