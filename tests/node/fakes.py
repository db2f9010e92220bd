"""Fake services for driving the node's lifecycle: each records what happens to it in JOURNAL.

Specs name them by import path, as the real catalog names real services, so the node loads them
the way it loads the real ones.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bitdust.config import Config, Paths, Setting, load_config, service_key
from bitdust.errors import DataFormatError
from bitdust.node.catalog import ServiceSpec
from bitdust.node.service import Service, ServiceError

JOURNAL: list[str] = []


class Recorder(Service):
    async def start(self) -> None:
        JOURNAL.append(f"start {type(self).__name__}")

    async def stop(self) -> None:
        JOURNAL.append(f"stop {type(self).__name__}")


class Base(Recorder):
    pass


class Middle(Recorder):
    pass


class Last(Recorder):
    pass


class Refuses(Recorder):
    async def start(self) -> None:
        raise ServiceError("cannot bind TCP 0.0.0.0:7771: address already in use")


class Crashes(Recorder):
    async def start(self) -> None:
        raise RuntimeError("a bug in start")


class NewerFormat(Recorder):
    async def start(self) -> None:
        raise DataFormatError("/var/lib/bitdust/x/fake.sqlite3: schema version 9 is newer")


class Hangs(Recorder):
    async def start(self) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            JOURNAL.append("cancelled Hangs")
            raise


class FailsToStop(Recorder):
    async def stop(self) -> None:
        await super().stop()
        raise RuntimeError("socket already closed")


class HangsOnStop(Recorder):
    async def stop(self) -> None:
        await asyncio.Event().wait()


class StartsOnce(Recorder):
    """Starts the first time only, as a service whose port another process took meanwhile."""

    started = 0

    async def start(self) -> None:
        StartsOnce.started += 1
        if StartsOnce.started > 1:
            raise ServiceError("cannot bind UDP 0.0.0.0:14441: address already in use")
        await super().start()


class SlowAgain(Recorder):
    """Starts at once the first time, then takes a while, as a service reopening its files."""

    started = 0

    async def start(self) -> None:
        SlowAgain.started += 1
        if SlowAgain.started > 1:
            await asyncio.sleep(0.3)
        await super().start()


def spec(name: str, service: type[Service], *needs: str, **more: object) -> ServiceSpec:
    return ServiceSpec(name, needs=needs, implementation=f"{__name__}:{service.__name__}", **more)


def enable(config: Config, *names: str) -> Config:
    """The config with fake services' enabled keys set (the real registry does not know them)."""
    for name in names:
        config.settings[service_key(name)] = Setting(True, "test")
    return config


def base_config(base: Path, *enabled: str, **flags: str) -> Config:
    env = {
        "BITDUST_CONFIG_DIR": str(base / "etc"),
        "BITDUST_STATE_DIR": str(base / "state"),
        "BITDUST_RUNTIME_DIR": str(base / "run"),
    }
    return enable(load_config(Paths.for_instance("dht-seed", env), env={}, flags=flags), *enabled)
