"""Real processes on the guide's hosts (run under the shared test lock): a routed node (no
contact of its own) and a direct node exchange requests and a 100 MB speed test both ways
through a router, while a TCP tee in front of the router records every byte and finds that a
plaintext marker in the data never crosses it.

host-a.com and host-b.com are the identity servers (host-a.com also the direct node, alice),
host-c.com the router, host-d.com the routed node (dave). The router listens on 127.0.1.3:7771
and publishes that contact; alice's and dave's host maps send 127.0.1.3 to 127.0.1.5, where the
tee listens and forwards to the router, so every byte of both legs of the route crosses it.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from typing import Any

import pytest

from bitdust.proxy.relay import route_id
from tests.helpers import HOST_MAP, GuideHost, wait_for
from tests.proxy.test_guide_routed import NODE, ROUTER, SERVERS, create, proxy, served_contacts
from tests.test_guide_identity import identity_server_settings

ROUTER_ADDRESS = ("127.0.1.3", 7771)
TEE_ADDRESS = ("127.0.1.5", 7771)
TEED = {"services/network/host-map": f"{HOST_MAP},127.0.1.3={TEE_ADDRESS[0]}"}
MARKER = "PLAINTEXT-MARKER-the-router-must-never-see-this"
STREAM_SIZE = 100_000_000


class Tee:
    """A TCP forwarder that counts every byte it passes, both ways, and looks for ``marker``
    in each direction of each connection keeping only a marker-sized window."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int], marker: bytes) -> None:
        self.target = target
        self.marker = marker
        self.total = 0
        self.marker_seen = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.server = socket.create_server(listen)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:  # closed
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        tail = b""
        keep = len(self.marker) - 1
        try:
            while chunk := source.recv(1 << 20):
                window = tail + chunk
                if self.marker in window:
                    self.marker_seen = True
                tail = window[-keep:]
                with self._lock:
                    self.total += len(chunk)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        # shutdown wakes the thread blocked in accept(); close alone leaves the socket
        # listening until that call returns, for the rest of the pytest process
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)
        self.server.close()
        for sock in self._sockets:
            sock.close()


def contacts(idurl: str) -> list[str]:
    return re.findall(r"<contact>([^<]*)</contact>", served_contacts(idurl).decode())


def sessions_with(host: GuideHost, idurl: str) -> list[dict[str, Any]]:
    return [s for s in host.api("GET", "/network/connected/v1")[1]["result"] if s["idurl"] == idurl]


def speedtest(host: GuideHost, peer: str, direction: str) -> dict[str, Any]:
    body = {"idurl": peer, "bytes": STREAM_SIZE, "direction": direction, "marker": MARKER}
    status, envelope = host.api("POST", "/network/speedtest/v1", {**body, "timeout": 50})
    assert status == 200, envelope
    return envelope["result"]


@pytest.fixture
def tee() -> Any:
    recorder = Tee(TEE_ADDRESS, ROUTER_ADDRESS, MARKER.encode())
    yield recorder
    recorder.close()


@pytest.mark.timeout(120)
def test_routed_and_direct_nodes_stream_100_mb_both_ways_opaque_to_the_router(
    guide_hosts: dict[str, GuideHost], tee: Tee
) -> None:
    a, b, c, d = (guide_hosts[f"host-{x}.com"] for x in "abcd")
    a.configure("genesis", **identity_server_settings("host-a.com", SERVERS), **TEED)
    b.configure("host-a.com:14441", **identity_server_settings("host-b.com", SERVERS))
    c.configure("host-a.com:14441", **ROUTER)
    for host in (a, b, c):
        host.bitdust("daemon")
    alice, router = create(a, "alice"), create(c, "router1")

    d.configure(
        "host-a.com:14441",
        **NODE,
        **TEED,
        **{"services/nodes-lookup/enabled": "true", "services/proxy-transport/enabled": "true",
           "services/proxy-transport/preferred-routers": router},
    )  # fmt: skip
    d.bitdust("daemon")
    dave = create(d, "dave")
    wait_for(lambda: proxy(d)["router"] == router, 60, "dave routed through host-c.com")
    through_router = f"tcp://127.0.1.3:7771/{route_id(dave)}"
    wait_for(lambda: contacts(dave) == [through_router], 30, "only the router's contact published")

    for host, peer in ((a, dave), (d, alice)):  # dave's answer reuses the routed session
        status, envelope = host.api("POST", "/user/ping/v1", {"id": peer})
        assert status == 200, envelope
    seen_before = tee.total
    up, down = speedtest(a, dave, "up"), speedtest(a, dave, "down")

    assert (up["bytes"], up["digests_match"]) == (STREAM_SIZE, True), up
    assert (down["bytes"], down["digests_match"]) == (STREAM_SIZE, True), down
    assert [s["route"] for s in sessions_with(a, dave)] == ["routed"]
    assert [s["route"] for s in sessions_with(d, alice)] == ["routed"]
    assert tee.total - seen_before > 2 * STREAM_SIZE  # each way, on both legs of the route
    assert not tee.marker_seen
    with socket.create_connection(TEE_ADDRESS) as plain:  # the tee does spot it in plaintext,
        plain.sendall(MARKER[:10].encode())  # even split across reads
        time.sleep(0.2)
        plain.sendall(MARKER[10:].encode())
        wait_for(lambda: tee.marker_seen, 5, "the tee spots the marker sent in the clear")
    by_cli = d.data("network", "speedtest", alice, "--bytes", "1000000", "--down")
    assert (by_cli["direction"], by_cli["digests_match"]) == ("down", True), by_cli
    print(f"through the router: up {up['mb_per_s']} MB/s, down {down['mb_per_s']} MB/s")
