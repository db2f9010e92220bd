"""The relay preamble: the one decoder the router runs on bytes from anyone, and the rule that
tells it from a direct p2p session on the shared port."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitdust.p2p import preamble
from bitdust.p2p.handshake import LocalPeer
from bitdust.p2p.preamble import MAGIC, BadPreamble, Kind, Preamble
from bitdust.p2p.session import Session
from tests.p2p.peers import ALICE, BOB, identity_key


@given(st.sampled_from(Kind), st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True), st.binary())
def test_a_preamble_decodes_to_itself_whatever_follows(kind: Kind, ident: str, rest: bytes):
    encoded = Preamble(kind, ident).encode()
    assert preamble.decode(encoded + rest) == (Preamble(kind, ident), len(encoded))
    for cut in range(len(encoded)):
        assert preamble.decode(encoded[:cut]) is None


@given(st.binary(max_size=200))
def test_any_bytes_decode_to_a_preamble_more_needed_or_bad_preamble(data: bytes):
    try:
        found = preamble.decode(data)
    except BadPreamble:
        return
    if found is not None:
        assert found[0].encode() == data[: found[1]]


@given(st.binary(min_size=1, max_size=80))
def test_ids_outside_the_alphabet_are_refused(junk: bytes):
    data = MAGIC + bytes((Kind.CONNECT, len(junk))) + junk
    if all(c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-" for c in junk):
        return
    with pytest.raises(BadPreamble):
        preamble.decode(data)


def test_a_direct_sessions_first_bytes_are_never_taken_for_a_preamble():
    local = LocalPeer.from_identity_key(identity_key("alice"), ALICE, 1)
    session = Session(initiator=True, local=local, now=0.0, expected_idurl=BOB)
    first = session.data_to_send()
    assert first and not preamble.could_be_relayed(first)
    assert not preamble.could_be_relayed(first[:1])
