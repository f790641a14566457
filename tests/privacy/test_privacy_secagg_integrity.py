"""Secure aggregation under tampering and misuse: inconsistent shares are traced to a client."""

from __future__ import annotations

import numpy as np
import pytest
from privacy_secagg_support import Relay, make_config, random_updates

import clawfed.privacy.secagg_client as client_module
from clawfed.privacy import (
    ClientPhase,
    EncryptedShare,
    MaskedInput,
    SecAggClient,
    SecAggError,
    SecAggFailure,
    ServerPhase,
    ShareInbox,
    UnmaskRequest,
    decode_message,
)
from clawfed.privacy.shamir import Share


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


def test_tampered_share_ciphertext_names_its_sender() -> None:
    cfg = make_config(4, 3)
    updates, weights = random_updates(cfg, 1)
    relay = Relay(cfg)
    relay.advertise(cfg.participants)
    inboxes = relay.share(cfg.participants)
    box = inboxes["c02"]
    bad = [
        EncryptedShare(sender=s.sender, recipient=s.recipient, ciphertext=_flip(s.ciphertext, 20))
        if s.sender == "c01"
        else s
        for s in box.shares
    ]
    forged = ShareInbox(session_id=box.session_id, recipient="c02", shares=tuple(bad))
    with pytest.raises(SecAggError) as info:
        relay.clients["c02"].mask(forged, updates["c02"], weights["c02"])
    assert info.value.reason is SecAggFailure.INCONSISTENT_SHARE
    assert info.value.node_id == "c01"
    assert "AES-GCM" in str(info.value)


def test_share_relayed_to_the_wrong_recipient_is_refused() -> None:
    cfg = make_config(4, 3)
    updates, weights = random_updates(cfg, 1)
    relay = Relay(cfg)
    relay.advertise(cfg.participants)
    inboxes = relay.share(cfg.participants)
    # the server hands c02 the ciphertext c01 made for c03, relabelled: AAD no longer matches
    meant_for_c03 = next(s for s in inboxes["c03"].shares if s.sender == "c01")
    swapped = tuple(
        EncryptedShare(sender="c01", recipient="c02", ciphertext=meant_for_c03.ciphertext)
        if s.sender == "c01"
        else s
        for s in inboxes["c02"].shares
    )
    forged = ShareInbox(session_id=cfg.session_id, recipient="c02", shares=swapped)
    with pytest.raises(SecAggError) as info:
        relay.clients["c02"].mask(forged, updates["c02"], weights["c02"])
    assert info.value.node_id == "c01"


def test_holder_revealing_an_altered_share_is_named() -> None:
    cfg = make_config(5, 3)
    updates, weights = random_updates(cfg, 2)
    relay = Relay(cfg)
    relay.advertise(cfg.participants)
    relay.share(cfg.participants)
    request = relay.mask(cfg.participants, updates, weights)
    honest = relay.clients["c03"].unmask(request)
    first = honest.mask_shares[0]
    altered = first.model_copy(update={"y": _flip(first.y, 65)})
    lying = honest.model_copy(update={"mask_shares": (altered, *honest.mask_shares[1:])})
    with pytest.raises(SecAggError) as info:
        relay.server.receive_unmask(lying)
    assert info.value.reason is SecAggFailure.INCONSISTENT_SHARE
    assert info.value.node_id == "c03"
    assert relay.server.phase is ServerPhase.UNMASK  # one bad client does not end the round


def test_dealer_of_inconsistent_shares_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    real_split = client_module.split

    def bent_split(secret: int, threshold: int, xs: list[int], **kw: object) -> tuple[Share, ...]:
        shares = real_split(secret, threshold, xs, **kw)  # type: ignore[arg-type]
        last = shares[-1]
        return (*shares[:-1], Share(last.x, (last.y + 1) % (2**521 - 1)))

    cfg = make_config(5, 3)
    updates, weights = random_updates(cfg, 3)
    relay = Relay(cfg)
    relay.advertise(cfg.participants)
    with monkeypatch.context() as m:
        m.setattr(client_module, "split", bent_split)
        dealer_msg = relay.clients["c01"].share_keys(relay.directory)  # type: ignore[arg-type]
    relay.server.receive_shares(dealer_msg)
    for c in cfg.participants:
        if c != "c01":
            relay.server.receive_shares(relay.clients[c].share_keys(relay.directory))  # type: ignore[arg-type]
    relay.inboxes = relay.server.close_shares()
    relay.mask(cfg.participants, updates, weights)
    with pytest.raises(SecAggError) as info:
        relay.unmask(cfg.participants)
    assert info.value.reason is SecAggFailure.INCONSISTENT_SHARE
    assert info.value.node_id == "c01"
    assert "polynomial" in str(info.value)


def test_dealer_sharing_a_key_other_than_the_advertised_one_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    real_split = client_module.split

    def wrong_key(secret: int, threshold: int, xs: list[int], **kw: object) -> tuple[Share, ...]:
        calls.append(secret)
        if len(calls) == 1:  # the first call shares the mask key: share another key instead
            secret ^= 1 << 100
        return real_split(secret, threshold, xs, **kw)  # type: ignore[arg-type]

    cfg = make_config(5, 3)
    updates, weights = random_updates(cfg, 4)
    relay = Relay(cfg)
    relay.advertise(cfg.participants)
    with monkeypatch.context() as m:
        m.setattr(client_module, "split", wrong_key)
        dealer_msg = relay.clients["c04"].share_keys(relay.directory)  # type: ignore[arg-type]
    relay.server.receive_shares(dealer_msg)
    for c in cfg.participants[:4]:
        relay.server.receive_shares(relay.clients[c].share_keys(relay.directory))  # type: ignore[arg-type]
    relay.inboxes = relay.server.close_shares()
    relay.mask(cfg.participants[:4], updates, weights)  # c04 drops: its key is reconstructed
    with pytest.raises(SecAggError) as info:
        relay.unmask(cfg.participants[:4])
    assert info.value.node_id == "c04"
    assert "advertised" in str(info.value)


def test_inbox_with_a_repeated_sender_is_refused() -> None:
    cfg = make_config(3, 2)
    updates, weights = random_updates(cfg, 5)
    relay = Relay(cfg)
    relay.advertise(cfg.participants)
    inboxes = relay.share(cfg.participants)
    box = inboxes["c00"]
    doubled = ShareInbox(
        session_id=box.session_id, recipient="c00", shares=(*box.shares, box.shares[0])
    )
    with pytest.raises(SecAggError) as info:
        relay.clients["c00"].mask(doubled, updates["c00"], weights["c00"])
    assert info.value.reason is SecAggFailure.BAD_MESSAGE
    assert info.value.node_id == box.shares[0].sender
    relay.clients["c00"].mask(box, updates["c00"], weights["c00"])  # the real inbox works
    assert relay.clients["c00"].phase is ClientPhase.MASKED


def test_protocol_steps_out_of_order_are_refused() -> None:
    cfg = make_config(3, 2)
    updates, weights = random_updates(cfg, 6)
    relay = Relay(cfg)
    with pytest.raises(SecAggError) as info:
        relay.server.close_shares()
    assert info.value.reason is SecAggFailure.WRONG_PHASE
    directory = relay.advertise(cfg.participants)
    with pytest.raises(SecAggError) as info:
        relay.clients["c00"].advertise()
    assert info.value.reason is SecAggFailure.WRONG_PHASE
    relay.share(cfg.participants)
    with pytest.raises(SecAggError):  # answering phase 1 twice
        relay.clients["c01"].share_keys(directory)
    request = relay.mask(cfg.participants, updates, weights)
    relay.unmask(cfg.participants)
    with pytest.raises(SecAggError) as info:  # a client answers the unmask request only once
        relay.clients["c00"].unmask(request)
    assert info.value.reason is SecAggFailure.WRONG_PHASE


def test_server_refuses_duplicates_strangers_and_wrong_sessions() -> None:
    cfg = make_config(3, 2)
    relay = Relay(cfg)
    msg = relay.clients["c00"].advertise()
    relay.server.receive_keys(msg)
    with pytest.raises(SecAggError) as info:
        relay.server.receive_keys(msg)
    assert info.value.node_id == "c00" and info.value.reason is SecAggFailure.BAD_MESSAGE
    with pytest.raises(SecAggError) as info:
        relay.server.receive_keys(msg.model_copy(update={"node_id": "mallory"}))
    assert info.value.node_id == "mallory"
    other = relay.clients["c01"].advertise()
    with pytest.raises(SecAggError) as info:
        relay.server.receive_keys(other.model_copy(update={"session_id": "job/9/9"}))
    assert "session" in str(info.value)
    with pytest.raises(SecAggError) as info:  # reusing another client's key
        relay.server.receive_keys(other.model_copy(update={"s_public": msg.s_public}))
    assert info.value.reason is SecAggFailure.BAD_MESSAGE


def test_server_refuses_a_masked_vector_of_the_wrong_shape() -> None:
    cfg = make_config(3, 2)
    updates, weights = random_updates(cfg, 8)
    relay = Relay(cfg)
    relay.advertise(cfg.participants)
    inboxes = relay.share(cfg.participants)
    good = relay.clients["c00"].mask(inboxes["c00"], updates["c00"], weights["c00"])
    short = MaskedInput(good.session_id, "c00", good.vector[:-1])
    with pytest.raises(SecAggError) as info:
        relay.server.receive_masked(short)
    assert info.value.node_id == "c00"
    wide = MaskedInput(good.session_id, "c00", good.vector.astype(np.uint64))
    with pytest.raises(SecAggError):
        relay.server.receive_masked(wide)
    relay.server.receive_masked(good)  # the proper one is still accepted


def test_client_refuses_an_unmask_request_that_would_reveal_both_secrets() -> None:
    cfg = make_config(4, 3)
    updates, weights = random_updates(cfg, 9)
    relay = Relay(cfg)
    relay.advertise(cfg.participants)
    relay.share(cfg.participants)
    request = relay.mask(cfg.participants, updates, weights)
    both = UnmaskRequest(
        session_id=request.session_id, survivors=request.survivors, dropped=("c01",)
    )
    with pytest.raises(SecAggError) as info:
        relay.clients["c00"].unmask(both)
    assert info.value.reason is SecAggFailure.BAD_MESSAGE
    silent = UnmaskRequest(
        session_id=request.session_id, survivors=("c00", "c02", "c03"), dropped=()
    )
    with pytest.raises(SecAggError) as info:
        relay.clients["c00"].unmask(silent)
    assert "'c01'" in str(info.value)
    few = UnmaskRequest(
        session_id=request.session_id, survivors=("c00", "c01"), dropped=("c02", "c03")
    )
    with pytest.raises(SecAggError) as info:
        relay.clients["c00"].unmask(few)
    assert info.value.reason is SecAggFailure.TOO_FEW_CLIENTS
    assert relay.clients["c00"].phase is ClientPhase.MASKED  # nothing was revealed


def test_client_refuses_a_directory_without_its_own_keys() -> None:
    cfg = make_config(3, 2)
    relay = Relay(cfg)
    directory = relay.advertise(cfg.participants)
    fresh = SecAggClient(cfg, "c00")
    fresh.advertise()
    with pytest.raises(SecAggError) as info:
        fresh.share_keys(directory)
    assert "own keys" in str(info.value)


def test_garbage_control_messages_are_refused_naming_the_sender() -> None:
    with pytest.raises(SecAggError) as info:
        decode_message(b'{"kind": "advertise_keys", "node_id": 5}', sender="c07")
    assert info.value.node_id == "c07" and info.value.reason is SecAggFailure.BAD_MESSAGE
    with pytest.raises(SecAggError):
        decode_message(b"not json")
    with pytest.raises(SecAggError):
        decode_message(
            b'{"kind": "share_keys", "session_id": "s", "node_id": "a",'
            b' "commitment": "AAAA", "shares": []}'
        )
