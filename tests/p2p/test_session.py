"""Session cores back to back (fake clock, no sockets): handshake, identity checks, requests,
events, bad input."""

from __future__ import annotations

import itertools
import math
import random

import msgpack
import pytest

from bitdust.p2p import handshake
from bitdust.p2p.errors import PeerBusy, SessionEnded
from bitdust.p2p.events import (
    CloseReason,
    Established,
    EventReceived,
    PeerIdentityNeeded,
    RequestFailed,
    RequestReceived,
    ResponseReceived,
    SessionClosed,
    StreamData,
    StreamEnded,
    StreamOpened,
)
from bitdust.p2p.handshake import LocalPeer, PeerIdentity, static_public_key
from bitdust.p2p.session import MAX_HELD_INPUT, MAX_PENDING_REQUESTS, Session, SessionTimeouts
from bitdust.p2p.streams import STREAM_WINDOW
from bitdust.p2p.wire import MAX_PAYLOAD, WIRE_VERSION, Frame, FrameType, encode_frame
from tests.p2p.peers import ALICE, BOB, MALLORY, Wire, identity_key


def closed(wire: Wire, session: Session) -> SessionClosed:
    ends = wire.of(session, SessionClosed)
    assert len(ends) == 1, wire.events[session]
    return ends[0]


def test_handshake_establishes_both_sides_with_the_verified_identities():
    wire = Wire(alice_revision=3, bob_revision=5)
    wire.pump()
    assert wire.of(wire.a, Established) == [Established(BOB, 5)]
    assert wire.of(wire.b, Established) == [Established(ALICE, 3)]
    assert wire.a.peer_idurl == BOB and wire.b.peer_idurl == ALICE


def test_static_key_is_derived_from_the_identity_key_so_it_survives_restarts():
    first = LocalPeer.from_identity_key(identity_key("alice"), ALICE, 1)
    again = LocalPeer.from_identity_key(identity_key("alice"), ALICE, 2)
    other = LocalPeer.from_identity_key(identity_key("bob"), BOB, 1)
    assert first.static_private == again.static_private
    assert static_public_key(first.static_private) != static_public_key(other.static_private)


def test_request_response_event_and_request_error():
    wire = Wire()
    wire.pump()
    first = wire.a.send_request("echo", b"hello")
    second = wire.a.send_request("echo", b"again")
    wire.a.send_event("note", b"one-way")
    wire.pump()
    assert wire.of(wire.b, RequestReceived) == [
        RequestReceived(first, "echo", b"hello"),
        RequestReceived(second, "echo", b"again"),
    ]
    assert wire.of(wire.b, EventReceived) == [EventReceived("note", b"one-way")]
    wire.b.send_response(first, b"HELLO")
    wire.b.send_request_error(second, "no handler for 'echo' twice")
    wire.pump()
    assert wire.of(wire.a, ResponseReceived) == [ResponseReceived(first, b"HELLO")]
    assert wire.of(wire.a, RequestFailed) == [RequestFailed(second, "no handler for 'echo' twice")]


def test_wrong_signature_ends_the_session_before_anything_is_delivered():
    """Bob's document holds another key than the one that signed his static key."""
    wire = Wire()
    wire.directory.publish(BOB, 5, identity_key("mallory"))
    wire.pump()
    assert closed(wire, wire.a).reason is CloseReason.BAD_SIGNATURE
    assert not wire.of(wire.a, Established)
    assert not wire.of(wire.b, Established)  # alice never sent message 3


def test_responder_refuses_an_initiator_whose_key_changed():
    wire = Wire()
    wire.directory.publish(ALICE, 3, identity_key("mallory"))
    wire.pump()
    assert closed(wire, wire.b).reason is CloseReason.BAD_SIGNATURE
    assert wire.of(wire.a, Established)  # alice finished her side; bob delivers nothing
    assert not wire.of(wire.b, Established)
    with pytest.raises(SessionEnded, match="key"):
        wire.b.send_event("x", b"")


def test_initiator_refuses_a_responder_that_is_not_the_dialled_identity():
    wire = Wire(dial=MALLORY)
    wire.pump()
    end = closed(wire, wire.a)
    assert end.reason is CloseReason.WRONG_PEER
    assert MALLORY in end.detail and BOB in end.detail


def test_claimed_idurl_missing_from_its_document_is_refused():
    wire = Wire()
    wire.directory.entries[ALICE] = PeerIdentity((MALLORY,), 3, identity_key("alice").public_key())
    wire.pump()
    assert closed(wire, wire.b).reason is CloseReason.WRONG_PEER


def test_older_revision_than_the_cached_one_is_refused():
    wire = Wire(bob_revision=5)
    wire.directory.publish(BOB, 6, identity_key("bob"))  # the cache knows a newer one
    wire.pump()
    end = closed(wire, wire.a)
    assert end.reason is CloseReason.STALE_REVISION
    assert "revision 5, 6 is known" in end.detail


def test_unknown_identity_is_refused():
    wire = Wire()
    del wire.directory.entries[ALICE]
    wire.pump()
    assert closed(wire, wire.b).reason is CloseReason.UNKNOWN_PEER
    assert not wire.of(wire.b, Established)


def test_stalled_handshake_is_closed_at_its_deadline():
    wire = Wire(timeouts=SessionTimeouts(handshake=5.0))
    # bob never answers: alice's first message goes nowhere
    assert wire.a.data_to_send()
    assert wire.a.get_timer() == wire.now + 5.0
    wire.a.handle_timer(wire.now + 4.9)
    assert wire.a.closed is None
    wire.a.handle_timer(wire.now + 5.0)
    assert wire.a.closed == SessionClosed(CloseReason.HANDSHAKE_TIMEOUT)
    assert wire.a.get_timer() is None


def test_responder_waiting_for_a_fetch_that_never_ends_times_out():
    wire = Wire(timeouts=SessionTimeouts(handshake=5.0))
    wire.b.receive_data(wire.a.data_to_send(), wire.now)
    wire.a.receive_data(wire.b.data_to_send(), wire.now)
    wire.a.peer_identity(wire.directory.entries[BOB], wire.now)
    wire.b.receive_data(wire.a.data_to_send(), wire.now)
    assert wire.b.awaiting_identity  # the shell never answers
    wire.b.handle_timer(wire.now + 5.0)
    assert wire.b.closed == SessionClosed(CloseReason.HANDSHAKE_TIMEOUT)


def test_idle_session_is_closed_and_the_peer_told_why():
    wire = Wire(timeouts=SessionTimeouts(idle=60.0))
    wire.pump()
    wire.now += 30
    wire.b.send_event("tick", b"")
    wire.pump()
    wire.a.handle_timer(wire.now + 59)
    assert wire.a.closed is None
    wire.a.handle_timer(wire.now + 60)
    assert wire.a.closed == SessionClosed(CloseReason.IDLE)
    wire.pump()
    assert closed(wire, wire.b) == SessionClosed(CloseReason.PEER, CloseReason.IDLE.value)


def test_records_are_noiseprotocols_transport_messages_both_ways():
    """The session seals and opens records with AESGCM itself, from the Noise cipher states:
    noiseprotocol, as a node before that change used, must read them and write them alike."""
    wire = established()
    wire.a.send_event("to-noise", b"sealed by the session")
    record = wire.a.data_to_send()
    assert wire.b.handshake.noise.decrypt(record[2:]) == encode_frame(
        Frame(FrameType.EVENT, kind="to-noise", data=b"sealed by the session")
    )
    wire.a.send_event("next", b"its nonce moved on with noiseprotocol's")
    wire.b.receive_data(wire.a.data_to_send(), wire.now)
    wire.b.receive_data(
        forged_record(wire.a, encode_frame(Frame(FrameType.EVENT, kind="from-noise", data=b"x"))),
        wire.now,
    )
    wire.drain_events(wire.b)
    assert wire.of(wire.b, EventReceived)[-2:] == [
        EventReceived("next", b"its nonce moved on with noiseprotocol's"),
        EventReceived("from-noise", b"x"),
    ]
    assert wire.b.closed is None


def forged_record(sender: Session, plaintext: bytes) -> bytes:
    """A record ``sender`` never sent itself: ``plaintext`` encrypted with its next nonce."""
    message = sender.handshake.noise.encrypt(plaintext)
    return len(message).to_bytes(2, "big") + message


def established() -> Wire:
    wire = Wire()
    wire.pump()
    return wire


def test_tampered_record_closes_the_session_and_delivers_nothing():
    wire = established()
    wire.a.send_request("store", b"secret payload")
    record = bytearray(wire.a.data_to_send())
    record[-1] ^= 0x01
    wire.b.receive_data(bytes(record), wire.now)
    wire.drain_events(wire.b)
    assert not wire.of(wire.b, RequestReceived)
    assert closed(wire, wire.b).reason is CloseReason.DECRYPT_FAILED


def test_replayed_record_closes_the_session_after_delivering_the_original_once():
    wire = established()
    wire.a.send_event("pay", b"10 coins")
    record = wire.a.data_to_send()
    wire.b.receive_data(record + record, wire.now)
    wire.drain_events(wire.b)
    assert wire.of(wire.b, EventReceived) == [EventReceived("pay", b"10 coins")]
    assert closed(wire, wire.b).reason is CloseReason.DECRYPT_FAILED


def test_reordered_records_close_the_session_and_deliver_nothing():
    wire = established()
    wire.a.send_event("first", b"")
    one = wire.a.data_to_send()
    wire.a.send_event("second", b"")
    two = wire.a.data_to_send()
    wire.b.receive_data(two + one, wire.now)
    wire.drain_events(wire.b)
    assert not wire.of(wire.b, EventReceived)
    assert closed(wire, wire.b).reason is CloseReason.DECRYPT_FAILED


def test_truncated_record_delivers_nothing_and_the_lost_connection_says_truncated():
    wire = established()
    wire.a.send_event("big", b"x" * 1000)
    record = wire.a.data_to_send()
    wire.b.receive_data(record[:-10], wire.now)
    wire.drain_events(wire.b)
    assert not wire.of(wire.b, EventReceived)
    wire.b.connection_lost(wire.now)
    wire.drain_events(wire.b)
    assert closed(wire, wire.b).reason is CloseReason.TRUNCATED


def test_oversized_frame_is_refused_before_delivery():
    """A frame that fits a Noise message but carries more than a frame may hold."""
    wire = established()
    oversized = msgpack.packb([int(FrameType.EVENT), "big", b"x" * (MAX_PAYLOAD + 1)])
    wire.b.receive_data(forged_record(wire.a, oversized), wire.now)
    wire.drain_events(wire.b)
    assert not wire.of(wire.b, EventReceived)
    end = closed(wire, wire.b)
    assert end.reason is CloseReason.MALFORMED and "at most" in end.detail


def test_local_payload_above_a_frame_is_refused_with_advice():
    wire = established()
    with pytest.raises(ValueError, match="use a stream"):
        wire.a.send_request("store", b"x" * (MAX_PAYLOAD + 1))


def test_answer_to_no_request_is_a_protocol_violation():
    wire = established()
    forged = encode_frame(Frame(FrameType.RESPONSE, ident=7, data=b"forged"))
    wire.a.receive_data(forged_record(wire.b, forged), wire.now)
    wire.drain_events(wire.a)
    assert not wire.of(wire.a, ResponseReceived)
    assert closed(wire, wire.a).reason is CloseReason.PROTOCOL


def test_requests_in_flight_are_bounded_on_both_sides():
    wire = established()
    for _ in range(MAX_PENDING_REQUESTS):
        wire.a.send_request("slow", b"")
    with pytest.raises(PeerBusy, match=f"{MAX_PENDING_REQUESTS} requests"):
        wire.a.send_request("slow", b"")
    wire.pump()
    # a peer that ignores the rule is cut off
    extra = encode_frame(Frame(FrameType.REQUEST, ident=10_000, kind="slow", data=b""))
    wire.b.receive_data(forged_record(wire.a, extra), wire.now)
    wire.drain_events(wire.b)
    assert len(wire.of(wire.b, RequestReceived)) == MAX_PENDING_REQUESTS
    end = closed(wire, wire.b)
    assert end.reason is CloseReason.PROTOCOL and "await answers" in end.detail


def test_input_held_during_the_identity_fetch_is_bounded():
    wire = Wire()
    wire.b.receive_data(wire.a.data_to_send(), wire.now)
    wire.a.receive_data(wire.b.data_to_send(), wire.now)
    wire.a.peer_identity(wire.directory.entries[BOB], wire.now)
    wire.b.receive_data(wire.a.data_to_send(), wire.now)
    assert wire.b.awaiting_identity
    chunk = b"\x00\x10" + b"\x00" * 16
    for _ in range(MAX_HELD_INPUT // len(chunk) + 1):
        wire.b.receive_data(chunk, wire.now)
    assert wire.b.closed == SessionClosed(CloseReason.INPUT_LIMIT)


def test_a_peer_of_another_wire_version_fails_the_handshake_saying_so(monkeypatch):
    """Nodes of different wire versions cannot talk (the version is in the Noise prologue):
    the one that notices says so, as an operator upgrading a network needs to know."""
    wire = Wire()
    older_prologue = handshake.PROLOGUE.replace(
        f"/{WIRE_VERSION}".encode(), f"/{WIRE_VERSION - 1}".encode(), 1
    )
    with monkeypatch.context() as patch:
        patch.setattr(handshake, "PROLOGUE", older_prologue)
        older = Session(initiator=False, local=wire.b.handshake.local, now=wire.now)
    wire.b, wire.events[older] = older, []
    wire.pump()
    assert wire.a.closed is not None and wire.a.closed.reason is CloseReason.HANDSHAKE_FAILED
    assert f"another p2p wire version than this node's {WIRE_VERSION}" in wire.a.closed.detail
    assert not wire.of(wire.a, Established) and not wire.of(older, Established)


def test_garbage_instead_of_a_handshake_fails_the_handshake():
    wire = Wire()
    wire.b.receive_data(b"\x00\x05hello", wire.now)
    assert wire.b.closed is not None and wire.b.closed.reason is CloseReason.HANDSHAKE_FAILED


# -- records read out of pieces cut anywhere -------------------------------------------------------


def _record_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each record in ``data``: a 2-byte length, then that many bytes."""
    spans, start = [], 0
    while start < len(data):
        end = start + 2 + int.from_bytes(data[start : start + 2], "big")
        spans.append((start, end))
        start = end
    assert start == len(data)
    return spans


def _random_cuts(data: bytes) -> list[int]:
    """Pieces of 1 B to 200 KiB (fixed seed), small ones as likely as large ones."""
    rng, cuts, at = random.Random(20261126), [], 0
    while at < len(data):
        at += int(2 ** rng.uniform(0, math.log2(200 * 1024)))
        cuts.append(at)
    return cuts


#: where the bytes a session receives are cut into pieces
SPLITS = {
    "whole": lambda data: [],
    "at_record_boundaries": lambda data: [end for _, end in _record_spans(data)],
    "inside_the_length": lambda data: [start + 1 for start, _ in _record_spans(data)],
    "right_after_the_length": lambda data: [start + 2 for start, _ in _record_spans(data)],
    "one_byte_short": lambda data: [end - 1 for _, end in _record_spans(data)],
    "length_and_body_apart": lambda data: [
        cut for start, end in _record_spans(data) for cut in (start + 1, start + 2, end - 1)
    ],
    "random_1B_to_200KiB": _random_cuts,
}


def _short_exchange(wire: Wire) -> dict[int, bytes]:
    """A little of everything from alice; returns what each stream carries."""
    wire.a.send_event("hello", b"")
    wire.a.send_request("get", b"r" * 300)
    stream = wire.a.open_stream("put", b"header")
    wire.a.stream_send(stream, b"abc" * 1000)
    wire.a.send_event("between", b"e")
    wire.a.stream_end(stream)
    return {stream: b"abc" * 1000}


def _long_exchange(wire: Wire) -> dict[int, bytes]:
    """Three streams written in writes of 1 B to 200 KB (records up to the largest, 64 KiB),
    interleaved with events of 0 B to a full frame; returns what each stream carries."""
    rng = random.Random(7)
    sent = {wire.a.open_stream(f"put{i}", rng.randbytes(100 * i)): b"" for i in range(3)}
    while unfinished := [stream for stream, data in sent.items() if len(data) < 800_000]:
        for stream in unfinished:
            size = rng.choice([1, 100, 5000, MAX_PAYLOAD, 200_000])
            data = rng.randbytes(min(size, STREAM_WINDOW - len(sent[stream])))
            assert wire.a.stream_send(stream, data) == len(data)  # within one window
            sent[stream] += data
        wire.a.send_event("tick", rng.randbytes(rng.choice([0, 1, 1000, MAX_PAYLOAD])))
    for stream in sent:
        wire.a.stream_end(stream)
    return sent


def _deliver(wire: Wire, data: bytes, cuts: list[int]) -> None:
    """``data`` to bob in pieces cut at ``cuts``; his events are handled after each, as the
    shell does (an identity he needs is fetched in between). Each piece is a view of one
    buffer, overwritten once he returns, as the shell's read buffer is."""
    inner = {cut for cut in cuts if 0 < cut < len(data)}
    buffer = bytearray(len(data))
    for start, end in itertools.pairwise([0, *sorted(inner), len(data)]):
        buffer[: end - start] = data[start:end]
        with memoryview(buffer) as view:
            wire.b.receive_data(view[: end - start], wire.now)
        buffer[:] = bytes(len(buffer))  # whatever he kept must have been copied
        wire.drain_events(wire.b)


def _received(script, cut, *, with_handshake: bool) -> tuple[list, dict[int, bytes], int]:
    """Bob's events once alice's traffic (``script``) reached him cut by ``cut``, what each
    stream carried and how many bytes he got. ``with_handshake``: alice's handshake messages
    are cut too, the traffic right behind her last one (read after bob's identity fetch)."""
    wire = Wire()
    if with_handshake:
        hello = wire.a.data_to_send()
        _deliver(wire, hello, cut(hello))
        wire.a.receive_data(wire.b.data_to_send(), wire.now)
        wire.drain_events(wire.a)  # alice verifies bob and sends her last message
    else:
        wire.pump()
    sent = script(wire)
    traffic = wire.a.data_to_send()
    _deliver(wire, traffic, cut(traffic))
    assert wire.b.closed is None
    wire.b.connection_lost(wire.now)  # nothing half-read is left over
    wire.drain_events(wire.b)
    assert closed(wire, wire.b).reason is CloseReason.CONNECTION_LOST
    return wire.events[wire.b], sent, wire.b.bytes_in


def _streams(events: list) -> dict[int, bytes]:
    carried: dict[int, bytes] = {}
    for event in events:
        if isinstance(event, StreamData):
            carried[event.stream_id] = carried.get(event.stream_id, b"") + event.data
    return carried


@pytest.mark.parametrize("split", [*SPLITS, "one_byte_at_a_time"])
def test_a_short_exchange_cut_anywhere_is_received_as_when_whole(split):
    cut = SPLITS.get(split, lambda data: list(range(1, len(data))))
    whole_events, _, whole_bytes = _received(_short_exchange, SPLITS["whole"], with_handshake=True)
    events, sent, bytes_in = _received(_short_exchange, cut, with_handshake=True)
    assert (events, bytes_in) == (whole_events, whole_bytes)
    assert _streams(events) == sent
    assert [type(event) for event in events] == [
        PeerIdentityNeeded,
        Established,
        EventReceived,
        RequestReceived,
        StreamOpened,
        StreamData,
        EventReceived,
        StreamEnded,
        SessionClosed,
    ]


@pytest.mark.parametrize("split", [name for name in SPLITS if name != "whole"])
def test_a_long_exchange_cut_anywhere_is_received_as_when_whole(split):
    whole_events, _, whole_bytes = _received(_long_exchange, SPLITS["whole"], with_handshake=False)
    events, sent, bytes_in = _received(_long_exchange, SPLITS[split], with_handshake=False)
    assert (events, bytes_in) == (whole_events, whole_bytes)
    assert _streams(events) == sent
    assert sum(isinstance(event, StreamEnded) for event in events) == 3


# -- a record that ends the session in the middle of a piece ------------------------------------

AFTER = encode_frame(Frame(FrameType.EVENT, kind="after", data=b"not for you"))


def _ending_record(wire: Wire, ending: str) -> bytes:
    if ending == "close":
        wire.a.close(CloseReason.LOCAL, "going away")
        return wire.a.data_to_send()
    if ending == "malformed":
        return forged_record(wire.a, msgpack.packb([99]))
    if ending == "protocol":
        return forged_record(wire.a, encode_frame(Frame(FrameType.RESPONSE, ident=7, data=b"")))
    tampered = bytearray(forged_record(wire.a, AFTER))
    tampered[-1] ^= 0x01
    return bytes(tampered)


ENDINGS = {
    "close": SessionClosed(CloseReason.PEER, "going away"),
    "malformed": SessionClosed(CloseReason.MALFORMED, "unknown frame type"),
    "protocol": SessionClosed(CloseReason.PROTOCOL, "RESPONSE: answer to no pending request"),
    "tampered": SessionClosed(CloseReason.DECRYPT_FAILED),
}


@pytest.mark.parametrize("ending", ENDINGS)
@pytest.mark.parametrize("piece", ["starts_with_it", "finishes_an_earlier_record"])
def test_records_behind_one_that_ends_the_session_are_not_read(ending, piece):
    wire = established()
    wire.events[wire.b].clear()
    wire.a.send_event("before", b"b" * 1000)
    before = wire.a.data_to_send()
    data = before + _ending_record(wire, ending) + forged_record(wire.a, AFTER) * 2
    data += forged_record(wire.a, AFTER)[:7]  # and the beginning of one more
    bytes_in = wire.b.bytes_in
    first = 0 if piece == "starts_with_it" else len(before) // 2
    _deliver(wire, data, [first])
    assert wire.events[wire.b] == [EventReceived("before", b"b" * 1000), ENDINGS[ending]]
    assert wire.b.closed == ENDINGS[ending] and wire.b.bytes_in - bytes_in == len(data)
    told = wire.b.data_to_send()
    if ending in ("malformed", "protocol"):  # bob tells alice why, as for any frame he refuses
        wire.a.receive_data(told, wire.now)
        wire.drain_events(wire.a)
        assert closed(wire, wire.a) == SessionClosed(CloseReason.PEER, ENDINGS[ending].detail)
    else:
        assert told == b""
