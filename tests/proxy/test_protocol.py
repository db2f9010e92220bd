"""What a router and a routed node tell each other: every decoder refuses anything but its own
messages with BadMessage (hypothesis), and what is encoded decodes to itself."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitdust.p2p.directory import Contact
from bitdust.proxy.protocol import BadMessage, Registration, decode_token, encode_token

JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


@given(st.one_of(st.binary(max_size=2000), JSONISH.map(msgpack.packb)))
def test_decoders_take_only_their_messages(data: bytes):
    for decode in (Registration.decode, decode_token):
        with contextlib.suppress(BadMessage):  # anything else escaping fails the test
            decode(data)


def test_a_registration_names_the_router_and_the_route():
    registration = Registration("tcp://127.0.1.3:7771/0123456789abcdef", 90.0)
    assert Registration.decode(registration.encode()) == registration
    assert registration.router() == Contact("127.0.1.3", 7771, "0123456789abcdef")
    assert decode_token(encode_token("f" * 32)) == "f" * 32


@pytest.mark.parametrize(
    "contact", ["tcp://127.0.1.3:7771", "udp://h:1/r", "tcp://:7771/r", "tcp://h:port/r"]
)
def test_a_contact_that_is_not_a_routed_one_is_refused(contact: str):
    with pytest.raises(BadMessage, match="not a tcp://host:port/route contact"):
        Registration(contact, 90.0).router()


def test_oversized_messages_are_refused_before_parsing():
    with pytest.raises(BadMessage, match="at most 1024"):
        decode_token(msgpack.packb({"token": "x" * 2000}))


@pytest.mark.parametrize("lease", [0, -5, float("nan"), float("inf"), True, 10**9])
def test_a_lease_outside_its_bounds_is_refused(lease: object):
    data = msgpack.packb({"contact": "tcp://h:1/r", "lease": lease})
    with pytest.raises(BadMessage, match="lease"):
        Registration.decode(data)
