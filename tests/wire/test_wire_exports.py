"""The public names of ``clawfed.wire`` are exactly the curated list."""

from __future__ import annotations

import clawfed.wire as wire


def test_all_names_resolve_and_nothing_public_is_left_out() -> None:
    public = {n for n in dir(wire) if not n.startswith("_")}
    # submodules
    modules = {"payload", "values", "codecs", "eof", "chunkwire", "broadcast", "query"}
    assert set(wire.__all__) == public - modules
    for name in wire.__all__:
        assert getattr(wire, name) is not None
    assert {"encode", "decode", "Reassembler", "EncodedPayload"} <= set(wire.__all__)
