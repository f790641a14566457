"""Who masks with whom: the complete graph (SecAgg) or a random k-regular graph (SecAgg+).

SecAgg+ (Bell et al., "Secure Single-Server Aggregation with (Poly)Logarithmic Overhead",
CCS 2020) replaces the complete graph by a Harary graph H(n, k) — each client linked to
the k/2 clients on either side of it on a ring — whose ring order is a random permutation.
The permutation comes from public randomness: the seed is a hash of the server's nonce and
of every advertised key, so neither the server nor a client can pick the graph alone, and
every party derives the same graph without another message.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection, Mapping
from types import MappingProxyType


def graph_seed(config_digest: bytes, nonce: bytes, key_material: bytes) -> bytes:
    """The public 256-bit seed of the neighbour graph of one session."""
    return hashlib.sha256(
        b"clawfed/secagg/v1/graph" + config_digest + nonce + key_material
    ).digest()


def neighbourhoods(
    members: Collection[str], degree: int | None, seed: bytes
) -> Mapping[str, frozenset[str]]:
    """Each member's neighbours (itself excluded).

    Parameters
    ----------
    members
        The clients that advertised keys.
    degree
        ``None`` for the complete graph; an even ``k`` for a random Harary graph H(n, k).
        With ``k >= n - 1`` the graph is complete.
    seed
        Public randomness (``graph_seed``) fixing the random ring order.

    Returns
    -------
    Mapping
        Member id -> frozenset of neighbour ids; the relation is symmetric.
    """
    ids = sorted(set(members))
    n = len(ids)
    if degree is None or degree >= n - 1:
        everyone = frozenset(ids)
        return MappingProxyType({u: everyone - {u} for u in ids})
    ring = sorted(ids, key=lambda u: hmac.new(seed, u.encode(), hashlib.sha256).digest())
    half = degree // 2
    out: dict[str, frozenset[str]] = {}
    for pos, u in enumerate(ring):
        near = {ring[(pos + d) % n] for d in range(1, half + 1)}
        near |= {ring[(pos - d) % n] for d in range(1, half + 1)}
        out[u] = frozenset(near)
    return MappingProxyType(out)
