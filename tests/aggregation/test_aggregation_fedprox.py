"""FedProx: FedAvg on the server, ``proximal_mu`` in every node's fit config."""

from __future__ import annotations

import numpy as np
import pytest

from clawfed.aggregation import PROXIMAL_MU_KEY, FedProx, FedProxSettings
from clawfed.core import ConfigError, NodeInfo, Update, Weights


def test_fedprox_sends_mu_and_averages() -> None:
    s = FedProxSettings(proximal_mu=0.5).build()
    assert s.name == "fedprox"
    instr = s.configure(3, [NodeInfo("n1", "credit"), NodeInfo("n2", "audit")])
    assert [i.node_id for i in instr] == ["n1", "n2"]
    assert all(dict(i.config) == {PROXIMAL_MU_KEY: 0.5} for i in instr)

    # mean delta = (2*[3] + 2*[-1]) / 4 = [1]
    agg = s.aggregator(Weights({"w": np.array([10.0])}), 3)
    agg.add(Update("n1", 2, Weights({"w": np.array([3.0])})))
    agg.add(Update("n2", 2, Weights({"w": np.array([-1.0])})))
    np.testing.assert_allclose(agg.result()["w"], [11.0])


@pytest.mark.parametrize("mu", [0.0, -0.1, float("nan"), float("inf")])
def test_fedprox_refuses_bad_mu(mu: float) -> None:
    with pytest.raises(ConfigError, match="proximal_mu must be"):
        FedProx(mu)


def test_fedprox_is_stateless() -> None:
    s = FedProx(0.1)
    assert s.state_dict() == {}
    s.load_state_dict({})
    with pytest.raises(ConfigError, match="keeps no state"):
        s.load_state_dict({"step": 3})
