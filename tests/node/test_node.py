"""The node's lifecycle driven with fake services: plan, start in order, roll back on any
failure, stop in reverse whatever a service does, and `network/status` sections by owner."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bitdust.config import Setting
from bitdust.errors import DataFormatError
from bitdust.node.catalog import CATALOG, ServiceSpec, section_owners
from bitdust.node.node import Node, ServiceStartFailed
from bitdust.node.service import ServiceError, ServiceState, StatusSection
from tests.node import fakes
from tests.node.fakes import JOURNAL, base_config, spec


@pytest.fixture(autouse=True)
def clean_journal() -> Iterator[None]:
    JOURNAL.clear()
    yield
    JOURNAL.clear()


def node_with(tmp_path: Path, failing: type, **node_args: float) -> Node:
    """base <- middle <- failing <- last: the third service of four fails."""
    catalog = (
        spec("base", fakes.Base),
        spec("middle", fakes.Middle, "base"),
        spec("failing", failing, "middle"),
        spec("last", fakes.Last, "failing"),
    )
    config = base_config(tmp_path, "base", "middle", "failing", "last")
    return Node(config, catalog, **node_args)


def assert_rolled_back(node: Node, reason: str) -> None:
    assert JOURNAL[:2] == ["start Base", "start Middle"]
    assert JOURNAL[-2:] == ["stop Middle", "stop Base"]
    assert "start Last" not in JOURNAL
    failing = node.slots["failing"]
    assert (failing.state, failing.reason) == (ServiceState.FAILED, reason)
    assert [(s.state, s.reason) for s in (node.slots["base"], node.slots["middle"])] == [
        (ServiceState.OFF, ""),
        (ServiceState.OFF, ""),
    ]
    assert node.slots["last"].reason == "not started: failing failed"
    assert node.running() == [] and not node.ready


async def test_a_service_refusing_to_start_stops_the_others_in_reverse(tmp_path: Path) -> None:
    node = node_with(tmp_path, fakes.Refuses)
    with pytest.raises(ServiceStartFailed) as failed:
        await node.start()
    reason = "cannot bind TCP 0.0.0.0:7771: address already in use"
    assert str(failed.value) == f"service failing failed to start: {reason}"
    assert isinstance(failed.value.cause, ServiceError)
    assert_rolled_back(node, reason)


async def test_a_service_raising_a_plain_error_ends_failed_with_its_type(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    node = node_with(tmp_path, fakes.Crashes)
    with (
        caplog.at_level(logging.DEBUG, logger="bitdust.node"),
        pytest.raises(ServiceStartFailed) as failed,
    ):
        await node.start()
    assert (
        str(failed.value)
        == "service failing failed to start: unexpected RuntimeError: a bug in start"
    )
    assert isinstance(failed.value.cause, RuntimeError)
    assert_rolled_back(node, "unexpected RuntimeError: a bug in start")
    tracebacks = [record for record in caplog.records if record.exc_info]
    assert [record.levelno for record in tracebacks] == [logging.DEBUG]


async def test_a_service_of_a_newer_data_format_keeps_the_error_for_the_exit_code(
    tmp_path: Path,
) -> None:
    node = node_with(tmp_path, fakes.NewerFormat)
    with pytest.raises(ServiceStartFailed) as failed:
        await node.start()
    assert isinstance(failed.value.cause, DataFormatError)
    assert_rolled_back(node, "/var/lib/bitdust/x/fake.sqlite3: schema version 9 is newer")


async def test_a_service_that_hangs_on_start_is_cancelled_and_failed(tmp_path: Path) -> None:
    node = node_with(tmp_path, fakes.Hangs, start_timeout=0.2)
    started = time.monotonic()
    with pytest.raises(ServiceStartFailed, match=r"did not start within 0\.2 s"):
        await node.start()
    assert time.monotonic() - started < 2
    assert "cancelled Hangs" in JOURNAL
    assert_rolled_back(node, "did not start within 0.2 s")


async def test_a_service_failing_to_stop_does_not_keep_the_others_running(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    node = node_with(tmp_path, fakes.FailsToStop)
    await node.start()
    assert node.ready and [s.state for s in node.slots.values()] == [ServiceState.ON] * 4
    JOURNAL.clear()
    await node.stop()
    assert JOURNAL == ["stop Last", "stop FailsToStop", "stop Middle", "stop Base"]
    assert [s.state for s in node.slots.values()] == [ServiceState.OFF] * 4
    assert "service failing did not stop cleanly" in caplog.text


async def test_plan_says_why_each_service_is_off(tmp_path: Path) -> None:
    catalog = (
        spec("base", fakes.Base),
        spec("off", fakes.Middle),
        spec("needs-off", fakes.Last, "off"),
        ServiceSpec("missing"),
    )
    config = base_config(tmp_path, "base", "needs-off", "missing")
    config.settings["services/off/enabled"] = Setting(False, "test")
    node = Node(config, catalog)
    assert [slot.spec.name for slot in node.plan()] == ["base"]
    assert {name: (s.state, s.reason) for name, s in node.slots.items()} == {
        "base": (ServiceState.OFF, ""),
        "off": (ServiceState.OFF, "disabled"),
        "needs-off": (ServiceState.DEPENDS_OFF, "needs off"),
        "missing": (ServiceState.OFF, "not provided"),
    }


class Reports(fakes.Recorder):
    async def network_status(self, sections: list[StatusSection]) -> dict[str, object]:
        return {section: {"asked": True} for section in sections}


async def test_network_status_asks_each_section_of_its_owner_only(tmp_path: Path) -> None:
    catalog = (
        ServiceSpec(
            "reporter",
            implementation=f"{__name__}:Reports",
            status_sections=(StatusSection.DHT,),
        ),
        ServiceSpec(
            "absent",
            implementation=f"{__name__}:Reports",
            status_sections=(StatusSection.PROXY,),
        ),
    )
    config = base_config(tmp_path, "reporter")
    config.settings["services/absent/enabled"] = Setting(False, "test")
    node = Node(config, catalog)
    await node.start()
    status = await node.network_status([StatusSection.DHT, StatusSection.PROXY])
    assert status["dht"] == {"asked": True}
    assert status["proxy"] == {"state": "OFF", "reason": "service absent is not running"}
    assert "dht" not in await node.network_status([])
    await node.stop()


def test_every_status_section_has_one_running_owner_at_most() -> None:
    """A section has one owner, or owners that conflict (the router and the routed node both
    answer `?proxy=1`; only one of them runs)."""
    owners: dict[StatusSection, list[ServiceSpec]] = {}
    for row in CATALOG:
        for section in row.status_sections:
            owners.setdefault(section, []).append(row)
    assert sorted(owners) == sorted(StatusSection)
    for specs in owners.values():
        assert all(b.name in a.conflicts for a in specs for b in specs if a is not b)
    assert section_owners() == {
        StatusSection.DHT: "entangled-dht",
        StatusSection.SUPPLIERS: "customer",
        StatusSection.CUSTOMERS: "supplier",
        StatusSection.PROXY: "proxy-transport",
    }


async def test_a_service_hanging_on_stop_does_not_keep_the_others_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    node = node_with(tmp_path, fakes.HangsOnStop, stop_timeout=0.2)
    await node.start()
    JOURNAL.clear()
    started = time.monotonic()
    await node.stop()
    assert time.monotonic() - started < 2
    assert JOURNAL == ["stop Last", "stop Middle", "stop Base"]
    assert [s.state for s in node.slots.values()] == [ServiceState.OFF] * 4
    assert "service failing did not stop within 0.2 s" in caplog.text
