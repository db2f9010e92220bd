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
    stream_data_header,
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


@given(st.integers(0, 2**63 - 1), st.sampled_from([0, 1, 255, 256, 65535 - 600, MAX_PAYLOAD]))
def test_stream_data_header_and_data_are_the_frames_encoding(ident: int, size: int):
    data = bytes(size)
    frame = Frame(FrameType.STREAM_DATA, ident=ident, data=data)
    assert stream_data_header(ident, size) + data == encode_frame(frame)
    assert decode_frame(memoryview(encode_frame(frame))) == frame


def test_a_stream_chunk_is_decoded_without_a_copy():
    """The receiver hands each chunk on as a view of the decrypted record (a 64 KiB copy per
    record cost the stream as much as opening the record did)."""
    plaintext = stream_data_header(3, MAX_PAYLOAD) + b"\x07" * MAX_PAYLOAD
    chunk = decode_frame(plaintext).data
    assert isinstance(chunk, memoryview) and chunk.obj is plaintext
    assert chunk == b"\x07" * MAX_PAYLOAD


@given(st.integers(0, 2**64 - 1), st.binary(max_size=300), st.booleans())
def test_stream_data_in_any_msgpack_form_decodes_as_msgpack_reads_it(ident, data, bin16):
    """The decoder's short cut for STREAM_DATA takes the same frames as msgpack's general one,
    whatever sizes the peer's encoder chose."""
    header = msgpack.packb([int(FrameType.STREAM_DATA), ident, b""])[:-2]
    length = (
        b"\xc5" + len(data).to_bytes(2, "big")
        if bin16
        else msgpack.packb(data)[: -len(data) or None]
    )
    encoded = header + length + data
    assert msgpack.unpackb(encoded) == [int(FrameType.STREAM_DATA), ident, data]
    if ident > 2**63 - 1:
        with pytest.raises(MalformedFrame):
            decode_frame(encoded)
    else:
        assert decode_frame(encoded) == Frame(FrameType.STREAM_DATA, ident=ident, data=data)


@given(st.binary(max_size=40))
def test_any_bytes_after_a_stream_data_start_decode_or_are_malformed(rest: bytes):
    with contextlib.suppress(MalformedFrame):
        frame = decode_frame(b"\x93\x06" + rest)
        assert frame == decode_frame(encode_frame(frame))


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
