"""The typed context API handlers get: the node, the config and the running services; and the
route modules, which load no service's code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bitdust.api.server import Call
from bitdust.config import Config, Paths, load_config
from bitdust.node.node import Node
from bitdust.node.service import Service, ServiceState, ServiceUnavailable


class Clock(Service):
    """A stand-in service."""


class Process:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.node = Node(config)

    def info(self) -> dict[str, Any]:
        return {}

    def request_stop(self) -> None:
        pass

    async def restart_services(self) -> None:
        pass

    def set_option(self, key: str, raw: str) -> tuple[str, list[str], list[str]]:
        return raw, [], []


@pytest.fixture
def process(tmp_path: Path) -> Process:
    env = {"BITDUST_CONFIG_DIR": str(tmp_path / "etc"), "BITDUST_STATE_DIR": str(tmp_path)}
    return Process(load_config(Paths.for_instance("dht-seed", env), env={}))


def test_call_gives_a_running_service(process: Process) -> None:
    slot = process.node.slots["entangled-dht"]
    slot.state, slot.service = ServiceState.ON, Clock(process.node)
    call = Call(process, None, {})  # type: ignore[arg-type]
    assert call.service("entangled-dht") is slot.service
    assert call.node is process.node and call.config is process.config


def test_a_service_that_is_not_running_says_how_to_enable_it(process: Process) -> None:
    call = Call(process, None, {})  # type: ignore[arg-type]
    with pytest.raises(
        ServiceUnavailable, match=r"supplier is OFF.*services/supplier/enabled true"
    ):
        call.service("supplier")


#: Each service's own code, which a node loads only when it runs that service.
SERVICES_CODE = (
    "bitdust.storage.customer",
    "bitdust.storage.backup",
    "bitdust.storage.catalogue",
    "bitdust.storage.codec",
    "bitdust.storage.supplier",
    "bitdust.p2p.service",
    "bitdust.p2p.transport",
    "bitdust.identity.propagate_service",
    "bitdust.dht.service",
    "noise",
    "zfec",
)


def test_the_api_routes_load_no_services_code() -> None:
    """A dht-seed serves every route (a disabled service's answer 409) without the customer's
    pipeline or the p2p transport in its memory."""
    code = "import sys, bitdust.api.routes; print(' '.join(sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert [module for module in SERVICES_CODE if module in loaded] == []
