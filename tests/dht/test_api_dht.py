"""The DHT routes against a real node: they parse, call the DHT service and wrap its answer;
the limits they report are the DHT's own (one value-size limit, one max age)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from bitdust.dht.records import MAX_VALUE
from tests.helpers import Node, running_node

SEED = {
    "services/entangled-dht/known-nodes": "genesis",
    "services/entangled-dht/max-age": "3600",
    "services/entangled-dht/default-age": "600",
}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with running_node(tmp_path_factory.mktemp("dht-api"), instance="dht-seed", settings=SEED) as n:
        yield n


@pytest.mark.timeout(60)
def test_a_value_of_the_dht_limit_is_stored_and_one_byte_more_is_refused(node: Node) -> None:
    assert MAX_VALUE == 4096
    before = int(time.time())
    stored = node.ok("POST", "/dht/value/set/v1", {"key": "big", "value": "x" * MAX_VALUE})
    assert stored == {"key": "big", "stored": 0}  # a lone genesis node keeps it itself
    [value] = node.ok("GET", "/dht/value/get/v1?key=big")["values"]
    assert len(value["value"]) == MAX_VALUE and value["scheme"] == "ed25519"
    assert before <= value["created"] <= int(time.time()) + 1  # signed with the node's clock
    status, envelope = node.api(
        "POST", "/dht/value/set/v1", raw=b'{"key": "big2", "value": "' + b"x" * 4097 + b'"}'
    )
    assert status == 400
    assert envelope["errors"] == ["record refused: value too large (4097 bytes > 4096 bytes)"]


@pytest.mark.timeout(60)
def test_an_age_beyond_the_configured_max_age_is_refused_with_the_limit(node: Node) -> None:
    status, envelope = node.api(
        "POST", "/dht/value/set/v1", raw=b'{"key": "k", "value": "v", "expire": 3601}'
    )
    assert status == 400
    assert envelope["errors"] == [
        "record refused: lifetime exceeds max age (age 3601 > 3600 seconds)"
    ]
    status, envelope = node.api(
        "POST", "/dht/value/set/v1", raw=b'{"key": "k", "value": "v", "expire": 0}'
    )
    assert status == 400
    assert envelope["errors"] == ["record refused: lifetime must be at least one second (age 0)"]
    stored = node.ok("POST", "/dht/value/set/v1", {"key": "k", "value": "v", "expire": 3600})
    assert stored["stored"] == 0
    [value] = node.ok("GET", "/dht/value/get/v1?key=k")["values"]
    assert value["expires"] - value["created"] == 3600
