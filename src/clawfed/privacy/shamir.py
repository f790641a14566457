"""Shamir secret sharing over the prime field of the Mersenne prime 2**521 - 1.

Shamir, "How to Share a Secret", CACM 1979. A secret ``s`` is the constant term of a random
polynomial ``f`` of degree ``threshold - 1``; holder ``x`` (1, 2, …) gets ``f(x)``. Any
``threshold`` shares give ``s`` back by Lagrange interpolation at 0; fewer reveal nothing.
Field elements are plain Python ints, so any 256-bit key fits with room to spare.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from clawfed.core import ConfigError
from clawfed.privacy.errors import ShamirError

#: The field's modulus: the Mersenne prime M521.
PRIME = (1 << 521) - 1
#: Bytes needed to write any field element big-endian.
ELEMENT_BYTES = (PRIME.bit_length() + 7) // 8

#: Draws a uniform integer in ``[0, n)``; ``secrets.randbelow`` unless a test says otherwise.
RandBelow = Callable[[int], int]


def randbelow_from(entropy: Callable[[int], bytes]) -> RandBelow:
    """A ``randbelow`` drawing from ``entropy(nbytes)`` by rejection sampling (no bias)."""

    def randbelow(n: int) -> int:
        if n < 1:
            raise ConfigError(f"randbelow needs n >= 1, got {n}")
        bits = n.bit_length()
        nbytes = (bits + 7) // 8
        while True:
            v = int.from_bytes(entropy(nbytes), "big") >> (8 * nbytes - bits)
            if v < n:
                return v

    return randbelow


@dataclass(frozen=True)
class Share:
    """The value ``y = f(x)`` of the sharing polynomial at holder coordinate ``x``."""

    x: int
    y: int

    def __post_init__(self) -> None:
        if isinstance(self.x, bool) or not isinstance(self.x, int) or not 0 < self.x < PRIME:
            raise ShamirError(f"share x must be an int in [1, 2**521 - 2], got {self.x!r}")
        if isinstance(self.y, bool) or not isinstance(self.y, int) or not 0 <= self.y < PRIME:
            raise ShamirError("share y must be an int in [0, 2**521 - 2]")

    def __repr__(self) -> str:  # never print the value itself
        return f"Share(x={self.x}, y=<hidden>)"

    def y_bytes(self) -> bytes:
        """``y`` as ``ELEMENT_BYTES`` big-endian bytes."""
        return self.y.to_bytes(ELEMENT_BYTES, "big")

    @classmethod
    def from_bytes(cls, x: int, y: bytes) -> Share:
        """A share from ``x`` and the ``ELEMENT_BYTES`` big-endian bytes of ``y``."""
        if len(y) != ELEMENT_BYTES:
            raise ShamirError(f"share y must be {ELEMENT_BYTES} bytes, got {len(y)}")
        return cls(x, int.from_bytes(y, "big"))


def _check_threshold(threshold: int, holders: int | None) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        raise ConfigError(f"threshold must be an int >= 1, got {threshold!r}")
    if holders is not None and threshold > holders:
        raise ConfigError(f"threshold {threshold} exceeds the number of holders {holders}")


def split(
    secret: int,
    threshold: int,
    xs: Sequence[int],
    *,
    randbelow: RandBelow = secrets.randbelow,
) -> tuple[Share, ...]:
    """Share ``secret`` among holders ``xs`` so that any ``threshold`` of them recover it.

    Parameters
    ----------
    secret
        An int in ``[0, PRIME)``.
    threshold
        Shares needed to reconstruct, ``1 <= threshold <= len(xs)``.
    xs
        Distinct holder coordinates in ``[1, PRIME)``.
    randbelow
        Source of the random coefficients (a CSPRNG; injectable for tests only).

    Returns
    -------
    tuple of Share
        One share per holder, in the order of ``xs``.
    """
    if isinstance(secret, bool) or not isinstance(secret, int) or not 0 <= secret < PRIME:
        raise ConfigError("secret must be an int in [0, 2**521 - 1)")
    _check_threshold(threshold, len(xs))
    coefficients = [secret] + [randbelow(PRIME) for _ in range(threshold - 1)]
    return shares_of(coefficients, xs)


def shares_of(coefficients: Sequence[int], xs: Sequence[int]) -> tuple[Share, ...]:
    """The shares ``f(x)`` for ``x`` in ``xs`` of ``f = Σ coefficients[i]·X^i`` (Horner)."""
    if len(set(xs)) != len(xs):
        raise ConfigError(f"holder coordinates must be distinct, got {list(xs)}")
    out: list[Share] = []
    for x in xs:
        if isinstance(x, bool) or not isinstance(x, int) or not 0 < x < PRIME:
            raise ConfigError(f"holder coordinate must be an int in [1, PRIME), got {x!r}")
        acc = 0
        for c in reversed(coefficients):
            acc = (acc * x + c) % PRIME
        out.append(Share(x, acc))
    return tuple(out)


def interpolate(shares: Sequence[Share], at: int) -> int:
    """The value at ``at`` of the polynomial of degree < ``len(shares)`` through ``shares``."""
    xs = [s.x for s in shares]
    if len(set(xs)) != len(xs):
        raise ShamirError(f"shares must have distinct x coordinates, got {xs}")
    total = 0
    for i, si in enumerate(shares):
        num = 1
        den = 1
        for j, sj in enumerate(shares):
            if i != j:
                num = num * (at - sj.x) % PRIME
                den = den * (si.x - sj.x) % PRIME
        total = (total + si.y * num * pow(den, -1, PRIME)) % PRIME
    return total


def inconsistent(shares: Sequence[Share], threshold: int) -> tuple[int, ...]:
    """The x coordinates of shares off the polynomial through the first ``threshold`` shares.

    An empty tuple means all shares lie on one polynomial of degree < ``threshold``.
    """
    if len(shares) < threshold:
        raise ShamirError(f"need at least {threshold} shares, got {len(shares)}")
    base = list(shares[:threshold])
    return tuple(s.x for s in shares[threshold:] if interpolate(base, s.x) != s.y)


def reconstruct(shares: Sequence[Share], threshold: int) -> int:
    """The secret from at least ``threshold`` shares, all checked for consistency.

    Raises
    ------
    ShamirError
        With fewer than ``threshold`` shares, repeated coordinates, or when a share beyond
        the first ``threshold`` does not lie on their polynomial (a sign of a corrupt or
        forged share); the message lists the offending coordinates.
    """
    _check_threshold(threshold, None)
    off = inconsistent(shares, threshold)
    if off:
        raise ShamirError(
            f"shares at x={list(off)} do not lie on the polynomial through the shares at "
            f"x={[s.x for s in shares[:threshold]]}"
        )
    return interpolate(shares[:threshold], 0)
