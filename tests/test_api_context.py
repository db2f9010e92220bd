"""The typed context API handlers get: the node, the config and services by their class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bitdust.api.server import Call
from bitdust.config import Config, Paths, load_config
from bitdust.node.node import Node
from bitdust.node.service import Service, ServiceState, ServiceUnavailable


class Clock(Service):
    """A stand-in service."""


class Other(Service):
    pass


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


def test_call_gives_a_running_service_as_its_class(process: Process) -> None:
    slot = process.node.slots["entangled-dht"]
    slot.state, slot.service = ServiceState.ON, Clock(process.node)
    call = Call(process, None, {})  # type: ignore[arg-type]
    assert call.service("entangled-dht", Clock) is slot.service
    assert call.node is process.node and call.config is process.config
    with pytest.raises(TypeError, match="entangled-dht is Clock, not Other"):
        call.service("entangled-dht", Other)


def test_a_service_that_is_not_running_says_how_to_enable_it(process: Process) -> None:
    call = Call(process, None, {})  # type: ignore[arg-type]
    with pytest.raises(
        ServiceUnavailable, match=r"supplier is OFF.*services/supplier/enabled true"
    ):
        call.service("supplier", Clock)
