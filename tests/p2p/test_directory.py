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

BOB_ON_HOST_D = "http://host-d.com/bob.xml"


def signed(
    idurl: str,
    revision: int,
    contacts: tuple[str, ...] = ("tcp://127.0.0.1:7771",),
    more_sources: tuple[str, ...] = (),
):
    key = identity_key("bob")
    return sign(
        Identity(
            sources=(idurl, *more_sources),
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


async def test_a_peer_whose_first_identity_server_is_down_is_found_on_its_second():
    """The guide runs two identity servers so that one can fail: once this node has seen a
    peer's document, a fetch that finds the first source down tries the others it names."""
    server = Server()
    server.documents[BOB] = server.documents[BOB_ON_HOST_D] = signed(
        BOB, 3, more_sources=(BOB_ON_HOST_D,)
    ).to_xml()
    directory = Directory(server.fetch)
    assert (await directory.peer(BOB)).document.revision == 3
    del server.documents[BOB]  # host-b.com's identity server is down
    server.documents[BOB_ON_HOST_D] = signed(BOB, 4, more_sources=(BOB_ON_HOST_D,)).to_xml()
    directory.forget(BOB)  # its contacts failed: fetch again
    peer = await directory.peer(BOB)
    assert peer.document.revision == 4 and peer.idurl == BOB
    assert (await directory.peer_identity(BOB, 4)).revision == 4
    assert server.fetches == 3  # host-b.com, refused; host-d.com; then cached


async def test_a_document_speaks_only_for_the_idurl_it_was_fetched_for():
    """A document may name someone else's IDURL among its sources: that IDURL is still looked up
    at its own address, and its fallbacks come only from its own document."""
    server = Server()
    impostor = "http://host-c.com/bob.xml"
    server.documents[impostor] = signed(BOB, 9, more_sources=(impostor,)).to_xml()
    server.documents[BOB] = signed(BOB, 3).to_xml()
    directory = Directory(server.fetch)
    assert (await directory.peer(impostor)).document.revision == 9
    assert (await directory.peer(BOB)).document.revision == 3
    assert server.fetches == 2
    del server.documents[BOB]
    directory.forget(BOB)
    with pytest.raises(PeerUnknown, match="HTTP 404"):
        await directory.peer(BOB)
    assert server.fetches == 3  # bob.xml's own address only, never the impostor's


async def test_every_source_failing_says_why_for_each_and_is_remembered():
    server = Server()
    server.documents[BOB] = signed(BOB, 3, more_sources=(BOB_ON_HOST_D,)).to_xml()
    directory = Directory(server.fetch)
    await directory.peer(BOB)
    server.documents[BOB] = signed(BOB, 4).to_xml().replace(b"7771", b"7772")  # tampered
    server.documents[BOB_ON_HOST_D] = signed(BOB_ON_HOST_D, 4).to_xml()  # names only itself
    directory.forget(BOB)
    with pytest.raises(PeerUnknown) as refused:
        await directory.peer(BOB)
    assert str(refused.value).startswith(f"{BOB}: ")
    assert f"{BOB_ON_HOST_D}: the identity found there does not name {BOB}" in str(refused.value)
    fetches = server.fetches
    assert await directory.peer_identity(BOB, 4) is None
    assert server.fetches == fetches


async def test_a_document_that_does_not_name_the_idurl_is_refused():
    server = Server()
    server.documents[BOB] = signed("http://host-c.com/bob.xml", 1).to_xml()
    with pytest.raises(PeerUnknown, match=f"does not name {BOB}"):
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
