"""Whole-configuration checks, run by `bitdust run` before anything starts and by `check-config`.

Each problem is one line naming the settings involved, so an operator can fix it without reading
code: conflicting services, two listeners on one port, or a port another instance on this host
already uses (``default`` beside role instances is the usual mistake).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bitdust.config import Config, ConfigError, Paths, load_config, service_key
from bitdust.node.catalog import CATALOG, Listener, ServiceSpec, start_order

#: The REST API's port: the process binds it, whatever services run.
API_LISTENER = Listener("tcp", "interface/api/rest-http-port")
#: The metrics listener's port, bound when it is not 0 (off).
METRICS_LISTENER = Listener("tcp", "interface/metrics/port")


@dataclass(frozen=True)
class Binding:
    """A listener this configuration would open: what the spec declares, with port and host."""

    listener: Listener
    port: int
    host: str


def active_services(config: Config, catalog: Sequence[ServiceSpec] = CATALOG) -> set[str]:
    """Services that would run: enabled, provided, and with everything they need running."""
    active: set[str] = set()
    for spec in start_order(catalog):
        if (
            config.enabled(spec.name)
            and spec.implementation is not None
            and all(need in active for need in spec.needs)
        ):
            active.add(spec.name)
    return active


def bindings(config: Config, catalog: Sequence[ServiceSpec] = CATALOG) -> Iterator[Binding]:
    """Every port this configuration would bind, from the listeners of the services that run."""
    active = active_services(config, catalog)
    declared = [API_LISTENER]
    if config[METRICS_LISTENER.port_key]:
        declared.append(METRICS_LISTENER)
    for spec in start_order(catalog):
        if spec.name in active:
            declared += spec.listeners
    host = config["services/network/listen-host"]
    for listener in dict.fromkeys(declared):  # services sharing a listener share its socket
        yield Binding(listener, config[listener.port_key], host)


def _overlap(a: Binding, b: Binding) -> bool:
    return (
        a.listener.kind == b.listener.kind
        and a.port == b.port != 0
        and (not a.host or not b.host or a.host == b.host)
    )


def check_config(config: Config) -> list[str]:
    """Problems that stop this configuration from running; empty when it is fine."""
    problems = []
    for spec in CATALOG:
        for other in spec.conflicts:
            if spec.name < other and config.enabled(spec.name) and config.enabled(other):
                problems.append(
                    f"{service_key(spec.name)} and {service_key(other)} are both true: "
                    f"{spec.name} and {other} cannot run on one node; set one of them to false"
                )
    mine = list(bindings(config))
    for index, first in enumerate(mine):
        for second in mine[index + 1 :]:
            if _overlap(first, second):
                problems.append(
                    f"{first.listener.port_key} and {second.listener.port_key} both use "
                    f"{first.listener.kind} port {first.port}"
                )
    for instance, other_config in other_instances(config.paths):
        for theirs in bindings(other_config):
            for ours in mine:
                if _overlap(ours, theirs):
                    problems.append(
                        f"{ours.listener.port_key} = {ours.port}: {ours.listener.kind} port "
                        f"{ours.port} is also used by instance {instance!r} "
                        f"({theirs.listener.port_key}); change one of them, or run either "
                        f"'default' or the role instances on this host, not both"
                    )
    return problems


def other_instances(paths: Paths) -> Iterator[tuple[str, Config]]:
    """Instances on this host that are running or enabled in systemd, except this one."""
    names = running_instances(paths.runtime_dir.parent) | systemd_enabled_instances()
    names.discard(paths.instance)
    for name in sorted(names):
        other = Paths(
            name, paths.config_dir, paths.state_dir.parent / name, paths.runtime_dir.parent / name
        )
        try:
            yield name, load_config(other, env={})
        except ConfigError:
            continue  # its own check reports it


def running_instances(runtime_base: Path) -> set[str]:
    names = set()
    try:
        entries = list(runtime_base.iterdir())
    except OSError:
        return names
    for entry in entries:
        if pid_of_running(entry / "bitdust.pid") is not None:
            names.add(entry.name)
    return names


#: Where `systemctl enable` puts its links.
SYSTEMD_UNIT_DIR = Path("/etc/systemd/system")


def systemd_enabled_instances(unit_dir: Path = SYSTEMD_UNIT_DIR) -> set[str]:
    names = set()
    for link in unit_dir.glob("*.wants/bitdust@*.service"):
        names.add(link.name[len("bitdust@") : -len(".service")])
    return names


def pid_of_running(pidfile: Path) -> int | None:
    """The pid in ``pidfile`` when its node still holds the lock on it, else None."""
    try:
        fd = os.open(pidfile, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 64, 0).decode("ascii", "replace").split()
            return int(text[0]) if text and text[0].isdigit() else None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
