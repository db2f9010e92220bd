"""Metrics (issue 16 item 7): the node's figures are read from the running services at scrape
time by one rule (``info()["counters"]`` are counters, ``metric_gauges`` name the gauges), and
served at ``GET /metrics`` behind the secret and, when set, on a listener of its own."""

from __future__ import annotations

import json
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
from tests.helpers import free_port, running_node

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
