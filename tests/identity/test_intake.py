"""The TCP intake framing, driven as a sans-IO core (no sockets)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitdust.identity.intake import (
    IdentityReceived,
    IntakeConnection,
    NeedData,
    ProtocolError,
    State,
    encode_request,
    format_reply,
    parse_reply,
)


def _feed(connection: IntakeConnection, *chunks: bytes):
    events = []
    for chunk in chunks:
        connection.receive_data(chunk)
        event = connection.next_event()
        events.append(event)
        if not isinstance(event, NeedData):
            break
    return events


def test_whole_request_in_one_chunk():
    events = _feed(IntakeConnection(), encode_request(b"<identity/>"))
    assert events == [IdentityReceived(b"<identity/>")]


def test_request_byte_by_byte():
    request = encode_request(b"<identity>x</identity>")
    connection = IntakeConnection()
    events = _feed(connection, *(request[i : i + 1] for i in range(len(request))))
    assert events[-1] == IdentityReceived(b"<identity>x</identity>")
    assert all(isinstance(event, NeedData) for event in events[:-1])


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"HELLO 12\n", "expected a header line"),
        (b"IDENTITY 012\n", "not a positive decimal"),
        (b"IDENTITY -1\n", "not a positive decimal"),
        (b"IDENTITY 0\n", "not a positive decimal"),
        (b"IDENTITY 70000\n", "accepts at most 65536"),
        (b"IDENTITY " + b"9" * 40, "expected a header line"),
        (b"IDENTITY 3\nabcd", "unexpected data after"),
    ],
)
def test_framing_errors(data, reason):
    (event,) = _feed(IntakeConnection(), data)
    assert isinstance(event, ProtocolError) and reason in event.reason


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"IDENT", "connection closed before the header line"),
        (b"IDENTITY 10\nabc", "connection closed before the whole identity arrived"),
    ],
)
def test_early_close_is_an_error(data, reason):
    connection = IntakeConnection()
    assert _feed(connection, data) == [NeedData()]
    assert _feed(connection, b"") == [ProtocolError(reason)]


def test_size_limit_is_the_connection_limit():
    (event,) = _feed(IntakeConnection(max_size=10), b"IDENTITY 11\n")
    assert event == ProtocolError("identity is 11 bytes; this server accepts at most 10")


def test_nothing_after_the_verdict():
    connection = IntakeConnection()
    _feed(connection, encode_request(b"abc"))
    connection.receive_data(b"more")
    assert isinstance(connection.next_event(), ProtocolError)


def test_replies_round_trip_and_are_one_line():
    assert format_reply(True, "http://host-a.com/alice.xml") == b"OK http://host-a.com/alice.xml\n"
    assert parse_reply(b"OK http://host-a.com/alice.xml\n") == (True, "http://host-a.com/alice.xml")
    reply = format_reply(False, "bad\nthing\r\x00é")
    assert reply.count(b"\n") == 1 and reply.startswith(b"ERROR bad thing")
    assert parse_reply(reply)[0] is False
    for bad in (b"OK", b"MAYBE x\n", b"x" * 2000 + b"\n"):
        with pytest.raises(ValueError, match=r"no complete reply line|neither 'OK \.\.\.' nor"):
            parse_reply(bad)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_random_chunks_never_crash(chunks):
    connection = IntakeConnection(max_size=100)
    for chunk in [*chunks, b""]:
        connection.receive_data(chunk)
        event = connection.next_event()
        assert isinstance(event, NeedData | IdentityReceived | ProtocolError)
        if not isinstance(event, NeedData):
            break


def test_states_move_as_the_transition_table_says():
    connection = IntakeConnection(max_size=100)
    assert connection.state is State.HEADER
    connection.receive_data(b"IDENTITY 5\n")
    assert connection.next_event() == NeedData()
    assert connection.state is State.BODY  # the header line alone moves it on
    connection.receive_data(b"<x/>!")
    assert connection.next_event() == IdentityReceived(b"<x/>!")
    assert connection.state is State.DONE
    assert connection.next_event() == ProtocolError("connection already finished")
    assert connection.state is State.DONE

    refused = IntakeConnection(max_size=100)
    refused.receive_data(b"HELLO\n")
    assert refused.next_event() == ProtocolError("expected a header line 'IDENTITY <length>'")
    assert refused.state is State.FAILED
