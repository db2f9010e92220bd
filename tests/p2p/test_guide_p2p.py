"""Two real nodes (host-a.com and host-b.com, each an identity server too, as in the guide) open
a p2p session by IDURL through the contact each published. Run under the shared test lock."""

from __future__ import annotations

import pytest

from tests.helpers import GuideHost
from tests.test_guide_identity import start_core


@pytest.mark.timeout(240)
def test_two_nodes_open_a_session_by_idurl(guide_hosts: dict[str, GuideHost]) -> None:
    a, b = start_core(guide_hosts, "host-a.com:8084:6661,host-b.com:8084:6661")
    alice = a.api("POST", "/identity/create/v1", {"username": "alice", "key_size": 1024})[1]
    bob = b.api("POST", "/identity/create/v1", {"username": "bob", "key_size": 1024})[1]
    alice_idurl, bob_idurl = alice["result"]["idurl"], bob["result"]["idurl"]
    assert bob["result"]["contacts"] == ["tcp://127.0.1.2:7771"]

    status, envelope = a.api("POST", "/user/ping/v1", {"id": bob_idurl})
    assert status == 200, envelope
    assert envelope["result"]["idurl"] == bob_idurl
    assert 0 < envelope["result"]["rtt_ms"] < 5000
    # and back, over the session alice opened (no second connection)
    status, envelope = b.api("POST", "/user/ping/v1", {"id": alice_idurl})
    assert status == 200, envelope

    [outgoing] = a.api("GET", "/network/connected/v1")[1]["result"]
    assert (outgoing["idurl"], outgoing["direction"], outgoing["state"]) == (
        bob_idurl,
        "outgoing",
        "open",
    )
    assert outgoing["bytes_out"] > 0 and outgoing["bytes_in"] > 0
    [incoming] = b.api("GET", "/network/connected/v1")[1]["result"]
    assert (incoming["idurl"], incoming["direction"]) == (alice_idurl, "incoming")

    # a peer nobody serves: one clear error, the session with bob untouched
    status, envelope = a.api("POST", "/user/ping/v1", {"id": "http://host-a.com:8084/nobody.xml"})
    assert status == 409
    assert "nobody.xml" in envelope["errors"][0] and "404" in envelope["errors"][0]
    assert len(a.api("GET", "/network/connected/v1")[1]["result"]) == 1
