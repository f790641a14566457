"""``clawfed.privacy`` exports exactly its public API, loading submodules lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest

import clawfed.privacy as privacy


def test_every_exported_name_resolves_to_its_module() -> None:
    for name in privacy.__all__:
        value = getattr(privacy, name)
        assert value is not None
    assert sorted(dir(privacy)) == sorted(privacy.__all__)
    assert privacy.SecAggServer.__module__ == "clawfed.privacy.secagg_server"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = privacy.nope


def test_the_secure_aggregation_server_loads_without_dp_accounting_or_torch() -> None:
    code = (
        "import sys; import clawfed.privacy.secagg_server; "
        "from clawfed.privacy import redact; "
        "print(sorted(m for m in ('dp_accounting', 'torch', 'opacus', 'scipy') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
