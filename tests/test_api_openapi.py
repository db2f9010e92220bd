"""The API describes itself (issue 16 item 12): /openapi.json is built from the routes'
declarations, so every registered route and declared parameter appears, with the envelope and
the secret scheme."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bitdust.api.metrics import Exporter
from bitdust.api.routes import all_routes
from bitdust.api.server import build_app
from tests.helpers import Node, running_node

SEED = {"services/entangled-dht/known-nodes": "genesis"}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    base = tmp_path_factory.mktemp("openapi")
    with running_node(base, instance="dht-seed", settings=SEED) as node:
        yield node


def describe(node: Node) -> dict[str, Any]:
    status, document = node.api("GET", "/openapi.json")
    assert status == 200
    return document


def test_every_registered_route_is_described(node: Node) -> None:
    document = describe(node)
    app = build_app(all_routes(), lambda: "secret", set(), None, Exporter(list))  # type: ignore[arg-type]
    registered = {(r.method.lower(), r.resource.canonical) for r in app.router.routes()}
    described = {(m, path) for path, item in document["paths"].items() for m in item}
    assert registered == described
    assert ("post", "/v1/config/set/{key}") in described
    assert ("get", "/dht/value/get/v1") in described
    assert ("get", "/metrics") in described


def test_declared_parameters_are_the_schema(node: Node) -> None:
    paths = describe(node)["paths"]
    body = paths["/v1/dht/value/set"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["required"] == ["key", "value"]
    assert body["schema"]["properties"]["expire"] == {"type": "integer", "format": "int64"}
    assert body["schema"]["additionalProperties"] is False
    query = {p["name"]: p for p in paths["/v1/network/status"]["get"]["parameters"]}
    assert query["dht"] == {
        "name": "dht", "in": "query", "required": False,
        "schema": {"type": "boolean", "default": False},
    }  # fmt: skip
    key = paths["/config/get/{key}/v1"]["get"]["parameters"][0]
    assert (key["name"], key["in"], key["required"]) == ("key", "path", True)
    value = paths["/v1/config/set/{key}"]["post"]["requestBody"]["content"]["application/json"]
    assert value["schema"]["properties"]["value"]["type"] == ["string", "integer", "boolean",
                                                               "number"]  # fmt: skip


def test_the_envelope_and_the_secret_scheme(node: Node) -> None:
    document = describe(node)
    assert document["openapi"].startswith("3.1")
    assert document["components"]["securitySchemes"]["api_secret"] == {
        "type": "apiKey", "in": "header", "name": "api_secret",
    }  # fmt: skip
    assert document["security"] == [{"api_secret": []}, {"bearer": []}]
    assert document["components"]["schemas"]["Error"]["properties"]["status"] == {"const": "ERROR"}
    ok = document["paths"]["/v1/process/info"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Ok"}


def test_the_document_needs_the_secret(node: Node) -> None:
    status, envelope = node.api("GET", "/openapi.json", secret=False)
    assert (status, envelope) == (401, {"status": "ERROR", "errors": ["access denied"]})
