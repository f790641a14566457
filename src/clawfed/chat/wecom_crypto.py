"""WeCom callback crypto (WXBizMsgCrypt scheme) and the replay guard for callbacks.

Signature: SHA1 over the sorted concatenation of token, timestamp, nonce and the encrypted
text. Cipher: AES-256-CBC with key = base64(EncodingAESKey + "=") and IV = key[:16]; the
plaintext is ``random(16) | len(msg) as 4-byte big endian | msg | receive id``, PKCS#7-padded
to a 32-byte block size, and travels as base64.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from clawfed.chat.errors import (
    InvalidAesKeyError,
    InvalidPaddingError,
    InvalidSignatureError,
    MalformedCallbackError,
    MalformedCiphertextError,
    MalformedPlaintextError,
    ReceiveIdMismatchError,
    ReplayedMessageError,
    StaleTimestampError,
)
from clawfed.chat.wecom_xml import build_flat_xml, cdata, parse_flat_xml, require_field
from clawfed.core.errors import ConfigError

ENCODING_AES_KEY_LENGTH = 43
PAD_BLOCK = 32
_AES_BLOCK = 16
_RANDOM_PREFIX = 16


def wecom_signature(token: str, timestamp: str, nonce: str, encrypted: str) -> str:
    """Return hex(SHA1(sorted [token, timestamp, nonce, encrypted] joined with "")).

    Parameters
    ----------
    token
        The callback Token configured in the WeCom admin console.
    timestamp, nonce
        The query parameters of the callback (as sent, strings).
    encrypted
        The base64 ciphertext (``Encrypt`` field or ``echostr``).
    """
    joined = "".join(sorted([token, timestamp, nonce, encrypted]))
    return hashlib.sha1(joined.encode("utf-8")).hexdigest()


def decode_aes_key(encoding_aes_key: str) -> bytes:
    """Decode a 43-character EncodingAESKey into the 32-byte AES key, or refuse it."""
    if len(encoding_aes_key) != ENCODING_AES_KEY_LENGTH:
        raise InvalidAesKeyError(
            f"EncodingAESKey must be {ENCODING_AES_KEY_LENGTH} characters, "
            f"got {len(encoding_aes_key)}"
        )
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidAesKeyError(
            "EncodingAESKey must use only base64 characters [A-Za-z0-9+/]"
        ) from exc
    if len(key) != 32:  # pragma: no cover - 43 valid base64 chars + "=" always give 32 bytes
        raise InvalidAesKeyError(f"EncodingAESKey must decode to 32 bytes, got {len(key)}")
    return key


class WeComCrypto:
    """Encrypts, decrypts and signs WeCom callback payloads for one application.

    Parameters
    ----------
    token
        The callback Token (any non-empty string).
    encoding_aes_key
        The 43-character EncodingAESKey.
    receive_id
        The id appended to every plaintext: the corp id for self-built apps ("" for AI bots).
    random_bytes
        Source of the 16-byte random prefix (default ``os.urandom``).
    """

    def __init__(
        self,
        token: str,
        encoding_aes_key: str,
        receive_id: str,
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if not token:
            raise ConfigError("callback Token must be a non-empty string, got ''")
        self._token = token
        self._key = decode_aes_key(encoding_aes_key)
        self._receive_id = receive_id
        self._random_bytes = random_bytes

    @property
    def receive_id(self) -> str:
        """The receive id this crypto encrypts for and accepts."""
        return self._receive_id

    def signature(self, timestamp: str, nonce: str, encrypted: str) -> str:
        """Return the msg_signature for these values under our token."""
        return wecom_signature(self._token, timestamp, nonce, encrypted)

    def check_signature(
        self, msg_signature: str, timestamp: str, nonce: str, encrypted: str
    ) -> None:
        """Raise ``InvalidSignatureError`` unless ``msg_signature`` matches (constant time)."""
        expected = self.signature(timestamp, nonce, encrypted)
        if not hmac.compare_digest(expected.encode("ascii"), msg_signature.lower().encode()):
            raise InvalidSignatureError(
                "msg_signature must equal SHA1(sorted(token, timestamp, nonce, encrypt)), "
                f"got {msg_signature[:40]!r}"
            )

    def _cipher(self) -> Cipher[modes.CBC]:
        return Cipher(algorithms.AES(self._key), modes.CBC(self._key[:_AES_BLOCK]))

    def encrypt(self, message: str) -> str:
        """Encrypt a message into base64 ciphertext (random prefix, length, receive id, pad)."""
        body = message.encode("utf-8")
        buffer = (
            self._random_bytes(_RANDOM_PREFIX)
            + struct.pack(">I", len(body))
            + body
            + self._receive_id.encode("utf-8")
        )
        pad = PAD_BLOCK - len(buffer) % PAD_BLOCK
        buffer += bytes([pad]) * pad
        encryptor = self._cipher().encryptor()
        return base64.b64encode(encryptor.update(buffer) + encryptor.finalize()).decode("ascii")

    def decrypt(self, encrypted: str) -> str:
        """Decrypt base64 ciphertext, check padding and receive id, and return the message."""
        try:
            raw = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedCiphertextError("encrypted text must be standard base64") from exc
        if not raw or len(raw) % PAD_BLOCK:
            raise MalformedCiphertextError(
                f"ciphertext length must be a positive multiple of {PAD_BLOCK} bytes, "
                f"got {len(raw)}"
            )
        decryptor = self._cipher().decryptor()
        plain = decryptor.update(raw) + decryptor.finalize()
        pad = plain[-1]
        if not 1 <= pad <= PAD_BLOCK or plain[-pad:] != bytes([pad]) * pad:
            raise InvalidPaddingError(
                f"PKCS#7 padding must be 1..{PAD_BLOCK} bytes of equal value, last byte is {pad}"
            )
        plain = plain[:-pad]
        header = _RANDOM_PREFIX + 4
        if len(plain) < header:
            raise MalformedPlaintextError(
                f"decrypted buffer must hold at least {header} bytes, got {len(plain)}"
            )
        (length,) = struct.unpack(">I", plain[_RANDOM_PREFIX:header])
        if header + length > len(plain):
            raise MalformedPlaintextError(
                f"message length field says {length} bytes but only {len(plain) - header} remain"
            )
        body, tail = plain[header : header + length], plain[header + length :]
        try:
            message = body.decode("utf-8")
            receive_id = tail.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedPlaintextError("decrypted message must be UTF-8") from exc
        if not hmac.compare_digest(receive_id.encode(), self._receive_id.encode()):
            raise ReceiveIdMismatchError(expected=self._receive_id, got=receive_id)
        return message

    def verify_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """Answer WeCom's URL check: verify the signature over ``echostr`` and decrypt it.

        Returns
        -------
        str
            The plaintext to send back as the bare HTTP body.
        """
        self.check_signature(msg_signature, timestamp, nonce, echostr)
        return self.decrypt(echostr)

    def decrypt_message(
        self, xml_body: str | bytes, msg_signature: str, timestamp: str, nonce: str
    ) -> str:
        """Verify and decrypt a pushed callback body; return the inner (plaintext) XML."""
        fields = parse_flat_xml(xml_body)
        encrypted = require_field(fields, "Encrypt").strip()
        if not encrypted:
            raise MalformedCallbackError("callback <Encrypt> must not be empty")
        self.check_signature(msg_signature, timestamp, nonce, encrypted)
        return self.decrypt(encrypted)

    def encrypt_message(self, reply_xml: str, nonce: str, timestamp: str | int) -> str:
        """Encrypt a passive-reply XML into WeCom's signed ``<xml><Encrypt>…</xml>`` envelope."""
        stamp = str(timestamp)
        encrypted = self.encrypt(reply_xml)
        signature = self.signature(stamp, nonce, encrypted)
        return (
            f"<xml><Encrypt>{cdata(encrypted)}</Encrypt>"
            f"<MsgSignature>{cdata(signature)}</MsgSignature>"
            f"<TimeStamp>{stamp}</TimeStamp><Nonce>{cdata(nonce)}</Nonce></xml>"
        )

    def encrypt_callback(self, message_xml: str, to_user_name: str, agent_id: int | None) -> str:
        """Build the encrypted body WeCom POSTs to a callback URL (used by the fake WeCom)."""
        fields: dict[str, str | int] = {"ToUserName": to_user_name}
        if agent_id is not None:
            fields["AgentID"] = str(agent_id)
        fields["Encrypt"] = self.encrypt(message_xml)
        return build_flat_xml(fields)


class ReplayGuard:
    """Refuses stale callback timestamps and message ids seen before (bounded TTL cache).

    Parameters
    ----------
    window
        Accepted distance in seconds between a callback timestamp and now (both ways).
    ttl
        How long an accepted message id is remembered; at least ``window`` (default 2x).
    max_entries
        Cache bound; the oldest ids are forgotten first when it is full.
    clock
        Wall-clock seconds (default ``time.time``), injectable for tests.
    """

    def __init__(
        self,
        window: float = 300.0,
        ttl: float | None = None,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if window <= 0:
            raise ConfigError(f"window must be > 0 s, got {window}")
        ttl = 2 * window if ttl is None else ttl
        if ttl < window:
            raise ConfigError(f"ttl must be >= window ({window} s), got {ttl}")
        if max_entries < 1:
            raise ConfigError(f"max_entries must be >= 1, got {max_entries}")
        self.window = window
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def check_timestamp(self, timestamp: str | int) -> int:
        """Return the timestamp as int, or raise if it is not within ``window`` of now."""
        try:
            stamp = int(timestamp)
        except (TypeError, ValueError):
            raise MalformedCallbackError(
                f"timestamp must be integer unix seconds, got {str(timestamp)[:40]!r}"
            ) from None
        now = self._clock()
        if abs(now - stamp) > self.window:
            raise StaleTimestampError(stamp, now, self.window)
        return stamp

    def remember(self, key: str) -> None:
        """Record a message key, or raise ``ReplayedMessageError`` if it is still remembered."""
        now = self._clock()
        with self._lock:
            while self._seen:
                oldest_key, seen_at = next(iter(self._seen.items()))
                if now - seen_at <= self.ttl:
                    break
                del self._seen[oldest_key]
            if key in self._seen:
                raise ReplayedMessageError(key)
            self._seen[key] = now
            while len(self._seen) > self.max_entries:
                self._seen.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)
