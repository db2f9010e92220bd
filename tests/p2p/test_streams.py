"""Streams between two session cores: credit-based flow control and its violations."""

from __future__ import annotations

import pytest

from bitdust.p2p.errors import PeerBusy
from bitdust.p2p.events import (
    CloseReason,
    EventReceived,
    SessionClosed,
    StreamClosed,
    StreamData,
    StreamEnded,
    StreamOpened,
    StreamReset,
    StreamWritable,
)
from bitdust.p2p.streams import MAX_STREAMS, RECEIVE_WINDOW, STREAM_WINDOW
from bitdust.p2p.wire import MAX_PLAINTEXT, Frame, FrameType, encode_frame
from tests.p2p.peers import Wire


def established() -> Wire:
    wire = Wire()
    wire.pump()
    return wire


def received(wire: Wire, stream_id: int) -> bytes:
    return b"".join(e.data for e in wire.of(wire.b, StreamData) if e.stream_id == stream_id)


def test_stream_delivers_everything_in_order_with_a_consuming_receiver():
    wire = established()
    payload = bytes(range(256)) * (5 * STREAM_WINDOW // 256 + 7)
    sid = wire.a.open_stream("backup", b"file-1")
    offset, got = 0, bytearray()
    for _ in range(100):
        offset += wire.a.stream_send(sid, payload[offset:])
        wire.pump()
        for event in wire.of(wire.b, StreamData):
            got += event.data
            wire.b.stream_consumed(sid, len(event.data))
        wire.events[wire.b] = [e for e in wire.events[wire.b] if not isinstance(e, StreamData)]
        if offset == len(payload):
            break
    wire.a.stream_end(sid)
    wire.pump()
    assert got == payload
    assert StreamOpened(sid, "backup", b"file-1") in wire.events[wire.b]
    assert StreamEnded(sid) in wire.events[wire.b]
    # read whole, but the sender learns it succeeded only once the receiver accepts it
    assert wire.of(wire.a, StreamClosed) == []
    wire.b.stream_done(sid)
    wire.pump()
    assert wire.of(wire.a, StreamClosed) == [StreamClosed(sid, "")]
    assert wire.of(wire.a, StreamWritable)  # it ran out of credit and got more


def test_slow_receiver_stops_the_sender_and_unread_bytes_never_exceed_its_window():
    wire = established()
    sid = wire.a.open_stream("backup")
    sent = 0
    for _ in range(20):
        sent += wire.a.stream_send(sid, b"z" * (STREAM_WINDOW // 3))
        wire.pump()
        assert wire.b.unread_bytes() <= STREAM_WINDOW
    assert sent == STREAM_WINDOW  # the credit every stream starts with: nothing read yet
    assert wire.b.unread_bytes() == STREAM_WINDOW
    assert not wire.of(wire.a, StreamWritable)
    # the application reads: the receiver grants its own window past that, the sender resumes
    consumed = STREAM_WINDOW // 2 + 1
    wire.b.stream_consumed(sid, consumed)
    wire.pump()
    assert wire.of(wire.a, StreamWritable) == [StreamWritable(sid)]
    for _ in range(20):
        sent += wire.a.stream_send(sid, b"z" * STREAM_WINDOW)
        wire.pump()
        assert wire.b.unread_bytes() <= RECEIVE_WINDOW
    assert sent == consumed + RECEIVE_WINDOW  # and stopped there: the rest is unread
    assert wire.b.unread_bytes() == RECEIVE_WINDOW
    assert received(wire, sid) == b"z" * sent


def _record(wire: Wire, plaintext: bytes) -> bytes:
    """A record as the sender's session seals it (its Noise cipher state stays current)."""
    message = wire.a.handshake.noise.encrypt(plaintext)
    return len(message).to_bytes(2, "big") + message


def _data_frame(wire: Wire, sid: int, size: int) -> bytes:
    return _record(wire, encode_frame(Frame(FrameType.STREAM_DATA, ident=sid, size=size)))


def test_sender_beyond_its_credit_is_cut_off_and_the_excess_never_delivered():
    wire = established()
    sid = wire.a.open_stream("backup")
    assert wire.a.stream_send(sid, b"a" * STREAM_WINDOW) == STREAM_WINDOW
    wire.pump()
    wire.b.receive_data(_data_frame(wire, sid, 6) + _record(wire, b"EXCESS"), wire.now)
    wire.drain_events(wire.b)
    assert b"EXCESS" not in received(wire, sid)
    end = wire.of(wire.b, SessionClosed)[0]
    assert end.reason is CloseReason.FLOW_CONTROL


@pytest.mark.parametrize("records", [[b"12345", b"67"], [b"1234567"], [b"123", b""]])
def test_data_records_beyond_what_the_frame_announced_end_the_session(records):
    """A STREAM_DATA frame announces the bytes its records carry: a record that brings more, or
    an empty one, is a protocol violation, and nothing of that record is delivered."""
    wire = established()
    sid = wire.a.open_stream("backup")
    wire.pump()
    sent = _data_frame(wire, sid, 6) + b"".join(_record(wire, data) for data in records)
    wire.b.receive_data(sent, wire.now)
    wire.drain_events(wire.b)
    assert received(wire, sid) == b"".join(records[:-1])
    end = wire.of(wire.b, SessionClosed)[0]
    assert end.reason is CloseReason.PROTOCOL
    assert "more data than the frame announced" in end.detail


def test_a_data_record_is_data_even_when_it_reads_as_a_frame():
    """The records after a STREAM_DATA frame are never parsed: data that happens to be a CLOSE
    frame's bytes is delivered, and the session goes on."""
    wire = established()
    sid = wire.a.open_stream("backup")
    close = encode_frame(Frame(FrameType.CLOSE, reason="not a frame here"))
    wire.a.stream_send(sid, close)
    wire.a.send_event("after", b"")
    wire.pump()
    assert received(wire, sid) == close
    assert wire.b.closed is None and wire.of(wire.b, EventReceived)


def test_streams_per_direction_are_bounded():
    wire = established()
    opened = [wire.a.open_stream("s") for _ in range(MAX_STREAMS)]
    with pytest.raises(PeerBusy, match="streams"):
        wire.a.open_stream("s")
    wire.pump()
    assert len(wire.of(wire.b, StreamOpened)) == MAX_STREAMS
    # one ends and is read and accepted: its slot is free on both sides
    wire.a.stream_end(opened[0])
    wire.pump()
    wire.b.stream_done(opened[0])
    wire.pump()
    assert wire.of(wire.a, StreamClosed) == [StreamClosed(opened[0], "")]
    wire.a.open_stream("s")
    wire.pump()
    assert wire.b.closed is None


def test_peer_opening_more_streams_than_allowed_is_cut_off():
    wire = established()
    for _ in range(MAX_STREAMS):
        wire.a.open_stream("s")
    wire.pump()
    rogue = wire.a.handshake.noise.encrypt(
        encode_frame(Frame(FrameType.STREAM_OPEN, ident=99, kind="s", data=b""))
    )
    wire.b.receive_data(len(rogue).to_bytes(2, "big") + rogue, wire.now)
    wire.drain_events(wire.b)
    assert StreamOpened(99, "s", b"") not in wire.events[wire.b]
    end = wire.of(wire.b, SessionClosed)[0]
    assert end.reason is CloseReason.PROTOCOL and "streams" in end.detail


def test_a_stream_done_before_its_end_is_refused_not_accepted():
    wire = established()
    sid = wire.a.open_stream("s")
    wire.a.stream_send(sid, b"half")
    wire.pump()
    wire.b.stream_done(sid)  # the application stopped without reading to the end
    wire.pump()
    assert wire.of(wire.a, StreamClosed) == [
        StreamClosed(sid, "the receiving service stopped reading")
    ]


def test_receiver_refusal_and_sender_reset_reach_the_other_side():
    wire = established()
    refused = wire.a.open_stream("s")
    abandoned = wire.a.open_stream("s")
    wire.a.stream_send(refused, b"x" * 1000)
    wire.pump()
    wire.b.stream_refuse(refused, "disk full")
    wire.a.stream_reset(abandoned, "file vanished")
    wire.a.stream_send(refused, b"in flight")  # crosses the refusal: dropped, not an error
    wire.pump()
    assert StreamClosed(refused, "disk full") in wire.events[wire.a]
    assert StreamReset(abandoned, "file vanished") in wire.events[wire.b]
    assert b"in flight" not in received(wire, refused)
    assert wire.a.closed is None and wire.b.closed is None


def test_big_writes_are_cut_into_records_that_fit():
    wire = established()
    sid = wire.a.open_stream("s")
    wire.a.stream_send(sid, b"y" * (3 * MAX_PLAINTEXT + 5))
    wire.pump()
    sizes = [len(e.data) for e in wire.of(wire.b, StreamData)]
    assert sizes == [MAX_PLAINTEXT, MAX_PLAINTEXT, MAX_PLAINTEXT, 5]
