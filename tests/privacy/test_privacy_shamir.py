"""Shamir secret sharing over GF(2^521 - 1): reconstruction, secrecy and consistency checks."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clawfed.core import ConfigError
from clawfed.privacy import ShamirError
from clawfed.privacy.shamir import (
    ELEMENT_BYTES,
    PRIME,
    Share,
    inconsistent,
    interpolate,
    randbelow_from,
    reconstruct,
    shares_of,
    split,
)

secrets_st = st.integers(0, PRIME - 1)


def test_the_modulus_is_the_mersenne_prime_m521() -> None:
    assert PRIME == 2**521 - 1
    assert pow(3, PRIME - 1, PRIME) == 1  # Fermat witness
    assert ELEMENT_BYTES == 66


@settings(max_examples=60, deadline=None)
@given(secret=secrets_st, n=st.integers(1, 9), data=st.data())
def test_any_threshold_subset_reconstructs(secret: int, n: int, data: st.DataObject) -> None:
    t = data.draw(st.integers(1, n), label="threshold")
    shares = split(secret, t, list(range(1, n + 1)))
    subset = data.draw(st.permutations(shares), label="order")[: data.draw(st.integers(t, n))]
    assert reconstruct(subset, t) == secret


@settings(max_examples=30, deadline=None)
@given(secret=secrets_st, n=st.integers(3, 7), data=st.data())
def test_different_subsets_agree(secret: int, n: int, data: st.DataObject) -> None:
    t = data.draw(st.integers(2, n - 1), label="threshold")
    shares = split(secret, t, list(range(1, n + 1)))
    results = {interpolate(list(c), 0) for c in itertools.combinations(shares, t)}
    assert results == {secret}


@settings(max_examples=30, deadline=None)
@given(s1=secrets_st, s2=secrets_st, n=st.integers(2, 7), data=st.data())
def test_fewer_than_threshold_shares_fit_every_secret(
    s1: int, s2: int, n: int, data: st.DataObject
) -> None:
    """Perfect secrecy: t - 1 shares of s1 are also t - 1 shares of a polynomial hiding s2."""
    t = data.draw(st.integers(2, n), label="threshold")
    xs = list(range(1, n + 1))
    seen = split(s1, t, xs)[: t - 1]
    coeffs = _coefficients([(0, s2), *((s.x, s.y) for s in seen)])
    assert len(coeffs) == t and coeffs[0] == s2  # a valid sharing polynomial of s2 …
    assert shares_of(coeffs, [s.x for s in seen]) == seen  # … that deals the same shares


def _coefficients(points: list[tuple[int, int]]) -> list[int]:
    """Coefficients (lowest first) of the degree < len(points) polynomial through points."""
    k = len(points)
    coeffs = [0] * k
    for i, (xi, yi) in enumerate(points):
        basis = [1]  # the product of (X - x_j) for j != i, lowest degree first
        denom = 1
        for j, (xj, _) in enumerate(points):
            if i == j:
                continue
            shifted = [0, *basis]
            scaled = [*(xj * b for b in basis), 0]
            basis = [(a - b) % PRIME for a, b in zip(shifted, scaled, strict=True)]
            denom = denom * (xi - xj) % PRIME
        scale = yi * pow(denom, -1, PRIME) % PRIME
        for d in range(k):
            coeffs[d] = (coeffs[d] + scale * basis[d]) % PRIME
    return coeffs


def test_a_corrupt_share_is_located() -> None:
    shares = list(split(123456789, 3, [1, 2, 3, 4, 5]))
    shares[4] = Share(5, (shares[4].y + 1) % PRIME)
    assert inconsistent(shares, 3) == (5,)
    with pytest.raises(ShamirError, match=r"x=\[5\]"):
        reconstruct(shares, 3)


def test_too_few_or_repeated_shares_are_refused() -> None:
    shares = split(42, 3, [1, 2, 3])
    with pytest.raises(ShamirError, match="at least 3"):
        reconstruct(shares[:2], 3)
    with pytest.raises(ShamirError, match="distinct"):
        interpolate([shares[0], shares[0]], 0)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ConfigError, match="threshold 4 exceeds"):
        split(1, 4, [1, 2, 3])
    with pytest.raises(ConfigError, match="threshold must be"):
        split(1, 0, [1, 2])
    with pytest.raises(ConfigError, match="secret"):
        split(PRIME, 1, [1])
    with pytest.raises(ConfigError, match="distinct"):
        split(1, 1, [2, 2])
    with pytest.raises(ShamirError):
        Share(0, 1)
    with pytest.raises(ShamirError):
        Share(1, PRIME)


def test_shares_hide_their_value_in_repr_and_round_trip_as_bytes() -> None:
    share = split(2**255 + 17, 2, [1, 2])[0]
    assert str(share.y) not in repr(share)
    assert Share.from_bytes(share.x, share.y_bytes()) == share
    with pytest.raises(ShamirError):
        Share.from_bytes(1, b"\x00" * 10)


def test_seeded_randbelow_is_unbiased_in_range_and_repeatable() -> None:
    def stream(seed: bytes) -> Callable[[int], bytes]:
        counter = itertools.count()
        return lambda n: hashlib.shake_256(seed + str(next(counter)).encode()).digest(n)

    a = randbelow_from(stream(b"x"))
    b = randbelow_from(stream(b"x"))
    draws = [a(10) for _ in range(2000)]
    assert draws[:50] == [b(10) for _ in range(50)]
    assert set(draws) == set(range(10))
    assert max(draws.count(v) for v in range(10)) < 260  # about 200 each
    with pytest.raises(ConfigError):
        a(0)
