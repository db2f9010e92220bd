"""The test ports cannot be taken by a bind of port 0 between choosing and binding them."""

from __future__ import annotations

import socket

from tests.ports import _ephemeral_start, free_port


def test_chosen_ports_are_below_the_ephemeral_range_and_never_repeat() -> None:
    ports = [free_port() for _ in range(300)] + [free_port(socket.SOCK_DGRAM) for _ in range(300)]
    assert all(port < _ephemeral_start() for port in ports)
    assert len(set(ports[:300])) == 300 and len(set(ports[300:])) == 300
