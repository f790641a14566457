"""Bring-your-own model: import a user's builder class named by a dotted path in a job file."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from torch import nn

from clawfed.core import ConfigError

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_DOTTED = re.compile(rf"{_IDENT}(\.{_IDENT})*")


@runtime_checkable
class ModelBuilder(Protocol):
    """What a user writes: a class whose ``build`` returns a module emitting one logit per row.

    The class is instantiated with the job file's extra model settings as keyword
    arguments, then ``build(n_features)`` is called once per node.
    """

    def build(self, n_features: int) -> nn.Module:
        """A fresh model for inputs with ``n_features`` columns."""
        ...


def split_dotted_path(path: str) -> tuple[str, str]:
    """Split ``"pkg.mod:Name"`` (or ``"pkg.mod.Name"``) into module and attribute path.

    Raises
    ------
    ConfigError
        When ``path`` is not of the form ``package.module:ClassName``.
    """
    if not isinstance(path, str):
        raise ConfigError(f"custom model must be a 'package.module:ClassName' string, got {path!r}")
    text = path.strip()
    if ":" in text:
        module, _, attr = text.partition(":")
    else:
        module, _, attr = text.rpartition(".")
    if not module or not attr or not _DOTTED.fullmatch(module) or not _DOTTED.fullmatch(attr):
        raise ConfigError(f"custom model must look like 'package.module:ClassName', got {path!r}")
    return module, attr


def _check_allowed(module: str, allowed_modules: Sequence[str] | None, path: str) -> None:
    if allowed_modules is None:
        return
    for prefix in allowed_modules:
        if module == prefix or module.startswith(prefix + "."):
            return
    allowed = ", ".join(allowed_modules) or "(none)"
    raise ConfigError(
        f"custom model {path!r} is outside the packages this node allows ({allowed}); "
        "ask the node's administrator to allow that package"
    )


def import_object(path: str, *, allowed_modules: Sequence[str] | None = None) -> object:
    """Import ``package.module`` and return its attribute ``Name`` (dotted for nested).

    When ``allowed_modules`` is given the module must be one of them or inside one, checked
    before any code is imported.

    Raises
    ------
    ConfigError
        For a malformed path, a module that is not installed or fails to import, a missing
        attribute, or a module outside ``allowed_modules``.
    """
    module_name, attr_path = split_dotted_path(path)
    _check_allowed(module_name, allowed_modules, path)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise ConfigError(
                f"custom model {path!r}: module {module_name!r} not found; "
                "is its package installed in this node's environment?"
            ) from exc
        raise ConfigError(
            f"custom model {path!r}: importing {module_name!r} failed: {exc}"
        ) from exc
    except Exception as exc:
        raise ConfigError(
            f"custom model {path!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    obj: object = module
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(
                f"custom model {path!r}: {module_name!r} has no attribute {attr_path!r}"
            ) from None
    return obj


def build_custom_model(
    path: str,
    n_features: int,
    settings: Mapping[str, object] | None = None,
    *,
    allowed_modules: Sequence[str] | None = None,
) -> nn.Module:
    """Build the model of the class at ``path`` for ``n_features`` inputs.

    ``path`` names either a builder class (any class with ``build(n_features)``; it is
    instantiated with ``settings`` as keyword arguments) or a ``torch.nn.Module`` subclass
    (instantiated as ``Cls(n_features, **settings)``).

    Raises
    ------
    ConfigError
        When the class cannot be imported, rejects the settings, fails to build, or does not
        produce a ``torch.nn.Module``.
    """
    kwargs = dict(settings or {})
    target = import_object(path, allowed_modules=allowed_modules)
    if not isinstance(target, type):
        raise ConfigError(f"custom model {path!r} must name a class, got {type(target).__name__}")
    name = target.__qualname__
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    model: object
    if issubclass(target, nn.Module):
        call = f"{name}({', '.join(filter(None, [str(n_features), args]))})"
        model = _call(path, call, lambda: target(n_features, **kwargs))
    else:
        if not callable(getattr(target, "build", None)):
            raise ConfigError(
                f"custom model {path!r}: class {name} must be a torch.nn.Module subclass "
                "or define a method build(self, n_features) -> torch.nn.Module"
            )
        builder = _call(path, f"{name}({args})", lambda: target(**kwargs))
        if not isinstance(builder, ModelBuilder):
            raise ConfigError(f"custom model {path!r}: {name}({args}) has no build method")
        model = _call(path, f"{name}.build({n_features})", lambda: builder.build(n_features))
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"custom model {path!r}: {name} must produce a torch.nn.Module, "
            f"got {type(model).__name__}"
        )
    return model


def _call(path: str, what: str, thunk: Callable[[], object]) -> object:
    try:
        return thunk()
    except Exception as exc:
        raise ConfigError(
            f"custom model {path!r}: {what} failed: {type(exc).__name__}: {exc}"
        ) from exc
