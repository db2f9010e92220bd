"""A router as a real process (run under the shared test lock): the guide's check that
`bitdust states | grep proxy` prints the three lines, and `network/status?proxy=1`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import GuideHost, cli, running_node

ROUTER = {
    "services/network/listen-host": "127.0.0.1",
    "services/entangled-dht/known-nodes": "genesis",
}


@pytest.mark.timeout(60)
def test_router_states_and_status(
    tmp_path: Path,
) -> None:
    with running_node(tmp_path, instance="proxy-router", settings=ROUTER) as node:
        printed = cli(node.env, "--instance", "proxy-router", "states", check=True).stdout
        proxy_lines = [line.split()[1] for line in printed.splitlines() if "proxy" in line]
        assert proxy_lines == [
            "service_proxy_server(ON)",
            "service_proxy_transport(OFF)",
            "proxy_router(LISTEN)",
        ]  # each after its index, as BitDust prints it; OFF lines end with their reason
        status = node.ok("GET", "/network/status/v1?proxy=1")["proxy"]
        assert (status["role"], status["state"], status["routes"]) == ("router", "LISTEN", 0)
        assert status["routes_limit"] == 20 and status["bytes_relayed"] == 0


@pytest.mark.timeout(120)
def test_guide_part_5_on_a_core_host(guide_hosts: dict[str, GuideHost]) -> None:
    """The guide's commands on a core host (default instance), then its check."""
    a = guide_hosts["host-a.com"]
    a.configure("genesis")
    a.bitdust("daemon")
    a.bitdust("set", "services/proxy-transport/enabled", "false")
    a.bitdust("set", "services/proxy-server/enabled", "true")
    a.bitdust("restart")
    printed = [line for line in a.bitdust("states").splitlines() if "proxy" in line]
    assert [line.split()[1] for line in printed] == [
        "service_proxy_server(ON)",
        "service_proxy_transport(OFF)",
        "proxy_router(LISTEN)",
    ]
    assert a.data("network", "status", "--proxy")["proxy"]["state"] == "LISTEN"
