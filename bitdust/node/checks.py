"""Whole-configuration checks, run by `bitdust run` before anything starts and by `check-config`.

Each problem is one line naming the settings involved, so an operator can fix it without reading
code: conflicting services, two listeners on one port, or a port another instance on this host
already uses (``default`` beside role instances is the usual mistake).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bitdust.config import Config, ConfigError, Paths, load_config, service_key
from bitdust.node.catalog import CATALOG, start_order


@dataclass(frozen=True)
class Listener:
    protocol: str
    port: int
    host: str
    key: str


def active_services(config: Config) -> set[str]:
    """Services that would run: enabled, provided, and with everything they need running."""
    active: set[str] = set()
    for spec in start_order():
        if (
            config.enabled(spec.name)
            and spec.implementation is not None
            and all(need in active for need in spec.needs)
        ):
            active.add(spec.name)
    return active


def listeners(config: Config) -> Iterator[Listener]:
    """Every port this configuration would bind, with the setting that chose it."""
    active = active_services(config)
    host = config["services/network/listen-host"]

    def listener(protocol: str, key: str) -> Listener:
        return Listener(protocol, config[key], host, key)

    yield listener("tcp", "interface/api/rest-http-port")
    if "entangled-dht" in active:
        yield listener("udp", "services/entangled-dht/udp-port")
    if "identity-server" in active:
        yield listener("tcp", "services/identity-server/web-port")
        yield listener("tcp", "services/identity-server/tcp-port")
    if active & {"p2p", "proxy-server"}:
        yield listener("tcp", "services/tcp-connections/tcp-port")


def _overlap(a: Listener, b: Listener) -> bool:
    return (
        a.protocol == b.protocol
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
    mine = list(listeners(config))
    for index, first in enumerate(mine):
        for second in mine[index + 1 :]:
            if _overlap(first, second):
                problems.append(
                    f"{first.key} and {second.key} both use {first.protocol} port {first.port}"
                )
    for instance, other_config in other_instances(config.paths):
        for theirs in listeners(other_config):
            for ours in mine:
                if _overlap(ours, theirs):
                    problems.append(
                        f"{ours.key} = {ours.port}: {ours.protocol} port {ours.port} is also used "
                        f"by instance {instance!r} ({theirs.key}); change one of them, or run "
                        f"either 'default' or the role instances on this host, not both"
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


def systemd_enabled_instances(unit_dir: Path = Path("/etc/systemd/system")) -> set[str]:
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
