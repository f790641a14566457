"""The server's view of one masked input is indistinguishable from uniform noise."""

from __future__ import annotations

import numpy as np
import pytest
from privacy_secagg_support import Relay, make_config
from scipy import stats

from clawfed.core import TensorSpec, Weights
from clawfed.privacy.secagg_crypto import KeyLabel, add_mask, derive_key, mask_vector
from clawfed.privacy.shamir import Share, reconstruct

N_PARAMS = 40_000
MODEL = (TensorSpec("w", "float32", (N_PARAMS,)),)
P_MIN = 0.001


def _uniformity(vector: np.ndarray, ring_bits: int) -> tuple[float, float]:
    """p-values of a chi-square test on byte counts and a KS test on the words / 2^k."""
    counts = np.bincount(vector.view(np.uint8), minlength=256)
    chi_p = float(stats.chisquare(counts).pvalue)
    unit = vector.astype(np.float64) / float(2**ring_bits)
    ks_p = float(stats.kstest(unit, "uniform").pvalue)
    return chi_p, ks_p


def _session(inputs: str) -> tuple[Relay, dict[str, Weights]]:
    cfg = make_config(3, 2, model=MODEL, clip=1.0, frac_bits=16, max_weight=10)
    if inputs == "zeros":
        values = {c: np.zeros(N_PARAMS, np.float32) for c in cfg.participants}
    else:  # a highly structured input: a ramp at the clipping bound
        values = {c: np.linspace(-1, 1, N_PARAMS, dtype=np.float32) for c in cfg.participants}
    updates = {c: Weights({"w": v}) for c, v in values.items()}
    weights = dict.fromkeys(cfg.participants, 10)
    relay = Relay(cfg, seed=f"uniform-{inputs}")
    relay.run(updates, weights)
    return relay, updates


@pytest.mark.parametrize("inputs", ["zeros", "ramp"])
def test_a_single_masked_input_looks_uniform(inputs: str) -> None:
    relay, updates = _session(inputs)
    ring = relay.cfg.fixed_point.ring_bits
    y = relay.masked["c01"].vector
    chi_p, ks_p = _uniformity(y, ring)
    assert chi_p > P_MIN and ks_p > P_MIN, (chi_p, ks_p)
    # the same tests do reject the unmasked encoding, so they have power
    plain = relay.cfg.fixed_point.encode(updates["c01"], 10, relay.cfg.model)
    assert min(_uniformity(plain, ring)) < P_MIN


def test_input_stays_hidden_after_the_server_removes_its_self_mask() -> None:
    """Even with the self-mask seed the server reconstructs, pairwise masks hide the input."""
    relay, _ = _session("ramp")
    cfg = relay.cfg
    shares = [
        Share.from_bytes(s.x, s.y)
        for r in relay.responses.values()
        for s in r.mask_shares
        if s.owner == "c01"
    ]
    seed = reconstruct(sorted(shares, key=lambda s: s.x), cfg.threshold).to_bytes(32, "big")
    view = relay.masked["c01"].vector.copy()
    add_mask(view, derive_key(seed, KeyLabel.SELF_MASK, cfg.digest(), "c01"), subtract=True)
    chi_p, ks_p = _uniformity(view, cfg.fixed_point.ring_bits)
    assert chi_p > P_MIN and ks_p > P_MIN, (chi_p, ks_p)


def test_prg_output_is_uniform_and_key_dependent() -> None:
    a = mask_vector(bytes(range(32)), 50_000, 64)
    b = mask_vector(bytes(range(1, 33)), 50_000, 64)
    assert min(_uniformity(a, 64)) > P_MIN
    assert not np.array_equal(a, b)
    # words of two keys are uncorrelated
    r = stats.pearsonr(a[:20_000].astype(np.float64), b[:20_000].astype(np.float64))
    assert float(r.pvalue) > P_MIN
