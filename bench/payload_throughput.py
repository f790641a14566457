"""Throughput of tensor payload encoding and reassembly against a tobytes/frombuffer baseline.

Run: ``.venv/bin/python bench/payload_throughput.py [--elements N] [--chunk-size B] [--repeat R]``

The model is one float32 tensor (10M elements = 40 MB by default) cut into 1 MiB chunks.
"Encode" covers hashing and building every ``Chunk`` message; "reassemble" covers
``Reassembler.add`` for every chunk plus ``finish()`` (digest check, tensor views). The
baseline is what a naive sender/receiver does without chunks or digest: ``a.tobytes()``
then ``np.frombuffer(...).reshape(...)`` (one copy and no integrity check).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from clawfed.core import Weights
from clawfed.wire import Reassembler, encode
from clawfed.wire._proto import federation_pb2 as pb


def best_seconds(fn: Callable[[], object], repeat: int) -> float:
    """Fastest wall time of ``repeat`` runs of ``fn``."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", type=int, default=10_000_000)
    parser.add_argument("--chunk-size", type=int, default=1 << 20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    a = rng.standard_normal(args.elements, dtype=np.float32)
    w = Weights([("model.weight", a)])
    mb = a.nbytes / 1e6

    def do_encode() -> tuple[pb.PayloadHeader, list[pb.Chunk]]:
        enc = encode(w, "bench", chunk_size=args.chunk_size)
        return enc.header, list(enc.chunks())

    header, chunks = do_encode()

    def do_reassemble() -> Weights:
        r = Reassembler(header, max_total_bytes=header.total_bytes)
        for c in chunks:
            r.add(c)
        return r.finish()

    out = do_reassemble()
    if not np.array_equal(out["model.weight"], a):
        raise SystemExit("reassembled tensor differs from the source")

    def do_baseline() -> np.ndarray:
        raw = a.tobytes()
        return np.frombuffer(raw, dtype=np.float32).reshape(a.shape)

    rows = [
        ("encode (sha256 + chunks)", best_seconds(do_encode, args.repeat)),
        ("reassemble (copy + sha256)", best_seconds(do_reassemble, args.repeat)),
        ("baseline tobytes+frombuffer", best_seconds(do_baseline, args.repeat)),
    ]
    print(
        f"payload: {mb:.1f} MB float32, chunk {args.chunk_size} B, {len(chunks)} chunks, "
        f"best of {args.repeat}"
    )
    for label, secs in rows:
        print(f"  {label:<30} {secs * 1e3:8.1f} ms  {mb / secs:9.0f} MB/s")


if __name__ == "__main__":
    main()
