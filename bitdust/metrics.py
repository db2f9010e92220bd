"""The node's metrics, read from the running services at scrape time: no globals, no counters
of their own.

The rule every service follows (so a later service adds its figures by doing the same):
``info()["counters"]`` are counters (``bitdust_<service>_<name>_total``; a counter whose value is
a mapping is one series per ``reason``), and the ``info()`` fields a service names in
``Service.metric_gauges`` are gauges (``bitdust_<service>_<field>``). The node adds what it knows
itself: the instance, whether it is ready, and each service's state. This module only shapes
figures; :mod:`bitdust.api.metrics` writes them in Prometheus' text format.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bitdust.node.service import Service, ServiceState

if TYPE_CHECKING:
    from bitdust.node.node import Node

PREFIX = "bitdust"


class Kind(enum.StrEnum):
    GAUGE = "gauge"
    COUNTER = "counter"


Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Family:
    """One metric and its series: (labels, value) pairs."""

    name: str  # without the ``_total`` a counter is exposed with
    kind: Kind
    help: str
    samples: tuple[tuple[Labels, float], ...]

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.samples[0][0]) if self.samples else ()


def metric_name(*parts: str) -> str:
    """``bitdust_entangled_dht_contacts`` from ('entangled-dht', 'contacts')."""
    return "_".join(re.sub(r"[^a-zA-Z0-9_]", "_", part) for part in (PREFIX, *parts))


def node_families(node: Node, instance: str, version: str) -> list[Family]:
    """Every figure of the node and its running services, as they are now."""
    labels = (("instance", instance), ("role", node.config.role), ("version", version))
    families = [
        Family(
            metric_name("info"),
            Kind.GAUGE,
            "Always 1; the labels say which program and instance answer.",
            ((labels, 1.0),),
        ),
        Family(
            metric_name("ready"),
            Kind.GAUGE,
            "1 once every enabled service has started.",
            (((), float(node.ready)),),
        ),
        Family(
            metric_name("service", "on"),
            Kind.GAUGE,
            "1 for a running service, 0 for one that is not (see 'bitdust states').",
            tuple(
                ((("service", name),), float(slot.state is ServiceState.ON))
                for name, slot in node.slots.items()
            ),
        ),
    ]
    for name, slot in node.slots.items():
        if slot.state is ServiceState.ON and slot.service is not None:
            families += service_families(name, slot.service)
    return families


def service_families(name: str, service: Service) -> list[Family]:
    """One service's figures by the rule in the module docstring."""
    info = service.info()
    families = []
    for field in service.metric_gauges:
        value = _number(info.get(field))
        if value is not None:
            help_ = f"{name}: {field.replace('_', ' ')} (service/info's '{field}')."
            families.append(Family(metric_name(name, field), Kind.GAUGE, help_, (((), value),)))
    for counter, value in _counters(info):
        help_ = f"{name}: {counter.replace('_', ' ')} since the service started."
        if isinstance(value, Mapping):
            samples = tuple(
                ((("reason", str(reason)),), number)
                for reason, raw in sorted(value.items())
                if (number := _number(raw)) is not None
            )
        else:
            number = _number(value)
            samples = () if number is None else (((), number),)
        if samples:
            families.append(Family(metric_name(name, counter), Kind.COUNTER, help_, samples))
    return families


def _counters(info: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    counters = info.get("counters")
    if isinstance(counters, Mapping):
        yield from sorted(counters.items())


def _number(value: Any) -> float | None:
    """A figure as a float; None for anything that is not a finite number (bools count 0/1)."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None
