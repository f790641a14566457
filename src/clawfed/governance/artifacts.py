"""``ArtifactStore``: global models as safetensors files, written atomically, read verified."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load

from clawfed.core.errors import StoreError
from clawfed.core.weights import Weights

#: Metadata key holding the tensor names in the model's order (safetensors sorts them).
ORDER_KEY = "clawfed.order"
SUFFIX = ".safetensors"
_RESERVED_PREFIX = "clawfed."
_NAME = re.compile(r"[^\s/\\:*?\"<>|\x00]{1,150}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Artifact:
    """A stored model file: where it is, its SHA-256 (hex) and its size in bytes."""

    path: Path
    sha256: str
    nbytes: int

    def __post_init__(self) -> None:
        if not isinstance(self.sha256, str) or not _SHA256.fullmatch(self.sha256):
            raise StoreError(
                f"artifact sha256 must be 64 lowercase hex digits, got {self.sha256!r}"
            )
        if isinstance(self.nbytes, bool) or not isinstance(self.nbytes, int) or self.nbytes < 0:
            raise StoreError(f"artifact nbytes must be an int >= 0, got {self.nbytes!r}")
        object.__setattr__(self, "path", Path(self.path))


class ArtifactStore:
    """A folder of immutable model files named ``<name>.<sha256 prefix>.safetensors``.

    The digest in the name means a second save of the same name with other content never
    overwrites the first; the full digest is kept by the model registry and checked on load.
    """

    def __init__(self, root: Path) -> None:
        self._root = Path(root)

    @property
    def root(self) -> Path:
        """The folder holding the artifacts."""
        return self._root

    def save(self, weights: Weights, name: str, metadata: Mapping[str, str]) -> Artifact:
        """Write ``weights`` as safetensors with ``metadata`` and return where it went.

        The file is written to a temporary name in the same folder, flushed to disk and
        renamed into place, so a crash leaves either no file or a complete one.
        """
        if not isinstance(weights, Weights):
            raise StoreError(f"weights must be a Weights, got {type(weights).__name__}")
        if not isinstance(name, str) or not _NAME.fullmatch(name) or name.startswith("."):
            raise StoreError(
                f"artifact name must be 1-150 characters without whitespace, path separators "
                f"or any of :*?\"<>| and must not start with '.', got {name!r}"
            )
        meta = _check_metadata(metadata)
        meta[ORDER_KEY] = json.dumps(list(weights), ensure_ascii=False)
        try:
            self._root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create artifact folder {self._root}: {exc}") from exc
        fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self._root)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            tensors = {k: _little_endian_c(v) for k, v in weights.items()}
            with tmp.open("wb") as fh:
                digest, nbytes = _write_safetensors(fh, tensors, meta)
                fh.flush()
                os.fsync(fh.fileno())
            final = self._root / f"{name}.{digest[:16]}{SUFFIX}"
            os.replace(tmp, final)
        except (OSError, SafetensorError, ValueError, TypeError, KeyError) as exc:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"cannot write artifact {name!r} in {self._root}: {exc}") from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self._root)
        return Artifact(path=final.resolve(), sha256=digest, nbytes=nbytes)

    def load(self, path: Path, expected_sha256: str) -> Weights:
        """Read the model at ``path`` (relative paths are under the root), checking its digest.

        Raises ``StoreError`` naming the file if it is missing, its SHA-256 differs from
        ``expected_sha256`` or it is not a valid clawfed safetensors file.
        """
        want = expected_sha256.lower() if isinstance(expected_sha256, str) else ""
        if not _SHA256.fullmatch(want):
            raise StoreError(f"expected_sha256 must be 64 hex digits, got {expected_sha256!r}")
        file = Path(path) if Path(path).is_absolute() else self._root / path
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise StoreError(f"cannot read artifact {file}: {exc}") from exc
        got = hashlib.sha256(data).hexdigest()
        if got != want:
            raise StoreError(
                f"artifact {file} is corrupt or was replaced: its SHA-256 is {got}, "
                f"the registry expects {want}"
            )
        try:
            tensors = st_load(data)
            order = json.loads(_header_metadata(data).get(ORDER_KEY, "null"))
        except (SafetensorError, ValueError, TypeError) as exc:
            raise StoreError(f"artifact {file} is not a valid safetensors file: {exc}") from exc
        if not isinstance(order, list) or sorted(order) != sorted(tensors):
            raise StoreError(
                f"artifact {file}: metadata {ORDER_KEY!r} does not list the file's tensors"
            )
        try:
            return Weights((n, tensors[n]) for n in order)
        except (ValueError, TypeError) as exc:
            raise StoreError(f"artifact {file} holds tensors clawfed cannot use: {exc}") from exc

    def metadata(self, path: Path) -> dict[str, str]:
        """The user metadata stored with the artifact at ``path`` (without clawfed's keys)."""
        file = Path(path) if Path(path).is_absolute() else self._root / path
        try:
            with file.open("rb") as fh:
                head = fh.read(8)
                size = int.from_bytes(head, "little") if len(head) == 8 else -1
                meta = _header_metadata(head + fh.read(max(size, 0)))
        except OSError as exc:
            raise StoreError(f"cannot read artifact {file}: {exc}") from exc
        except ValueError as exc:
            raise StoreError(f"artifact {file} has a malformed header: {exc}") from exc
        return {k: v for k, v in meta.items() if not k.startswith(_RESERVED_PREFIX)}


def _little_endian_c(a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """``a`` as a C-contiguous little-endian array (0-d arrays stay 0-d)."""
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return a if a.flags.c_contiguous else a.copy(order="C")


def _check_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(metadata, Mapping):
        raise StoreError(f"artifact metadata must be a mapping, got {type(metadata).__name__}")
    out: dict[str, str] = {}
    for k, v in metadata.items():
        if not isinstance(k, str) or not k or not isinstance(v, str):
            raise StoreError(f"artifact metadata must map non-empty str to str, got {k!r}: {v!r}")
        if k.startswith(_RESERVED_PREFIX) or k == "__metadata__":
            raise StoreError(f"artifact metadata key {k!r} is reserved for clawfed")
        out[k] = v
    return out


#: safetensors' dtype codes, ranked as its writer orders the data section (larger first).
_ST_DTYPES: dict[str, tuple[str, int]] = {
    "int64": ("I64", 8),
    "float64": ("F64", 7),
    "float32": ("F32", 6),
    "int32": ("I32", 5),
    "float16": ("F16", 4),
    "int16": ("I16", 3),
    "int8": ("I8", 2),
    "uint8": ("U8", 1),
    "bool": ("BOOL", 0),
}


def _write_safetensors(
    fh: BinaryIO, tensors: Mapping[str, np.ndarray[Any, Any]], meta: Mapping[str, str]
) -> tuple[str, int]:
    """Write ``tensors`` as a safetensors file (https://github.com/huggingface/safetensors)
    straight from their buffers; return the file's SHA-256 (hex) and size.

    The layout is the one safetensors' own writer makes, with the JSON header's keys sorted
    so equal models give equal bytes: an 8-byte little-endian header length, the header
    padded with spaces to a multiple of 8, then the data of each tensor, largest dtype
    first and by name within a dtype. Unlike ``safetensors.numpy.save_file`` it copies no
    tensor (that made two model-sized copies per saved version).
    """
    order = sorted(tensors, key=lambda n: (-_ST_DTYPES[tensors[n].dtype.name][1], n))
    header: dict[str, Any] = {"__metadata__": dict(meta)}
    pos = 0
    for name in order:
        a = tensors[name]
        header[name] = {
            "dtype": _ST_DTYPES[a.dtype.name][0],
            "shape": list(a.shape),
            "data_offsets": [pos, pos + a.nbytes],
        }
        pos += a.nbytes
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    raw = text.encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    digest = hashlib.sha256()
    nbytes = 0
    for part in (len(raw).to_bytes(8, "little"), raw):
        digest.update(part)
        fh.write(part)
        nbytes += len(part)
    for name in order:
        view = tensors[name].reshape(-1).view(np.uint8).data  # C-contiguous: no copy
        digest.update(view)
        fh.write(view)
        nbytes += len(view)
    return digest.hexdigest(), nbytes


def _header_metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors buffer (8-byte length, then a JSON header)."""
    if len(data) < 8:
        raise ValueError("file is shorter than the 8-byte header length")
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8:
        raise ValueError(f"header length {size} exceeds the file")
    header = json.loads(data[8 : 8 + size].decode("utf-8"))
    meta = header.get("__metadata__", {}) if isinstance(header, dict) else None
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ValueError("__metadata__ must map str to str")
    return meta


def _fsync_dir(folder: Path) -> None:
    """Persist a rename: fsync the directory (a no-op where the OS does not allow it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
