"""The directory of peers' identities: verified, cached, fetched again when a peer is newer."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitdust.identity.document import Identity, format_date
from bitdust.identity.errors import IdentityNotFound
from bitdust.identity.keys import public_key_to_openssh
from bitdust.identity.signing import sign
from bitdust.p2p.directory import Directory, Peer, PeerUnknown
from tests.p2p.peers import BOB, identity_key


def signed(idurl: str, revision: int, contacts: tuple[str, ...] = ("tcp://127.0.0.1:7771",)):
    key = identity_key("bob")
    return sign(
        Identity(
            sources=(idurl,),
            contacts=contacts,
            date=format_date(datetime.date(2026, 11, 25)),
            revision=revision,
            publickey=public_key_to_openssh(key),
        ),
        key,
    )


class Server:
    def __init__(self) -> None:
        self.documents: dict[str, bytes] = {}
        self.fetches = 0

    async def fetch(self, idurl: str) -> bytes:
        self.fetches += 1
        if idurl not in self.documents:
            raise IdentityNotFound(f"{idurl}: no such identity on its server (HTTP 404)")
        return self.documents[idurl]


async def test_a_newer_claimed_revision_fetches_again_and_an_equal_one_does_not():
    server = Server()
    server.documents[BOB] = signed(BOB, 3).to_xml()
    directory = Directory(server.fetch)
    assert (await directory.peer(BOB)).document.revision == 3
    assert (await directory.peer_identity(BOB, 3)).revision == 3
    assert server.fetches == 1
    server.documents[BOB] = signed(BOB, 4).to_xml()
    assert (await directory.peer_identity(BOB, 4)).revision == 4
    assert server.fetches == 2


async def test_a_failed_fetch_is_remembered_so_a_peer_cannot_make_us_fetch_in_a_loop():
    server = Server()
    directory = Directory(server.fetch)
    for _ in range(5):
        assert await directory.peer_identity(BOB, 1) is None
    assert server.fetches == 1
    with pytest.raises(PeerUnknown, match="HTTP 404"):
        await directory.peer(BOB)


async def test_a_document_that_does_not_name_the_idurl_is_refused():
    server = Server()
    server.documents[BOB] = signed("http://host-c.com/bob.xml", 1).to_xml()
    with pytest.raises(PeerUnknown, match="does not name it"):
        await Directory(server.fetch).peer(BOB)


async def test_a_tampered_document_is_refused():
    server = Server()
    server.documents[BOB] = signed(BOB, 1).to_xml().replace(b"7771", b"7772")
    with pytest.raises(PeerUnknown, match=BOB):
        await Directory(server.fetch).peer(BOB)


@given(
    st.lists(
        st.from_regex(r"[a-z][a-z0-9+.-]{0,15}://[!-~]{1,40}", fullmatch=True),
        max_size=4,
        unique=True,
    )
)
def test_tcp_contacts_are_host_and_port_pairs_or_skipped(contacts: list[str]):
    peer = Peer(signed(BOB, 1, tuple(contacts)), None)  # type: ignore[arg-type]
    for host, port, route in peer.tcp_contacts():
        assert host and 0 < port < 65536
        tail = f":{port}/{route}" if route else f":{port}"
        assert any(c.startswith("tcp://") and c.endswith(tail) for c in contacts)
