"""``network/connected`` against a real node process (run under the shared test lock)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.helpers import cli, running_node

ONLY_P2P = {
    "services/network/listen-host": "127.0.0.1",
    "services/entangled-dht/enabled": "false",
    "services/nodes-lookup/enabled": "false",
    "services/proxy-transport/enabled": "false",
    "services/customer/enabled": "false",
}


@pytest.mark.timeout(60)
def test_network_connected_lists_sessions_and_the_service_its_contact(tmp_path: Path) -> None:
    with running_node(tmp_path, settings=ONLY_P2P) as node:
        assert node.ok("GET", "/network/connected/v1") == []
        info = node.ok("GET", "/service/info/p2p/v1")
        assert info["state"] == "ON"
        port = info["tcp_port"]
        assert info["contact"] == f"tcp://127.0.0.1:{port}"
        # no identity yet: a peer is turned away, and the node says so
        with socket.create_connection(("127.0.0.1", port), timeout=5) as peer:
            assert peer.recv(1) == b""
        assert node.ok("GET", "/network/connected/v1") == []
        # and through the CLI, for a person and with --json
        assert cli(node.env, "network", "connected", check=True).stdout == "no sessions\n"
        listed = cli(node.env, "--json", "network", "connected", check=True).stdout
        assert json.loads(listed) == []
        refused = cli(node.env, "network", "connected", "http://host-a.com:8084/alice.xml")
        assert refused.returncode == 2 and "network connected takes no IDURL" in refused.stderr
        states = {row["name"]: row["state"] for row in node.ok("GET", "/state/list/v1")}
        assert states["service_p2p"] == "ON"


@pytest.mark.timeout(60)
def test_speedtest_refuses_bad_fields_and_says_why(tmp_path: Path) -> None:
    peer = "http://host-a.com:8084/alice.xml"
    refusals = [
        ({"idurl": peer, "bytes": 2**30 + 1}, 400, "field 'bytes': expected 1 to 1073741824"),
        ({"idurl": peer, "direction": "sideways"}, 400, "field 'direction': expected up or down"),
        ({"idurl": peer, "marker": "M" * 65}, 400, "field 'marker': at most 64 bytes"),
        ({"idurl": "not an idurl"}, 400, "field 'idurl'"),
        (
            {"idurl": peer},
            409,
            "this node has no identity yet: create one",
        ),  # no identity yet: nothing to open a session with
    ]
    with running_node(tmp_path, settings=ONLY_P2P) as node:
        for body, status, reason in refusals:
            got, envelope = node.api("POST", "/network/speedtest/v1", body)
            assert (got, reason in str(envelope.get("errors"))) == (status, True), envelope
