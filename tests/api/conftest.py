"""Fixtures of the REST API tests: a running federation and its users, per test module.

(Per module, not per session: the coordinator's threads must be gone before other
packages' tests check that they leave no thread behind.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

# Imported (and assertion-rewritten) here, before the server thread starts: CPython 3.11.7
# can fail an ast.parse while another thread builds an AST (gh-106905).
import hypothesis  # noqa: F401
import pytest
from api_support import Federation, NodeSpec, write_credit_csv

from clawfed.governance.policy import Role
from clawfed.node.local_policy import parse_policy

#: Every task of the "credit" node must name a purpose its policy allows.
CREDIT_POLICY = """
version: 1
department: credit
datasets:
  loans:
    purposes: [credit scoring]
privacy:
  secure_aggregation: false
allow_tasks_without_data: true
"""


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """A coordinator with nodes ``c1`` (credit, dataset ``loans``) and ``r1`` (risk)."""
    root: Path = tmp_path_factory.mktemp("fed")
    loans = write_credit_csv(root / "loans.csv")
    risk = write_credit_csv(root / "risk.csv", seed=1)
    federation = Federation(root, [
        NodeSpec("c1", "credit", {"loans": loans}, parse_policy(CREDIT_POLICY)),
        NodeSpec("r1", "risk", {"loans": risk}),
    ]).start()  # fmt: skip
    try:
        federation.live(2)
        yield federation
    finally:
        federation.stop()


@pytest.fixture(scope="module")
def tokens(fed: Federation) -> dict[str, str]:
    """API tokens of one user per role (department heads of credit, risk and ops)."""
    return {
        "admin": fed.add_user("ada", Role.DATA_ADMIN),
        "head": fed.add_user("hugo", Role.DEPARTMENT_HEAD, "credit"),
        "risk": fed.add_user("rita", Role.DEPARTMENT_HEAD, "risk"),
        "other": fed.add_user("olga", Role.DEPARTMENT_HEAD, "ops"),
        "employee": fed.add_user("emma", Role.EMPLOYEE, "credit"),
        "auditor": fed.add_user("otto", Role.AUDITOR),
    }
