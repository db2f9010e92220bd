"""The identity-server service: settings turned into a running server on loopback."""

from __future__ import annotations

import pytest

from bitdust.config import Paths, load_config
from bitdust.identity.server_service import IdentityServerService
from bitdust.node.node import Node
from tests.ports import free_port


def server_service(tmp_path, known_port: int, web_port: int) -> IdentityServerService:
    env = {"BITDUST_CONFIG_DIR": str(tmp_path / "etc"), "BITDUST_STATE_DIR": str(tmp_path / "s"),
           "BITDUST_RUNTIME_DIR": str(tmp_path / "r")}  # fmt: skip
    flags = {
        "services/identity-server/enabled": "true",
        "services/identity-server/host": "host-a.com",
        "services/identity-server/web-port": str(web_port),
        "services/identity-server/tcp-port": str(free_port(host="127.0.1.1")),
        "services/identity-propagate/known-servers": f"host-a.com:{known_port}:6661",
        "services/network/listen-host": "127.0.1.1",
    }
    config = load_config(Paths.for_instance("identity-server", env), env={}, flags=flags)
    return IdentityServerService(Node(config))


@pytest.mark.parametrize(("behind_nginx", "per_address"), [(False, 16), (True, 512)])
async def test_the_per_address_http_cap_is_nginxs_when_nginx_fronts_the_server(
    tmp_path, behind_nginx, per_address
):
    web_port = free_port(host="127.0.1.1")
    service = server_service(tmp_path, 80 if behind_nginx else web_port, web_port)
    await service.start()
    try:
        limits = service.server.limits
        assert limits.http_connections_per_address == per_address
        assert service.info()["idurl_port"] == (80 if behind_nginx else web_port)
        assert service.info()["identities"] == 0
    finally:
        await service.stop()
