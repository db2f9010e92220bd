"""Decoders of everything a peer sends: any bytes give a checked value or one typed refusal."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitdust.p2p.events import CloseReason, SessionClosed
from bitdust.p2p.wire import (
    MAX_KIND,
    MAX_PAYLOAD,
    MAX_REASON,
    WIRE_VERSION,
    Frame,
    FrameType,
    HandshakePayload,
    MalformedFrame,
    decode_frame,
    decode_handshake_payload,
    encode_frame,
    encode_handshake_payload,
)
from tests.p2p.peers import Wire

frames = st.builds(
    Frame,
    type=st.sampled_from(FrameType),
    ident=st.integers(0, 2**63 - 1),
    kind=st.text(min_size=1, max_size=MAX_KIND),
    data=st.binary(max_size=300),
    reason=st.text(max_size=MAX_REASON),
    limit=st.integers(0, 2**63 - 1),
    size=st.integers(1, 2**63 - 1),
)


@given(frames)
def test_every_frame_round_trips_its_own_fields(frame: Frame):
    decoded = decode_frame(encode_frame(frame))
    assert decoded.type is frame.type
    assert decoded == decode_frame(encode_frame(decoded))


@given(st.binary(max_size=400))
def test_any_bytes_decode_to_a_frame_or_a_malformed_frame(data: bytes):
    try:
        frame = decode_frame(data)
    except MalformedFrame:
        return
    assert isinstance(frame.type, FrameType)


@given(
    st.lists(
        st.one_of(st.integers(-(2**63), 2**64 - 1), st.text(max_size=5), st.binary(max_size=5)),
        max_size=5,
    )
)
def test_any_msgpack_array_decodes_or_is_refused(items: list):
    with contextlib.suppress(MalformedFrame):
        decode_frame(msgpack.packb(items))


def test_size_is_checked_before_parsing():
    huge = msgpack.packb([int(FrameType.EVENT), "k", b"x" * (MAX_PAYLOAD + 1)])
    with pytest.raises(MalformedFrame, match="at most"):
        decode_frame(huge)
    with pytest.raises(MalformedFrame, match="size out of bounds"):
        decode_frame(b"\x91" + b"\x00" * 70_000)


@pytest.mark.parametrize("size", [0, -1, 2**63, "1", None])
def test_stream_data_announces_a_positive_size(size):
    """The size a STREAM_DATA frame announces is what the next records must carry: none, or a
    size that is not a count of bytes, is refused before any record is read as data."""
    with pytest.raises(MalformedFrame, match="STREAM_DATA size"):
        decode_frame(msgpack.packb([int(FrameType.STREAM_DATA), 1, size]))


@given(st.binary(max_size=300))
def test_any_bytes_decode_to_a_handshake_payload_or_a_malformed_frame(data: bytes):
    try:
        payload = decode_handshake_payload(data)
    except MalformedFrame:
        return
    assert payload.revision >= 1


@given(
    st.dictionaries(
        st.sampled_from(["v", "u", "r", "s", "x"]),
        st.one_of(st.integers(-2, 2**64 - 1), st.text(max_size=300), st.binary(max_size=1100)),
    )
)
def test_handshake_payload_fields_are_all_checked(obj: dict):
    try:
        payload = decode_handshake_payload(msgpack.packb(obj))
    except MalformedFrame:
        return
    assert obj["v"] == WIRE_VERSION
    assert encode_handshake_payload(payload) == msgpack.packb(obj)


def test_handshake_payload_round_trips():
    payload = HandshakePayload("http://host-a.com/alice.xml", 7, b"s" * 256)
    assert decode_handshake_payload(encode_handshake_payload(payload)) == payload


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_during_the_handshake_close_the_session_or_wait(data: bytes):
    wire = Wire()
    wire.b.receive_data(data, wire.now)
    closed = wire.b.closed
    assert closed is None or closed.reason in {
        CloseReason.HANDSHAKE_FAILED,
        CloseReason.PROTOCOL,
    }


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
def test_any_record_in_an_established_session_closes_it_without_delivering(data: bytes):
    wire = Wire()
    wire.pump()
    record = len(data).to_bytes(2, "big") + data
    wire.b.receive_data(record, wire.now)
    assert wire.b.next_event() == SessionClosed(CloseReason.DECRYPT_FAILED)
    assert wire.b.next_event() is None
