"""The coordinator-node wire format: tensor payloads in chunks and task config values."""

from clawfed.wire.payload import (
    DEFAULT_CHUNK_SIZE,
    MAX_CHUNK_SIZE,
    MIN_CHUNK_SIZE,
    EncodedPayload,
    Reassembler,
    decode,
    encode,
)
from clawfed.wire.values import (
    ConfigValue,
    decode_values,
    encode_values,
    fill_values,
    from_value,
    to_value,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MAX_CHUNK_SIZE",
    "MIN_CHUNK_SIZE",
    "ConfigValue",
    "EncodedPayload",
    "Reassembler",
    "decode",
    "decode_values",
    "encode",
    "encode_values",
    "fill_values",
    "from_value",
    "to_value",
]
