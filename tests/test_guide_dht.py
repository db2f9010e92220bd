"""Part 2 of the BitDust guide on four loopback hosts, driven by the CLI as the guide does.

host-a.com to host-d.com are 127.0.1.1 to 127.0.1.4 through ``services/network/host-map``; each host
has its own config, state and runtime dirs, the guide's UDP port 14441 and REST port 8180 on its
own address.
"""

from __future__ import annotations

import os
import signal

import pytest

from tests.helpers import HOSTS, GuideHost, alive, cli, wait_for

pytestmark = pytest.mark.slow


@pytest.mark.timeout(180)
def test_guide_part_2_four_seed_nodes(guide_hosts: dict[str, GuideHost]) -> None:
    a, b, c, d = (guide_hosts[name] for name in HOSTS)
    a.configure("genesis")
    a.bitdust("daemon")
    assert a.contacts() == 0

    b.configure("host-a.com:14441")
    b.bitdust("daemon")
    wait_for(lambda: a.contacts() == 1 and b.contacts() == 1, what="a and b to see each other")

    for host in (c, d):
        host.configure("host-a.com:14441")
        host.bitdust("daemon")
    wait_for(lambda: all(h.contacts() == 3 for h in (a, b, c, d)), what="3 contacts everywhere")

    stored = b.data("dht", "set", "guide:greeting", "hello from host-b")
    assert stored["stored"] >= 3
    found = d.data("dht", "get", "guide:greeting")
    assert [v["value"] for v in found["values"]] == ["hello from host-b"]
    nodes = c.data("dht", "find")["nodes"]
    assert {n["host"] for n in nodes} >= {b.address, d.address}

    genesis = a.pid()
    os.kill(genesis, signal.SIGKILL)
    wait_for(lambda: not alive(genesis), 10, "the genesis node to die")
    for host in (b, c, d):
        found = host.data("dht", "get", "guide:greeting")
        assert [v["value"] for v in found["values"]] == ["hello from host-b"], host.name
    missing = cli(c.env, "dht", "get", "guide:nothing-here")
    assert missing.returncode == 1
    assert missing.stderr == "bitdust: no value under key 'guide:nothing-here' in the DHT\n"


@pytest.mark.timeout(120)
def test_a_node_whose_known_nodes_are_down_is_ready_and_keeps_trying(
    guide_hosts: dict[str, GuideHost],
) -> None:
    b = guide_hosts["host-b.com"]
    b.configure("host-a.com:14441")
    b.bitdust("daemon")
    status = b.data("network", "status", "--dht")
    assert status["ready"] is True
    assert status["dht"]["contacts"] == 0
    wait_for(
        lambda: "no known node answered" in b.data("network", "status", "--dht")["dht"]["status"],
        20, "the join status",
    )  # fmt: skip
    a = guide_hosts["host-a.com"]
    a.configure("genesis")
    a.bitdust("daemon")
    wait_for(lambda: b.contacts() == 1, 60, "b to join once a is up")
