"""Metrics (issue 16 item 7): the node's figures are read from the running services at scrape
time by one rule (``info()["counters"]`` are counters, ``metric_gauges`` name the gauges), and
served at ``GET /metrics`` behind the secret and, when set, on a listener of its own."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from bitdust.api.metrics import Exporter
from bitdust.config import Paths, load_config
from bitdust.metrics import Kind, node_families, service_families
from bitdust.node.checks import check_config
from bitdust.node.node import Node
from bitdust.node.service import Service, ServiceState
from tests.helpers import GuideHost, running_node
from tests.ports import free_port
from tests.test_guide_identity import identity_server_settings

SEED = {"services/entangled-dht/known-nodes": "genesis"}


class Counting(Service):
    """A service with figures, as the DHT and the identity server report theirs."""

    metric_gauges = ("contacts", "missing")

    def info(self) -> dict[str, Any]:
        return {
            "contacts": 3,
            "web_port": 8084,  # not named in metric_gauges: not a metric
            "counters": {"datagrams_in": 5, "refused": {"too_large": 2, "bad_signature": 1}},
        }


@pytest.fixture
def node(tmp_path: Path) -> Node:
    env = {"BITDUST_CONFIG_DIR": str(tmp_path / "etc"), "BITDUST_STATE_DIR": str(tmp_path)}
    node = Node(load_config(Paths.for_instance("dht-seed", env), env={}))
    slot = node.slots["entangled-dht"]
    slot.state, slot.service = ServiceState.ON, Counting(node)
    return node


def test_a_service_s_figures_follow_the_rule(node: Node) -> None:
    families = {f.name: f for f in service_families("entangled-dht", Counting(node))}
    assert set(families) == {
        "bitdust_entangled_dht_contacts",
        "bitdust_entangled_dht_datagrams_in",
        "bitdust_entangled_dht_refused",
    }
    contacts = families["bitdust_entangled_dht_contacts"]
    assert (contacts.kind, contacts.samples) == (Kind.GAUGE, (((), 3.0),))
    refused = families["bitdust_entangled_dht_refused"]
    assert refused.kind is Kind.COUNTER
    assert refused.samples == (
        ((("reason", "bad_signature"),), 1.0),
        ((("reason", "too_large"),), 2.0),
    )


def test_the_node_adds_its_state_and_only_running_services(node: Node) -> None:
    families = {f.name: f for f in node_families(node, "dht-seed", "1.2.3")}
    info = families["bitdust_info"].samples
    assert info == (((("instance", "dht-seed"), ("role", "dht-seed"), ("version", "1.2.3")), 1.0),)
    on = dict(families["bitdust_service_on"].samples)
    assert on[(("service", "entangled-dht"),)] == 1.0
    assert on[(("service", "identity-server"),)] == 0.0
    assert families["bitdust_ready"].samples == (((), 0.0),)
    assert "bitdust_entangled_dht_contacts" in families
    node.slots["entangled-dht"].state = ServiceState.STOPPING
    assert "bitdust_entangled_dht_contacts" not in {
        f.name for f in node_families(node, "dht-seed", "1.2.3")
    }


def test_the_exposition_is_prometheus_text(node: Node) -> None:
    text, content_type = Exporter(lambda: node_families(node, "dht-seed", "1")).render()
    lines = text.decode().splitlines()
    assert content_type.startswith("text/plain; version=")
    assert "# TYPE bitdust_entangled_dht_refused_total counter" in lines
    assert 'bitdust_entangled_dht_refused_total{reason="too_large"} 2.0' in lines
    assert "bitdust_entangled_dht_contacts 3.0" in lines
    assert any(line.startswith("process_resident_memory_bytes ") for line in lines)


def test_the_metrics_port_is_checked_like_every_listener(tmp_path: Path) -> None:
    env = {"BITDUST_CONFIG_DIR": str(tmp_path / "etc"), "BITDUST_STATE_DIR": str(tmp_path)}
    flags = {"interface/metrics/port": "8181"}
    config = load_config(Paths.for_instance("dht-seed", env), env={}, flags=flags)
    assert check_config(config) == [
        "interface/api/rest-http-port and interface/metrics/port both use tcp port 8181"
    ]


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def test_metrics_on_the_api_need_the_secret_and_the_own_listener_serves_only_them(
    tmp_path: Path,
) -> None:
    port = free_port()
    settings = {**SEED, "interface/metrics/port": port}
    with running_node(tmp_path, instance="dht-seed", settings=settings) as node:
        status, envelope = node.api("GET", "/metrics", secret=False)
        assert (status, envelope["errors"]) == (401, ["access denied"])
        own = f"http://127.0.0.1:{port}"
        status, _, body = get(own + "/process/info/v1")
        assert (status, json.loads(body)["errors"]) == (404, ["only GET /metrics is served here"])
        status, _, body = get(own + "/metrics", {"Origin": "http://evil.example"})
        assert status == 403
        status, _, body = get(own + "/metrics", {"Host": f"rebound.example:{port}"})
        assert (status, json.loads(body)["errors"]) == (
            403, [f"access denied: Host 'rebound.example:{port}' is not local"]
        )  # fmt: skip
        listed = node.ok("GET", "/v1/process/info")
        assert listed["role"] == "dht-seed"
        node.ok("GET", "/v1/dht/value/get?key=metrics:probe")  # a lookup to count
        with_secret = get(f"http://127.0.0.1:{node.api_port}/metrics", {"api_secret": node.secret})
        plain = get(own + "/metrics")
        for status, content_type, body in (with_secret, plain):
            assert status == 200 and content_type.startswith("text/plain")
            lines = body.decode().splitlines()
            assert "bitdust_ready 1.0" in lines
            assert 'bitdust_service_on{service="entangled-dht"} 1.0' in lines
            assert "bitdust_entangled_dht_contacts 0.0" in lines
            lookups = [
                line for line in lines if line.startswith("bitdust_entangled_dht_lookups_total ")
            ]
            assert len(lookups) == 1 and float(lookups[0].split()[1]) >= 1  # the get's
            assert any(
                line.startswith("bitdust_entangled_dht_datagrams_out_total") for line in lines
            )


def test_the_identity_server_reports_what_it_stores(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    base = tmp_path_factory.mktemp("ids")  # short: the notify socket's path is bounded
    settings = {
        **SEED,
        "services/identity-server/host": "127.0.0.1",
        "services/identity-server/web-port": free_port(),
        "services/identity-server/tcp-port": free_port(),
    }
    with running_node(base, instance="identity-server", settings=settings) as node:
        status, _, body = get(
            f"http://127.0.0.1:{node.api_port}/metrics", {"api_secret": node.secret}
        )
        lines = body.decode().splitlines()
        assert status == 200
        assert "bitdust_identity_server_identities 0.0" in lines
        assert "bitdust_identity_server_stored_bytes 0.0" in lines


def scrape(host: GuideHost) -> dict[str, float]:
    """A guide host's ``/metrics`` as {series: value}, read on the API with its secret."""
    port = host.data("get", "interface/api/rest-http-port")["value"]
    secret = (host.runtime / "api.secret").read_text().strip()
    status, _, body = get(f"http://{host.address}:{port}/metrics", {"api_secret": secret})
    assert status == 200, body
    samples = [line.rsplit(" ", 1) for line in body.decode().splitlines() if line[:1] != "#"]
    return {series: float(value) for series, value in samples}


@pytest.mark.timeout(120)
def test_p2p_reports_sessions_and_bytes_and_the_router_and_supplier_their_figures(
    guide_hosts: dict[str, GuideHost],
) -> None:
    """host-a routes (proxy-server), host-b is a supplier; alice on a pings bob on b, and a
    stranger sends b bytes no handshake accepts: each side counts what it saw."""
    a, b = guide_hosts["host-a.com"], guide_hosts["host-b.com"]
    servers = "host-a.com:8084:6661,host-b.com:8084:6661"
    a.configure(
        "genesis",
        **identity_server_settings("host-a.com", servers),
        **{"services/proxy-server/enabled": "true"},
    )
    b.configure(
        "host-a.com:14441",
        **identity_server_settings("host-b.com", servers),
        **{"services/supplier/enabled": "true", "services/supplier/donated-space": "10 MB"},
    )
    a.bitdust("daemon")
    b.bitdust("daemon")
    a.api("POST", "/identity/create/v1", {"username": "alice", "key_size": 1024})
    bob = b.api("POST", "/identity/create/v1", {"username": "bob", "key_size": 1024})[1]
    status, envelope = a.api("POST", "/user/ping/v1", {"id": bob["result"]["idurl"]})
    assert status == 200, envelope
    with socket.create_connection((b.address, 7771), timeout=10) as stranger:
        stranger.sendall(b"\x00" * 64)
        while stranger.recv(4096):  # b closes the session, with a CLOSE record or without
            pass

    [session] = a.data("network", "connected")  # the CLI's rows: the bytes on the wire
    on_a = scrape(a)
    assert on_a["bitdust_p2p_sessions"] == 1.0
    assert on_a["bitdust_p2p_streams"] == 0.0
    assert on_a["bitdust_p2p_sessions_opened_total"] == 1.0
    assert on_a["bitdust_p2p_sessions_failed_total"] == 0.0
    assert on_a["bitdust_p2p_bytes_sent_total"] == session["bytes_out"] > 0
    assert on_a["bitdust_p2p_bytes_received_total"] == session["bytes_in"] > 0
    assert on_a['bitdust_service_on{service="proxy-server"}'] == 1.0
    assert on_a["bitdust_proxy_server_routes"] == 0.0
    assert on_a["bitdust_proxy_server_bytes_relayed_total"] == 0.0

    on_b = scrape(b)
    assert on_b["bitdust_p2p_sessions"] == 1.0  # alice's; the stranger's is gone
    assert on_b["bitdust_p2p_sessions_opened_total"] == 1.0
    assert on_b["bitdust_p2p_sessions_failed_total"] == 1.0
    assert on_b["bitdust_p2p_bytes_received_total"] >= session["bytes_out"] + 64
    assert on_b["bitdust_supplier_donated"] == 10 * 1024**2  # binary, as BitDust counts
    assert on_b["bitdust_supplier_customers"] == on_b["bitdust_supplier_fragments"] == 0.0
    assert on_b["bitdust_supplier_hired_total"] == 0.0
