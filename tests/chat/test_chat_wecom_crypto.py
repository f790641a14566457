"""WeCom callback crypto: official vectors, interop with wechatpy both ways, every refusal."""

from __future__ import annotations

import base64
import hashlib
import os
import string
import struct
import xml.etree.ElementTree as ET

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st
from wechatpy.enterprise.crypto import PrpCrypto as OraclePrp
from wechatpy.enterprise.crypto import WeChatCrypto as OracleCrypto
from wechatpy.enterprise.exceptions import InvalidCorpIdException

from clawfed.chat.errors import (
    InvalidAesKeyError,
    InvalidPaddingError,
    InvalidSignatureError,
    MalformedCallbackError,
    MalformedCiphertextError,
    MalformedPlaintextError,
    MalformedXmlError,
    ReceiveIdMismatchError,
    ReplayedMessageError,
    StaleTimestampError,
)
from clawfed.chat.wecom_crypto import ReplayGuard, WeComCrypto, wecom_signature
from clawfed.core.errors import ConfigError

# wechatpy (a test-only dependency) is the independent oracle. wechatpy 1.8 names WeCom
# "enterprise" (there is no wechatpy.work module in it).

# Official test vector of WeCom's crypto documentation (doc 90968), see wecom-reference.md §3.7.
V_TOKEN = "QDG6eK"
V_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
V_CORP = "wx5823bf96d3bd56c7"
V_ECHO = "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
V_POST_ENCRYPT = (
    "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj9"
    "11L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DO"
    "dnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03"
    "v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpN"
    "elZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q=="
)

TOKEN = "clawfedToken"
CORP = "wwclawfed0001"
TEXT_XML = (
    "<xml><ToUserName><![CDATA[wwclawfed0001]]></ToUserName>"
    "<FromUserName><![CDATA[zhangsan]]></FromUserName><CreateTime>1700000000</CreateTime>"
    "<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[/status 任务-42]]></Content>"
    "<MsgId>4561255354251345929</MsgId><AgentID>1000002</AgentID></xml>"
)


def random_aes_key() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(alphabet[b % len(alphabet)] for b in os.urandom(43))


@pytest.fixture()
def key() -> str:
    return random_aes_key()


def envelope(encrypted: str) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><AgentID><![CDATA[1000002]]></AgentID>"
        f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    )


def raw_encrypt(aes_key: str, plain: bytes) -> str:
    """Encrypt an arbitrary (possibly malformed) padded buffer with the callback key and IV."""
    k = base64.b64decode(aes_key + "=")
    enc = Cipher(algorithms.AES(k), modes.CBC(k[:16])).encryptor()
    return base64.b64encode(enc.update(plain) + enc.finalize()).decode()


# -- official vectors ------------------------------------------------------------------------


def test_official_url_vector_signature_and_plaintext() -> None:
    crypto = WeComCrypto(V_TOKEN, V_KEY, V_CORP)
    sig = "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3"
    assert crypto.signature("1409659589", "263014780", V_ECHO) == sig
    assert crypto.verify_url(sig, "1409659589", "263014780", V_ECHO) == "1616140317555161061"


def test_official_post_vector_decrypts() -> None:
    crypto = WeComCrypto(V_TOKEN, V_KEY, V_CORP)
    body = (
        f"<xml><ToUserName><![CDATA[{V_CORP}]]></ToUserName>"
        f"<Encrypt><![CDATA[{V_POST_ENCRYPT}]]></Encrypt><AgentID><![CDATA[218]]></AgentID></xml>"
    )
    sig = "477715d11cdb4164915debcba66cb864d751f3e6"
    plain = crypto.decrypt_message(body, sig, "1409659813", "1372623149")
    root = ET.fromstring(plain)
    assert root.findtext("FromUserName") == "mycreate"
    assert root.findtext("Content") == "hello"
    assert root.findtext("MsgId") == "4561255354251345929"


def test_signature_is_sha1_of_sorted_concatenation() -> None:
    parts = ["tok", "1409659813", "1372623149", "ENC"]
    expected = hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()
    assert wecom_signature(*parts) == expected
    assert wecom_signature("b", "a", "d", "c") == hashlib.sha1(b"abcd").hexdigest()


# -- interop with wechatpy -------------------------------------------------------------------


def test_wechatpy_encrypts_we_decrypt(key: str) -> None:
    oracle = OracleCrypto(TOKEN, key, CORP)
    ours = WeComCrypto(TOKEN, key, CORP)
    reply = oracle.encrypt_message(TEXT_XML, "1372623149", "1700000000")
    fields = {child.tag: child.text or "" for child in ET.fromstring(reply)}
    body = envelope(fields["Encrypt"])
    plain = ours.decrypt_message(body, fields["MsgSignature"], fields["TimeStamp"], fields["Nonce"])
    assert plain == TEXT_XML


def test_we_encrypt_wechatpy_decrypts(key: str) -> None:
    oracle = OracleCrypto(TOKEN, key, CORP)
    ours = WeComCrypto(TOKEN, key, CORP)
    reply = ours.encrypt_message(TEXT_XML, "98765", 1700000123)
    fields = {child.tag: child.text or "" for child in ET.fromstring(reply)}
    assert fields["TimeStamp"] == "1700000123" and fields["Nonce"] == "98765"
    assert oracle.decrypt_message(reply, fields["MsgSignature"], "1700000123", "98765") == TEXT_XML


def test_url_verification_both_ways(key: str) -> None:
    oracle = OracleCrypto(TOKEN, key, CORP)
    ours = WeComCrypto(TOKEN, key, CORP)
    echo = ours.encrypt("1616140317555161061")
    sig = ours.signature("1700000000", "42", echo)
    assert oracle.check_signature(sig, "1700000000", "42", echo) == "1616140317555161061"
    echo2 = OraclePrp(base64.b64decode(key + "=")).encrypt("8806", CORP).decode()
    sig2 = wecom_signature(TOKEN, "1700000001", "7", echo2)
    assert ours.verify_url(sig2, "1700000001", "7", echo2) == "8806"


@pytest.mark.parametrize("length", range(0, 70))
def test_padding_edges_interoperate(length: int) -> None:
    key = random_aes_key()
    ours = WeComCrypto(TOKEN, key, CORP)
    prp = OraclePrp(base64.b64decode(key + "="))
    text = "x" * length
    assert ours.decrypt(prp.encrypt(text, CORP).decode()) == text
    assert prp.decrypt(ours.encrypt(text), CORP) == text


@settings(max_examples=40, deadline=None)
@given(text=st.text(max_size=300))
def test_any_text_roundtrips_through_wechatpy(text: str) -> None:
    key = "a" * 43
    ours = WeComCrypto(TOKEN, key, CORP)
    prp = OraclePrp(base64.b64decode(key + "="))
    assert prp.decrypt(ours.encrypt(text), CORP) == text
    assert ours.decrypt(prp.encrypt(text, CORP).decode()) == text


def test_wechatpy_refuses_our_message_for_another_corp(key: str) -> None:
    ours = WeComCrypto(TOKEN, key, "wwsomeoneelse")
    oracle = OracleCrypto(TOKEN, key, CORP)
    enc = ours.encrypt(TEXT_XML)
    sig = ours.signature("1", "2", enc)
    with pytest.raises(InvalidCorpIdException):
        oracle.decrypt_message(envelope(enc), sig, "1", "2")


# -- refusals --------------------------------------------------------------------------------


def test_bad_signature_refused(key: str) -> None:
    ours = WeComCrypto(TOKEN, key, CORP)
    enc = ours.encrypt(TEXT_XML)
    good = ours.signature("1700000000", "5", enc)
    bad = ("0" if good[0] != "0" else "1") + good[1:]
    with pytest.raises(InvalidSignatureError, match="msg_signature"):
        ours.decrypt_message(envelope(enc), bad, "1700000000", "5")
    with pytest.raises(InvalidSignatureError):
        ours.decrypt_message(envelope(enc), good, "1700000001", "5")  # timestamp is signed
    with pytest.raises(InvalidSignatureError):
        WeComCrypto("otherToken", key, CORP).verify_url(good, "1700000000", "5", enc)


def test_wrong_receive_id_refused(key: str) -> None:
    theirs = WeComCrypto(TOKEN, key, "wwintruder")
    ours = WeComCrypto(TOKEN, key, CORP)
    enc = theirs.encrypt("hello")
    with pytest.raises(ReceiveIdMismatchError, match="wwintruder") as info:
        ours.verify_url(ours.signature("1", "2", enc), "1", "2", enc)
    assert info.value.expected == CORP and info.value.got == "wwintruder"


@pytest.mark.parametrize("pad", [0, 33, 200])
def test_pad_byte_out_of_range_refused(key: str, pad: int) -> None:
    buffer = os.urandom(16) + struct.pack(">I", 2) + b"hi" + CORP.encode()
    buffer += bytes([7]) * (64 - len(buffer) - 1) + bytes([pad])
    ours = WeComCrypto(TOKEN, key, CORP)
    with pytest.raises(InvalidPaddingError, match=f"last byte is {pad}"):
        ours.decrypt(raw_encrypt(key, buffer))


def test_inconsistent_pad_bytes_refused(key: str) -> None:
    buffer = os.urandom(16) + struct.pack(">I", 2) + b"hi" + CORP.encode()
    k = 64 - len(buffer)
    buffer += bytes([k - 1]) + bytes([k]) * (k - 1)  # one pad byte differs
    with pytest.raises(InvalidPaddingError):
        WeComCrypto(TOKEN, key, CORP).decrypt(raw_encrypt(key, buffer))


def test_length_field_beyond_buffer_refused(key: str) -> None:
    buffer = os.urandom(16) + struct.pack(">I", 1000) + b"hi"
    k = 32 - len(buffer) % 32
    buffer += bytes([k]) * k
    with pytest.raises(MalformedPlaintextError, match="1000 bytes"):
        WeComCrypto(TOKEN, key, CORP).decrypt(raw_encrypt(key, buffer))


@pytest.mark.parametrize(
    ("encrypted", "match"),
    [("not base64 at all!", "base64"), (base64.b64encode(b"x" * 48).decode(), "multiple of 32")],
)
def test_malformed_ciphertext_refused(key: str, encrypted: str, match: str) -> None:
    with pytest.raises(MalformedCiphertextError, match=match):
        WeComCrypto(TOKEN, key, CORP).decrypt(encrypted)


@pytest.mark.parametrize(
    "body",
    [
        "<xml><Encrypt>abc</Encrypt>",  # not well formed
        "<notxml><Encrypt>abc</Encrypt></notxml>",  # wrong root
        "<xml><ToUserName>x</ToUserName></xml>",  # no Encrypt
        '<!DOCTYPE xml [<!ENTITY e "boom">]><xml><Encrypt>&e;</Encrypt></xml>',
        '<!DOCTYPE xml SYSTEM "file:///etc/passwd"><xml><Encrypt>a</Encrypt></xml>',
        "<xml><Encrypt>a</Encrypt><Encrypt>b</Encrypt></xml>",  # duplicated field
    ],
)
def test_malformed_xml_refused(key: str, body: str) -> None:
    with pytest.raises(MalformedXmlError):
        WeComCrypto(TOKEN, key, CORP).decrypt_message(body, "sig", "1", "2")


def test_billion_laughs_refused_before_expansion(key: str) -> None:
    entities = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    body = f'<!DOCTYPE xml [<!ENTITY l0 "lol">{entities}]><xml><Encrypt>&l9;</Encrypt></xml>'
    with pytest.raises(MalformedXmlError, match="DOCTYPE"):
        WeComCrypto(TOKEN, key, CORP).decrypt_message(body, "sig", "1", "2")


def test_empty_encrypt_refused(key: str) -> None:
    with pytest.raises(MalformedCallbackError, match="Encrypt"):
        WeComCrypto(TOKEN, key, CORP).decrypt_message(
            "<xml><Encrypt></Encrypt></xml>", "s", "1", "2"
        )


@pytest.mark.parametrize(
    ("aes_key", "match"),
    [("a" * 42, "43 characters, got 42"), ("a" * 44, "got 44"), ("a" * 42 + "!", "base64")],
)
def test_bad_encoding_aes_key_refused(aes_key: str, match: str) -> None:
    with pytest.raises(InvalidAesKeyError, match=match) as info:
        WeComCrypto(TOKEN, aes_key, CORP)
    assert isinstance(info.value, ConfigError)


def test_empty_token_refused() -> None:
    with pytest.raises(ConfigError, match="Token"):
        WeComCrypto("", "a" * 43, CORP)


# -- replay guard ----------------------------------------------------------------------------


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_replay_guard_refuses_stale_and_future_timestamps() -> None:
    clock = FakeClock()
    guard = ReplayGuard(window=300, clock=clock)
    assert guard.check_timestamp("1700000000") == 1_700_000_000
    assert guard.check_timestamp(1_700_000_000 - 300) == 1_699_999_700
    with pytest.raises(StaleTimestampError, match="within 300 s"):
        guard.check_timestamp(1_700_000_000 - 301)
    with pytest.raises(StaleTimestampError):
        guard.check_timestamp(1_700_000_000 + 301)
    with pytest.raises(MalformedCallbackError, match="integer"):
        guard.check_timestamp("yesterday")


def test_replay_guard_refuses_repeated_ids_until_ttl() -> None:
    clock = FakeClock()
    guard = ReplayGuard(window=300, ttl=600, clock=clock)
    guard.remember("123")
    guard.remember("456")
    with pytest.raises(ReplayedMessageError, match="123"):
        guard.remember("123")
    clock.now += 601
    guard.remember("123")  # forgotten after the ttl
    assert len(guard) == 1  # "456" expired too


def test_replay_guard_is_bounded() -> None:
    guard = ReplayGuard(max_entries=3, clock=FakeClock())
    for key in "abcd":
        guard.remember(key)
    assert len(guard) == 3
    guard.remember("a")  # the oldest was evicted to stay within the bound
    with pytest.raises(ReplayedMessageError):
        guard.remember("d")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"window": 0}, "window"), ({"window": 300, "ttl": 10}, "ttl"), ({"max_entries": 0}, "max_")],
)
def test_replay_guard_config_checked(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ReplayGuard(**kwargs)  # type: ignore[arg-type]
