"""Runs the enabled services of one instance in dependency order and stops them in reverse."""

from __future__ import annotations

import asyncio
import importlib
import ipaddress
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bitdust.config import OPTIONS, Config, ConfigError, api_host, service_key
from bitdust.errors import DataFormatError
from bitdust.node.catalog import CATALOG, ServiceSpec, section_owners, start_order
from bitdust.node.checks import active_services
from bitdust.node.service import (
    Service,
    ServiceError,
    ServiceState,
    ServiceUnavailable,
    StatusSection,
)

log = logging.getLogger(__name__)

#: How long one service may take to start. The unit's TimeoutStartSec=90 covers the whole
#: process; a service that hangs ends FAILED with this reason well before systemd kills us.
START_TIMEOUT = 30.0
#: How long one service may take to stop before the node moves on to the next one, so that one
#: stuck service does not keep the others open (the process allows 8 s for all of them).
STOP_TIMEOUT = 3.0


class ServiceStartFailed(ServiceError):
    """A service could not start; the node stopped the ones that had.

    ``cause`` is what the service raised, so the process can tell a failure a restart may cure
    from one it cannot (a file of a newer format, a bad setting)."""

    def __init__(self, service: str, reason: str, cause: Exception) -> None:
        super().__init__(f"service {service} failed to start: {reason}")
        self.service = service
        self.cause = cause


@dataclass
class Slot:
    """A service's place in the node: its spec, its state and, while it runs, its object."""

    spec: ServiceSpec
    state: ServiceState = ServiceState.OFF
    reason: str = ""
    service: Service | None = None


class Node:
    """The services of one configuration: planned from the catalog, started, stopped, reported.

    ``catalog`` is the service table (tests pass their own, of fake services)."""

    def __init__(
        self,
        config: Config,
        catalog: Sequence[ServiceSpec] = CATALOG,
        start_timeout: float = START_TIMEOUT,
        stop_timeout: float = STOP_TIMEOUT,
    ) -> None:
        self.config = config
        self.paths = config.paths
        self.catalog = catalog
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.slots: dict[str, Slot] = {spec.name: Slot(spec) for spec in start_order(catalog)}
        self.section_owners = section_owners(catalog)
        self.ready = False
        self.restart_needed: set[str] = set()

    # -- addresses ---------------------------------------------------------------------------

    @property
    def listen_host(self) -> str:
        """Where public services bind; empty means every address."""
        return self.config["services/network/listen-host"]

    @property
    def bind_host(self) -> str:
        return self.listen_host or "0.0.0.0"

    @property
    def api_host(self) -> str:
        return api_host(self.listen_host)

    async def resolve(self, host: str) -> str:
        """The host map first (so one machine can play host-a.com … host-d.com), then DNS."""
        mapped = self.config["services/network/host-map"].get(host.lower())
        if mapped:
            return mapped
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            pass
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                host, None, family=socket.AF_INET, type=socket.SOCK_DGRAM
            )
        except OSError as exc:
            raise ServiceError(f"cannot resolve host {host!r}: {exc}") from None
        return infos[0][4][0]

    # -- services ----------------------------------------------------------------------------

    def service(self, name: str) -> Service:
        """The running service ``name``, or ServiceUnavailable saying why it is not running."""
        slot = self.slots[name]
        if slot.state is not ServiceState.ON or slot.service is None:
            why = f": {slot.reason}" if slot.reason else ""
            raise ServiceUnavailable(
                f"service {name} is {slot.state.value}{why} (enable it with "
                f"'bitdust set {service_key(name)} true')"
            )
        return slot.service

    def plan(self) -> list[Slot]:
        """Each service's fate from the config; returns the slots to start, in order."""
        active = active_services(self.config, self.catalog)
        for slot in self.slots.values():
            spec = slot.spec
            slot.service, slot.state, slot.reason = None, ServiceState.OFF, ""
            if spec.name in active:
                continue
            if not self.config.enabled(spec.name):
                slot.reason = "disabled"
            elif spec.implementation is None:
                slot.reason = "not provided"
            else:
                slot.state = ServiceState.DEPENDS_OFF
                slot.reason = "needs " + ", ".join(n for n in spec.needs if n not in active)
        return [slot for slot in self.slots.values() if slot.spec.name in active]

    async def start(self) -> None:
        """Start every planned service in order. When one fails, whatever it raised, it ends
        FAILED with the reason, the ones started before it are stopped, and ServiceStartFailed
        says why."""
        planned = self.plan()
        for index, slot in enumerate(planned):
            slot.state = ServiceState.STARTING
            log.info("starting service %s", slot.spec.name)
            try:
                slot.service = await self._start_service(slot.spec)
            except Exception as exc:
                slot.state, slot.reason = ServiceState.FAILED, failure_reason(exc)
                if not isinstance(exc, EXPECTED_FAILURES):
                    log.debug("service %s raised while starting", slot.spec.name, exc_info=exc)
                for later in planned[index + 1 :]:
                    later.reason = f"not started: {slot.spec.name} failed"
                await self.stop()
                raise ServiceStartFailed(slot.spec.name, slot.reason, exc) from None
            slot.state = ServiceState.ON
        self.ready = True

    async def _start_service(self, spec: ServiceSpec) -> Service:
        service = _load(spec)(self)
        try:
            async with asyncio.timeout(self.start_timeout) as deadline:
                await service.start()
        except TimeoutError:
            if deadline.expired():
                raise ServiceError(f"did not start within {self.start_timeout:g} s") from None
            raise
        return service

    async def stop(self) -> None:
        """Stop the running services in reverse order; one that fails or hangs is logged and
        left behind, and the others still stop."""
        self.ready = False
        for slot in reversed(list(self.slots.values())):
            if slot.service is None:
                continue
            slot.state = ServiceState.STOPPING
            log.info("stopping service %s", slot.spec.name)
            try:
                async with asyncio.timeout(self.stop_timeout):
                    await slot.service.stop()
            except TimeoutError:
                log.error("service %s did not stop within %g s", slot.spec.name, self.stop_timeout)
            except Exception:
                log.exception("service %s did not stop cleanly", slot.spec.name)
            slot.service, slot.state = None, ServiceState.OFF

    def reload(self, config: Config) -> tuple[list[str], list[str]]:
        """Adopt a new config: live keys apply now; the rest are reported as needing a restart."""
        changed = {key for key in config.settings if config[key] != self.config[key]}
        live = {key for key in changed if _is_live(key, self.running())}
        self.config = config
        for service in self.running():
            service.config = config
            mine = live & service.live_keys
            if mine:
                service.reload(mine)
        if "logs/level" in live:
            logging.getLogger().setLevel(config["logs/level"].upper())
        self.restart_needed |= changed - live
        return sorted(live), sorted(changed - live)

    def running(self) -> list[Service]:
        return [slot.service for slot in self.slots.values() if slot.service is not None]

    # -- reporting ---------------------------------------------------------------------------

    def states(self) -> list[dict[str, Any]]:
        """BitDust's automat list: every service, then the inner machines of running ones."""
        rows = []
        for index, slot in enumerate(self.slots.values(), start=1):
            row = {"index": index, "name": slot.spec.automat_name, "state": slot.state.value}
            if slot.reason:
                row["reason"] = slot.reason
            rows.append(row)
        index = 50
        for service in self.running():
            for name, state in service.automats():
                rows.append({"index": index, "name": name, "state": state})
                index += 1
        return rows

    def service_info(self, name: str) -> dict[str, Any]:
        slot = self.slots[name]
        info: dict[str, Any] = {
            "name": name,
            "state": slot.state.value,
            "enabled": self.config.enabled(name),
            "enabled_key": service_key(name),
            "depends": list(slot.spec.needs),
            "conflicts": list(slot.spec.conflicts),
        }
        if slot.reason:
            info["reason"] = slot.reason
        if slot.service is not None:
            info.update(slot.service.info())
        return info

    async def network_status(self, sections: list[StatusSection]) -> dict[str, Any]:
        """BitDust's `network/status`: the node, then each section asked for, from its owner."""
        result: dict[str, Any] = {
            "instance": self.paths.instance,
            "role": self.config.role,
            "ready": self.ready,
            "services_on": [s.spec.name for s in self.slots.values() if s.service is not None],
        }
        for slot in self.slots.values():
            mine = [section for section in sections if section in slot.spec.status_sections]
            if slot.service is not None:  # every service adds its fields (identity: idurl...)
                result.update(await slot.service.network_status(mine))
        for section in sections:
            if section not in result:
                owner = self.section_owners[section]
                result[section] = {
                    "state": self.slots[owner].state.value,
                    "reason": f"service {owner} is not running",
                }
        return result

    def status_line(self) -> str:
        if not self.ready:
            return "starting"
        parts = [f"{len(self.running())} services on"]
        parts += [text for service in self.running() if (text := service.status_text())]
        if self.restart_needed:
            parts.append("restart needed for " + ", ".join(sorted(self.restart_needed)))
        return "; ".join(parts)


def _is_live(key: str, services: list[Service]) -> bool:
    return OPTIONS[key].live or any(key in service.live_keys for service in services)


#: Failures whose message says it all. Anything else is a bug of ours: its reason names its type,
#: and its traceback is logged at debug level only.
EXPECTED_FAILURES: tuple[type[Exception], ...] = (ServiceError, DataFormatError, ConfigError)


def failure_reason(exc: Exception) -> str:
    """One line for the log, STATUS= and `bitdust states`."""
    if isinstance(exc, EXPECTED_FAILURES):
        return str(exc)
    return f"unexpected {type(exc).__name__}: {exc}"


def _load(spec: ServiceSpec) -> type[Service]:
    assert spec.implementation is not None
    module_name, _, class_name = spec.implementation.partition(":")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ServiceError(f"its code is missing from this build ({exc})") from None
