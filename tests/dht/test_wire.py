"""The datagram decoder faces the whole Internet: it must reject anything odd with one exception."""

from __future__ import annotations

import contextlib
import dataclasses

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitdust.dht import wire
from bitdust.dht.records import sign_record
from bitdust.dht.schemes import Ed25519Signer
from bitdust.dht.wire import Contact, MalformedMessage, Message, MsgType, decode, encode

ids = st.binary(min_size=20, max_size=20)
ipv4 = st.ip_addresses(v=4).filter(lambda ip: not (ip.is_unspecified or ip.is_multicast))
ipv6 = st.ip_addresses(v=6).filter(lambda ip: not (ip.is_unspecified or ip.is_multicast))
contacts = st.builds(
    Contact, ids, st.one_of(ipv4, ipv6).map(str), st.integers(min_value=1, max_value=65535)
)
SIGNER = Ed25519Signer.generate()
records = st.builds(
    lambda key, value, created, age, owner: sign_record(SIGNER, key, value, created, age, owner),
    ids,
    st.binary(max_size=600),
    st.integers(min_value=0, max_value=2**33),
    st.integers(min_value=1, max_value=86400),
    st.one_of(st.none(), st.text(min_size=1, max_size=60)),
)


def messages() -> st.SearchStrategy[Message]:
    def build(kind, rid, sender, target, cs, rs, ok, reason):  # type: ignore[no-untyped-def]
        if kind in (MsgType.FIND_NODE, MsgType.FIND_VALUE):
            return Message(kind, rid, sender, target=target)
        if kind is MsgType.NODES:
            return Message(kind, rid, sender, contacts=tuple(cs))
        if kind is MsgType.VALUES:
            return Message(kind, rid, sender, records=tuple(rs))
        if kind is MsgType.STORE:
            return Message(kind, rid, sender, records=tuple(rs[:1]))
        if kind is MsgType.STORED:
            return Message(kind, rid, sender, ok=ok, reason=reason)
        if kind is MsgType.ERROR:
            return Message(kind, rid, sender, reason=reason)
        return Message(kind, rid, sender)

    return st.builds(
        build,
        st.sampled_from(MsgType),
        ids,
        ids,
        ids,
        st.lists(contacts, max_size=wire.MAX_CONTACTS),
        st.lists(records, min_size=1, max_size=4),
        st.booleans(),
        st.text(max_size=50),
    )


@given(messages())
def test_every_message_type_roundtrips(msg: Message) -> None:
    assert decode(encode(msg)) == msg


@given(st.binary(max_size=wire.MAX_DATAGRAM + 10))
def test_random_bytes_only_raise_malformed(data: bytes) -> None:
    with contextlib.suppress(MalformedMessage):
        decode(data)


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=30)
    | st.binary(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text(max_size=3) | st.binary(max_size=3), inner, max_size=5)
    ),
    max_leaves=30,
)


@given(msgpack_values)
def test_random_msgpack_structures_only_raise_malformed(obj: object) -> None:
    with contextlib.suppress(MalformedMessage):
        decode(msgpack.packb(obj, use_bin_type=True))


envelope_fields = st.fixed_dictionaries(
    {"v": st.just(1), "t": st.integers(min_value=0, max_value=10), "i": ids, "n": ids},
    optional={
        "k": msgpack_values | ids,
        "c": st.lists(st.lists(msgpack_values | ids, max_size=4), max_size=4),
        "r": msgpack_values,
        "ok": msgpack_values,
        "e": msgpack_values,
        "x": msgpack_values,
    },
)


@settings(max_examples=300)
@given(envelope_fields)
def test_envelope_shaped_garbage_only_raises_malformed(obj: dict[str, object]) -> None:
    try:
        msg = decode(msgpack.packb(obj, use_bin_type=True))
    except MalformedMessage:
        return
    assert decode(encode(msg)) == msg  # whatever is accepted is a well-formed message


def test_oversized_datagram_is_refused_before_parsing() -> None:
    with pytest.raises(MalformedMessage):
        decode(b"\x80" + b"\x00" * wire.MAX_DATAGRAM)


def test_other_protocol_version_is_refused() -> None:
    for version in (wire.VERSION - 1, wire.VERSION + 1):
        data = msgpack.packb({"v": version, "t": 1, "i": b"r" * 20, "n": b"n" * 20})
        with pytest.raises(MalformedMessage, match="version"):
            decode(data)


def test_unknown_field_is_refused() -> None:
    data = msgpack.packb(
        {"v": wire.VERSION, "t": 1, "i": b"r" * 20, "n": b"n" * 20, "k": b"t" * 20}
    )
    with pytest.raises(MalformedMessage):
        decode(data)


@pytest.mark.parametrize(
    "host", ["example.com", "0.0.0.0", "::", "224.0.0.1", "01.2.3.4", "1.2.3.4 ", "::FFFF:1.2.3.4"]
)
def test_contacts_must_carry_canonical_unicast_ip_literals(host: str) -> None:
    data = msgpack.packb(
        {"v": wire.VERSION, "t": 4, "i": b"r" * 20, "n": b"n" * 20, "c": [[b"c" * 20, host, 1]]}
    )
    with pytest.raises(MalformedMessage):
        decode(data)


@pytest.mark.parametrize("port", [0, 65536, -1, "80", 1.5, True])
def test_contact_port_is_validated(port: object) -> None:
    data = msgpack.packb(
        {
            "v": wire.VERSION,
            "t": 4,
            "i": b"r" * 20,
            "n": b"n" * 20,
            "c": [[b"c" * 20, "1.2.3.4", port]],
        }
    )
    with pytest.raises(MalformedMessage):
        decode(data)


def test_too_many_contacts_are_refused() -> None:
    c = [[bytes([i]) * 20, "1.2.3.4", 1000 + i] for i in range(wire.MAX_CONTACTS + 1)]
    data = msgpack.packb({"v": wire.VERSION, "t": 4, "i": b"r" * 20, "n": b"n" * 20, "c": c})
    with pytest.raises(MalformedMessage):
        decode(data)


def test_encode_refuses_to_build_an_oversized_datagram() -> None:
    big = sign_record(SIGNER, b"k" * 20, b"x" * 4000, 0, 10)
    with pytest.raises(ValueError, match="exceeds"):
        encode(Message(MsgType.VALUES, b"r" * 20, b"n" * 20, records=(big, big, big)))


def test_tokens_padding_and_cut_replies_round_trip() -> None:
    ask = Message(MsgType.FIND_VALUE, b"r" * 20, b"n" * 20, target=b"t" * 20, padding=100)
    assert decode(encode(ask)) == ask and len(encode(ask)) > 100
    cut = Message(MsgType.VALUES, b"r" * 20, b"n" * 20, token=b"y" * 8, truncated=True)
    assert decode(encode(cut)) == cut
    with pytest.raises(MalformedMessage, match="not cut"):
        decode(encode(dataclasses.replace(cut, truncated=False)))
    with pytest.raises(MalformedMessage, match="token"):
        decode(encode(dataclasses.replace(cut, token=b"short")))
