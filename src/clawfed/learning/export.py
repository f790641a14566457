"""Export a trained tabular model to safetensors, ONNX, torch.export or TorchScript, verified."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import os
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import onnx
import safetensors.numpy
import torch
from onnx.reference import ReferenceEvaluator
from safetensors import safe_open
from torch import nn

from clawfed.core import ConfigError, StoreError, Weights
from clawfed.learning.convert import check_weights_fit, load_weights

#: Names of the single input and output in ONNX and the metadata key of the feature names.
INPUT_NAME = "features"
OUTPUT_NAME = "logit"
FEATURE_NAMES_KEY = "clawfed.feature_names"
#: safetensors keeps its metadata in a hash map whose order varies between runs, so all of
#: clawfed's metadata goes under this one key, as canonical JSON, for reproducible files.
SAFETENSORS_META_KEY = "clawfed"
_ONNX_LOGGERS = ("torch.onnx._internal.exporter._registration",)
_EXAMPLE_ROWS = 2  # torch.export specialises sizes 0 and 1, so trace with 2 …
_PROBE_ROWS = 5  # … and check with another batch size that the batch axis stays dynamic


class ExportFormat(StrEnum):
    """File formats a model can be exported to."""

    SAFETENSORS = "safetensors"  # the weights only, for clawfed and any safetensors reader
    ONNX = "onnx"  # graph + weights, for ONNX runtimes
    TORCH_EXPORT = "torch_export"  # torch.export program (.pt2), torch's current format
    TORCHSCRIPT = "torchscript"  # deprecated by torch 2.13; for libtorch / legacy serving


SUFFIXES: dict[ExportFormat, str] = {
    ExportFormat.SAFETENSORS: ".safetensors",
    ExportFormat.ONNX: ".onnx",
    ExportFormat.TORCH_EXPORT: ".pt2",
    ExportFormat.TORCHSCRIPT: ".pt",
}


class ExportError(StoreError):
    """A model could not be exported, or the written file did not load back identically."""


@dataclass(frozen=True)
class ExportedModel:
    """A verified export: where it is, its format, sha256 and size."""

    path: Path
    format: ExportFormat
    sha256: str
    size_bytes: int


def export_model(
    module: nn.Module,
    weights: Weights,
    n_features: int,
    path: str | os.PathLike[str],
    fmt: ExportFormat | str,
    *,
    feature_names: Sequence[str] | None = None,
    atol: float = 1e-5,
) -> ExportedModel:
    """Write ``module`` carrying ``weights`` to ``path`` in format ``fmt`` and verify it.

    ``path`` must end in the format's suffix (see ``SUFFIXES``). The caller's module is not
    modified (a copy gets the weights). The file is written next to ``path`` under a
    temporary name, loaded back and compared with the torch model on a probe batch
    (safetensors: bit-exact tensors; ONNX: ``onnx.checker`` plus the ONNX reference
    evaluator; torch formats: outputs within ``atol``), then moved into place, so a failed
    export never replaces an existing file.

    Raises
    ------
    ConfigError
        For an unknown format, bad ``n_features`` or ``feature_names``, or weights that do
        not fit the module.
    ExportError
        When exporting fails or the file does not load back to the same model.
    """
    try:
        form = ExportFormat(fmt)
    except ValueError:
        known = ", ".join(f.value for f in ExportFormat)
        raise ConfigError(f"export format must be one of {known}, got {fmt!r}") from None
    if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
        raise ConfigError(f"n_features must be an integer >= 1, got {n_features!r}")
    names = tuple(feature_names) if feature_names is not None else None
    if names is not None and len(names) != n_features:
        raise ConfigError(f"{len(names)} feature name(s) given for {n_features} features")
    if not atol >= 0.0:
        raise ConfigError(f"atol must be >= 0, got {atol}")
    target = Path(path)
    if target.suffix != SUFFIXES[form]:
        raise ConfigError(
            f"a {form} export must be a file ending in {SUFFIXES[form]}, got {target.name!r}"
        )
    check_weights_fit(module, weights)
    model = copy.deepcopy(module)
    load_weights(model, weights)
    model.eval()
    # the temporary file keeps the suffix: torch.export refuses files not ending in .pt2
    tmp = target.with_name(f".{target.stem}.{uuid.uuid4().hex}.tmp{target.suffix}")
    meta = {FEATURE_NAMES_KEY: json.dumps(list(names))} if names is not None else {}
    probe = torch.from_numpy(
        np.random.default_rng(0).standard_normal((_PROBE_ROWS, n_features)).astype(np.float32)
    )
    writers: dict[ExportFormat, Callable[[], None]] = {
        ExportFormat.SAFETENSORS: lambda: _safetensors(weights, tmp, meta, n_features),
        ExportFormat.ONNX: lambda: _onnx(model, n_features, tmp, meta, probe, atol),
        ExportFormat.TORCH_EXPORT: lambda: _torch_export(model, n_features, tmp, meta, probe, atol),
        ExportFormat.TORCHSCRIPT: lambda: _torchscript(model, n_features, tmp, meta, probe, atol),
    }
    try:
        writers[form]()
        os.replace(tmp, target)
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(
            f"exporting {type(module).__name__} to {form} failed: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
    data = target.read_bytes()
    return ExportedModel(target, form, hashlib.sha256(data).hexdigest(), len(data))


def load_safetensors(path: str | os.PathLike[str]) -> Weights:
    """Read ``Weights`` written by :func:`export_model`, in their original order."""
    raw = safetensors.numpy.load_file(str(path))
    order = _safetensors_meta(path).get("tensor_order", sorted(raw))
    if not isinstance(order, list) or sorted(order) != sorted(raw):
        raise ExportError(f"{path}: the stored tensor order does not match the tensors")
    return Weights((name, raw[name]) for name in order)


def _safetensors_meta(path: str | os.PathLike[str]) -> dict[str, object]:
    with safe_open(str(path), framework="np") as f:
        text = (f.metadata() or {}).get(SAFETENSORS_META_KEY)
    meta = json.loads(text) if text is not None else {}
    if not isinstance(meta, dict):
        raise ExportError(f"{path}: metadata {SAFETENSORS_META_KEY!r} is not a JSON object")
    return meta


def read_feature_names(path: str | os.PathLike[str]) -> tuple[str, ...] | None:
    """The feature names stored in a safetensors or ONNX export, if any were given.

    Raises
    ------
    ConfigError
        When ``path`` ends neither in ``.safetensors`` nor in ``.onnx``.
    """
    p = Path(path)
    if p.suffix not in (".onnx", ".safetensors"):
        raise ConfigError(f"feature names are read from .onnx or .safetensors, got {p.name!r}")
    if p.suffix == ".onnx":
        props = {e.key: e.value for e in onnx.load(str(p), load_external_data=False).metadata_props}
        text = props.get(FEATURE_NAMES_KEY)
        names: object = json.loads(text) if text is not None else None
    else:
        names = _safetensors_meta(p).get(FEATURE_NAMES_KEY)
    if names is None:
        return None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ExportError(f"{p}: stored feature names are not a list of strings")
    return tuple(names)


def load_torch_export(path: str | os.PathLike[str]) -> nn.Module:
    """Load a ``.pt2`` export as a callable module mapping features to logits."""
    return torch.export.load(str(path)).module()


def load_torchscript(path: str | os.PathLike[str]) -> torch.jit.ScriptModule:
    """Load a TorchScript export (silencing torch 2.13's TorchScript deprecation warning)."""
    with _no_jit_deprecation():
        loaded: torch.jit.ScriptModule = torch.jit.load(str(path))  # type: ignore[no-untyped-call]
    return loaded


# --- writers -----------------------------------------------------------------------------


def _safetensors(weights: Weights, tmp: Path, meta: dict[str, str], n_features: int) -> None:
    arrays = {n: np.ascontiguousarray(a) for n, a in weights.items()}
    info = {**meta, "tensor_order": json.dumps(list(weights)), "n_features": str(n_features)}
    canonical = json.dumps({k: json.loads(v) for k, v in info.items()}, sort_keys=True)
    full = {SAFETENSORS_META_KEY: canonical}
    safetensors.numpy.save_file(arrays, str(tmp), metadata=full)
    back = load_safetensors(tmp)
    if list(back) != list(weights):
        raise ExportError(f"safetensors export: tensor order changed: {list(back)}")
    for name, arr in weights.items():
        got = back[name]
        if got.dtype != arr.dtype or got.shape != arr.shape or got.tobytes() != arr.tobytes():
            raise ExportError(f"safetensors export: tensor {name!r} did not load back identically")


def _example(n_features: int) -> tuple[torch.Tensor]:
    return (torch.zeros(_EXAMPLE_ROWS, n_features),)


def _dynamic_batch() -> tuple[dict[int, torch.export.Dim]]:
    return ({0: torch.export.Dim("batch")},)


def _compare(kind: str, expected: torch.Tensor, got: np.ndarray, atol: float) -> None:
    want = expected.detach().numpy()
    if got.shape != want.shape or not np.allclose(got, want, rtol=1e-4, atol=atol):
        raise ExportError(
            f"{kind} export: the loaded model disagrees with the torch model on a probe batch "
            f"(shape {got.shape} vs {want.shape}, "
            f"max diff {float(np.max(np.abs(got - want))) if got.shape == want.shape else 'n/a'})"
        )


def _reference_output(model: nn.Module, probe: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out: torch.Tensor = model(probe)
    return out


def _onnx(
    model: nn.Module,
    n_features: int,
    tmp: Path,
    meta: dict[str, str],
    probe: torch.Tensor,
    atol: float,
) -> None:
    with _quiet_onnx_exporter():
        program = torch.onnx.export(
            model,
            _example(n_features),
            None,
            dynamo=True,
            verbose=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=_dynamic_batch(),
            external_data=False,
        )
    if program is None:
        raise ExportError("onnx export: torch.onnx.export returned no program")
    proto = program.model_proto
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save_model(proto, str(tmp))
    loaded = onnx.load(str(tmp))
    onnx.checker.check_model(loaded, full_check=True)
    inputs = [i.name for i in loaded.graph.input]
    outputs = [o.name for o in loaded.graph.output]
    if inputs != [INPUT_NAME] or outputs != [OUTPUT_NAME]:
        raise ExportError(
            f"onnx export: expected input/output {INPUT_NAME}/{OUTPUT_NAME}, got {inputs}/{outputs}"
        )
    (got,) = ReferenceEvaluator(loaded).run(None, {INPUT_NAME: probe.numpy()})
    _compare("onnx", _reference_output(model, probe), np.asarray(got), atol)


def _torch_export(
    model: nn.Module,
    n_features: int,
    tmp: Path,
    meta: dict[str, str],
    probe: torch.Tensor,
    atol: float,
) -> None:
    program = torch.export.export(model, _example(n_features), dynamic_shapes=_dynamic_batch())
    buf = io.BytesIO()  # a buffer keeps the temporary file name out of the archive
    torch.export.save(program, buf, extra_files=meta)
    tmp.write_bytes(buf.getvalue())
    got = load_torch_export(tmp)(probe)
    _compare("torch_export", _reference_output(model, probe), got.detach().numpy(), atol)


def _torchscript(
    model: nn.Module,
    n_features: int,
    tmp: Path,
    meta: dict[str, str],
    probe: torch.Tensor,
    atol: float,
) -> None:
    with _no_jit_deprecation(), torch.no_grad():
        traced = torch.jit.trace(model, _example(n_features))  # type: ignore[no-untyped-call]
        buf = io.BytesIO()  # a buffer keeps the temporary file name out of the archive
        torch.jit.save(traced, buf, _extra_files=meta)
    tmp.write_bytes(buf.getvalue())
    got = load_torchscript(tmp)(probe)
    _compare("torchscript", _reference_output(model, probe), got.detach().numpy(), atol)


# --- keeping third-party noise out of the logs and out of ``-W error`` test runs -------------


@contextmanager
def _no_jit_deprecation() -> Iterator[None]:
    """Silence torch 2.13's "`torch.jit.*` is deprecated" warnings for this block only."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"`torch\.jit\.\w+` is deprecated", category=DeprecationWarning
        )
        yield


@contextmanager
def _quiet_onnx_exporter() -> Iterator[None]:
    """Silence the dynamo ONNX exporter's pytree FutureWarning and "torchvision missing" logs."""
    loggers = [logging.getLogger(n) for n in _ONNX_LOGGERS]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r".*LeafSpec.*is deprecated", category=FutureWarning
        )
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)
