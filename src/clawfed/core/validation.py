"""One-line descriptions of pydantic validation errors, for ConfigError messages."""

from __future__ import annotations

from pydantic import ValidationError


def describe_errors(exc: ValidationError) -> str:
    """One part per pydantic error, ``location: message``, joined by ``; ``."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<top level>"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
