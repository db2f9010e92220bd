"""The base class every service implements, and the states it moves through.

A service never starts another service and never reads settings of services it does not own; the
node hands it the :class:`~bitdust.node.node.Node` it runs in, which resolves host names, knows the
listen address and the state directory, and gives access to the services it depends on.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bitdust.node.node import Node


class ServiceState(enum.StrEnum):
    """BitDust's names, so `bitdust states` reads as it always did."""

    ON = "ON"
    OFF = "OFF"
    STARTING = "STARTING"
    STOPPING = "STOPPING"
    DEPENDS_OFF = "DEPENDS_OFF"
    FAILED = "FAILED"


class StatusSection(enum.StrEnum):
    """The optional sections of `network/status` (``?dht=1&suppliers=1...``), BitDust's names.

    Each is filled by the one service whose spec lists it (see ``catalog``); the API and the CLI
    offer one flag per member."""

    DHT = "dht"
    SUPPLIERS = "suppliers"
    CUSTOMERS = "customers"
    PROXY = "proxy"


class ServiceError(Exception):
    """A service could not do what was asked; the message says why."""


class ServiceUnavailable(ServiceError):
    """The service a request needs is not running on this node."""


class Service:
    """One capability of the node, started after the services it needs and stopped before them."""

    #: keys this service applies on SIGHUP without a restart
    live_keys: frozenset[str] = frozenset()
    #: fields of :meth:`info` exported as gauges at ``GET /metrics``; ``info()["counters"]``
    #: are exported as counters (see :mod:`bitdust.metrics`)
    metric_gauges: tuple[str, ...] = ()

    def __init__(self, node: Node) -> None:
        self.node = node
        self.config = node.config

    async def start(self) -> None:
        """Bring the service up; return once it is ready, raise ServiceError if it cannot.

        A service that fails (whatever it raises) or is cancelled by the node's start timeout
        releases what it opened itself: the node never calls ``stop`` on a service that did not
        start. Raise :class:`bitdust.errors.DataFormatError` for a kept file of a newer format."""

    async def stop(self) -> None:
        """Finish in-flight work and release sockets and files."""

    def reload(self, changed: set[str]) -> None:
        """Apply changed settings listed in ``live_keys``; the node has the new config already."""

    def info(self) -> dict[str, Any]:
        """Figures for `service/info` and `network/status`."""
        return {}

    async def network_status(self, sections: list[StatusSection]) -> dict[str, Any]:
        """Fields this service adds to `network/status`; ``sections`` are those asked for among
        the ones its spec lists, each a key of the result."""
        return {}

    def status_text(self) -> str:
        """One short phrase for systemd's STATUS= line, empty when there is nothing to say."""
        return ""

    def automats(self) -> list[tuple[str, str]]:
        """Inner state machines worth listing in `bitdust states`, as (name, state)."""
        return []
