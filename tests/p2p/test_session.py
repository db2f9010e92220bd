"""Session cores back to back (fake clock, no sockets): handshake, identity checks, requests,
events, bad input."""

from __future__ import annotations

import msgpack
import pytest

from bitdust.p2p.errors import PeerBusy, SessionEnded
from bitdust.p2p.events import (
    CloseReason,
    Established,
    EventReceived,
    RequestFailed,
    RequestReceived,
    ResponseReceived,
    SessionClosed,
)
from bitdust.p2p.handshake import LocalPeer, PeerIdentity, static_public_key
from bitdust.p2p.session import MAX_HELD_INPUT, MAX_PENDING_REQUESTS, Session, SessionTimeouts
from bitdust.p2p.wire import MAX_PAYLOAD, Frame, FrameType, encode_frame
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
    record = wire.a.handshake.noise.encrypt(oversized)
    wire.b.receive_data(len(record).to_bytes(2, "big") + record, wire.now)
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
    record = wire.b.handshake.noise.encrypt(
        encode_frame(Frame(FrameType.RESPONSE, ident=7, data=b"forged"))
    )
    wire.a.receive_data(len(record).to_bytes(2, "big") + record, wire.now)
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
    record = wire.a.handshake.noise.encrypt(
        encode_frame(Frame(FrameType.REQUEST, ident=10_000, kind="slow", data=b""))
    )
    wire.b.receive_data(len(record).to_bytes(2, "big") + record, wire.now)
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


def test_garbage_instead_of_a_handshake_fails_the_handshake():
    wire = Wire()
    wire.b.receive_data(b"\x00\x05hello", wire.now)
    assert wire.b.closed is not None and wire.b.closed.reason is CloseReason.HANDSHAKE_FAILED
