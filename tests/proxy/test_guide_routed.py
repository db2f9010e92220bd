"""Real processes on the guide's hosts (run under the shared test lock): a routed node is
reached through a router, and moves to a second router when the first is killed (SIGKILL).

host-a.com and host-b.com are the identity servers (host-a.com also the direct peer, alice),
host-c.com the first router, host-b.com the second one, host-d.com the routed node (dave).
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from bitdust.proxy.relay import route_id
from tests.helpers import GuideHost, wait_for
from tests.test_guide_identity import fetch, start_core

SERVERS = "host-a.com:8084:6661,host-b.com:8084:6661"
NODE = {"services/identity-propagate/known-servers": SERVERS}
ROUTER = {**NODE, "services/proxy-server/enabled": "true"}


def create(host: GuideHost, name: str) -> str:
    status, envelope = host.api("POST", "/identity/create/v1", {"username": name, "key_size": 1024})
    assert status == 200, envelope
    return str(envelope["result"]["idurl"])


def proxy(host: GuideHost) -> dict[str, Any]:
    return host.api("GET", "/network/status/v1?proxy=1")[1]["result"]["proxy"]


def served_contacts(idurl: str) -> bytes:
    _, document, _ = fetch(idurl.replace("host-a.com", "127.0.1.1"))
    return document


@pytest.mark.timeout(240)
def test_routed_node_reached_through_router_and_moved(guide_hosts: dict[str, GuideHost]) -> None:
    a, b = start_core(guide_hosts, SERVERS)
    c, d = guide_hosts["host-c.com"], guide_hosts["host-d.com"]
    c.configure("host-a.com:14441", **ROUTER)
    c.bitdust("daemon")
    b.bitdust("set", "services/proxy-server/enabled", "true")
    b.bitdust("restart")
    create(a, "alice")  # the direct peer needs an identity to open sessions
    router1 = create(c, "router1")
    router2 = create(b, "router2")

    d.configure(
        "host-a.com:14441",
        **NODE,
        **{"services/nodes-lookup/enabled": "true", "services/proxy-transport/enabled": "true",
           "services/proxy-transport/preferred-routers": f"{router1},{router2}"},
    )  # fmt: skip
    d.bitdust("daemon")
    dave = create(d, "dave")
    wait_for(lambda: proxy(d)["router"] == router1, 60, "dave routed through host-c.com")
    through_c = f"tcp://127.0.1.3:7771/{route_id(dave)}".encode()
    wait_for(lambda: through_c in served_contacts(dave), 30, "dave's router contact published")
    assert b"tcp://127.0.1.4:7771<" not in served_contacts(dave)  # its own is withdrawn

    status, envelope = a.api("POST", "/user/ping/v1", {"id": dave})
    assert status == 200, envelope
    [session] = [s for s in a.api("GET", "/network/connected/v1")[1]["result"]
                 if s["idurl"] == dave]  # fmt: skip
    assert session["route"] == "routed"
    assert proxy(c)["routed"][0]["idurl"] == dave

    os.kill(c.pid(), signal.SIGKILL)
    wait_for(lambda: proxy(d)["router"] == router2, 60, "dave moved to host-b.com")
    through_b = f"tcp://127.0.1.2:7771/{route_id(dave)}".encode()
    wait_for(lambda: through_b in served_contacts(dave), 30, "dave's new contact published")
    status, envelope = a.api("POST", "/user/ping/v1", {"id": dave, "timeout": 30})
    assert status == 200, envelope
    assert proxy(d)["router_changes"] == 2


@pytest.mark.timeout(240)
def test_routed_node_finds_a_router_through_nodes_lookup(
    guide_hosts: dict[str, GuideHost],
) -> None:
    start_core(guide_hosts, SERVERS)
    c, d = guide_hosts["host-c.com"], guide_hosts["host-d.com"]
    c.configure("host-a.com:14441", **ROUTER)
    c.bitdust("daemon")
    router = create(c, "router1")
    c.bitdust("restart")  # advertises at once now that it has an identity
    d.configure(
        "host-a.com:14441",
        **NODE,
        **{"services/nodes-lookup/enabled": "true", "services/proxy-transport/enabled": "true"},
    )
    d.bitdust("daemon")
    create(d, "dave")
    wait_for(lambda: proxy(d)["router"] == router, 120, "dave finds host-c.com in the DHT")
    assert proxy(c)["routed"][0]["route"] == route_id(proxy(c)["routed"][0]["idurl"])
