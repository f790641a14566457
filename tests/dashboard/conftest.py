"""Fixtures of the dashboard tests: a federation of real processes, shared by the package."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dashboard_support import LiveFederation, noop_job, wait_until

from clawfed.governance.policy import Role

PURPOSE = "fraud detection"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveFederation]:
    """Coordinator with dashboard, nodes c1 (credit) and r1 (risk), four users, two jobs.

    Job ``warmup`` has completed (versions and contributions exist); job ``gated`` needs
    each department's approval and is waiting for it.
    """
    fed = LiveFederation(tmp_path_factory.mktemp("live"))
    try:
        fed.start()
        fed.submit(noop_job("warmup", rounds=2))
        wait_until(lambda: fed.job("warmup")["status"] == "completed", "job warmup")
        fed.tokens["head"] = fed.add_user("hugo", Role.DEPARTMENT_HEAD, "credit")
        fed.tokens["risk_head"] = fed.add_user("rita", Role.DEPARTMENT_HEAD, "risk")
        fed.tokens["employee"] = fed.add_user("emma", Role.EMPLOYEE, "credit", ["warmup"])
        fed.tokens["auditor"] = fed.add_user("otto", Role.AUDITOR)
        fed.submit(noop_job("gated", rounds=400, sleep_s=0.3, approval=PURPOSE))
        wait_until(lambda: fed.job("gated")["message"].startswith("waiting for approval"),
                   "job gated to wait for approval")  # fmt: skip
        yield fed
    finally:
        fed.stop()
