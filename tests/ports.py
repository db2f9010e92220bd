"""Ports for servers under test, chosen before the server binds them.

A port taken from the kernel's ephemeral range (bind to 0, then close) is free only until
something else binds port 0: the nodes starting beside a test do that for their own listeners
and outgoing connections, and now and then one took the port a test had just chosen, so that a
node exited with "address already in use". A port chosen below that range cannot be handed out
by the kernel, and one process never hands out the same port twice.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

#: Where chosen ports start: above the design's fixed ports (6661, 7771, 8084, 14441, ...).
_LOWEST = 20000

_handed_out: set[tuple[int, str, int]] = set()
_pick = random.Random()


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port on ``host`` that nothing holds now and the kernel will not give to a bind of 0."""
    highest = _ephemeral_start() - 1
    if highest - _LOWEST < 1000:  # an unusual ephemeral range: fall back to asking the kernel
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.bind((host, 0))
            return sock.getsockname()[1]
    for _ in range(200):
        port = _pick.randint(_LOWEST, highest)
        if (kind, host, port) in _handed_out:
            continue
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _handed_out.add((kind, host, port))
        return port
    raise RuntimeError(f"no free port on {host} between {_LOWEST} and {highest}")
