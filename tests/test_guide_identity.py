"""Parts 3 and 4 of the BitDust guide on loopback hosts: identity servers on host-a.com and
host-b.com, identities created, propagated, backed up and restored; then the same through nginx
on port 80, as the guide does with Apache."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import GuideHost, cli, wait_for, write_nginx_conf

pytestmark = pytest.mark.slow


def fetch(url: str, host: str | None = None) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def identity_server_settings(name: str, known_servers: str) -> dict[str, object]:
    """The guide's Part 3 commands for one host."""
    return {
        "services/identity-server/enabled": "true",
        "services/identity-server/web-port": 8084,
        "services/identity-server/tcp-port": 6661,
        "services/identity-server/host": name,
        "services/identity-propagate/known-servers": known_servers,
    }


def start_core(hosts: dict[str, GuideHost], known_servers: str) -> tuple[GuideHost, GuideHost]:
    a, b = hosts["host-a.com"], hosts["host-b.com"]
    a.configure("genesis", **identity_server_settings("host-a.com", known_servers))
    b.configure("host-a.com:14441", **identity_server_settings("host-b.com", known_servers))
    a.bitdust("daemon")
    b.bitdust("daemon")
    return a, b


@pytest.mark.timeout(240)
def test_guide_parts_3_and_4_identities(guide_hosts: dict[str, GuideHost], tmp_path: Path) -> None:
    a, b = start_core(guide_hosts, "host-a.com:8084:6661,host-b.com:8084:6661")

    status, index, _ = fetch("http://127.0.1.1:8084/")
    assert status == 200
    assert re.search(rb"<title>Identities on host-a\.com</title>", index)

    status, envelope = a.api("POST", "/identity/create/v1", {"username": "alice"})
    assert status == 200, envelope
    alice = envelope["result"]
    assert alice["sources"] == ["http://host-a.com:8084/alice.xml",
                                "http://host-b.com:8084/alice.xml"]  # fmt: skip
    for address in ("127.0.1.1", "127.0.1.2"):
        status, xml, headers = fetch(f"http://{address}:8084/alice.xml")
        assert status == 200 and headers["Content-Type"].startswith("application/xml")
        assert b"<source>http://host-a.com:8084/alice.xml</source>" in xml
        assert alice["publickey"].encode() in xml
    status, index, _ = fetch("http://127.0.1.2:8084/")
    assert b"alice" in index and b"Identities on host-b.com" in index

    network = a.api("GET", "/network/status/v1?dht=1")[1]["result"]
    assert network["idurl"] == "http://host-a.com:8084/alice.xml"
    assert network["global_id"] == "alice@host-a.com_8084"
    assert network["identity_revision"] == 1
    assert network["identity_sources"] == alice["sources"]
    assert network["dht"]["contacts"] == 1
    # The p2p listener is the node's contact (the service that owns a listener sets the
    # contacts: identity-propagate's set_contacts), on the listen host, never elsewhere.
    assert network["identity_contacts"] == ["tcp://127.0.1.1:7771"]

    # With an identity, DHT values are signed by it and carry its IDURL; b (no identity yet)
    # stores and serves them, and its own values carry its node key.
    a.bitdust("dht", "set", "alice:status", "online")
    found = b.data("dht", "get", "alice:status")["values"]
    assert [(v["value"], v["owner"], v["scheme"]) for v in found] == [
        ("online", "http://host-a.com:8084/alice.xml", "rsa-pss-sha256")
    ]
    b.bitdust("dht", "set", "b:status", "up")
    found = a.data("dht", "get", "b:status")["values"]
    assert [(v["value"], v["owner"], v["scheme"]) for v in found] == [("up", None, "ed25519")]

    status, envelope = b.api("POST", "/identity/create/v1", {"username": "alice"})
    assert status == 409
    assert "already taken" in envelope["errors"][0]

    # The p2p listener moves: the new contact is signed as revision 2 and sent to both servers.
    a.bitdust("set", "services/tcp-connections/tcp-port", "7775")
    a.bitdust("restart")
    for address in ("127.0.1.1", "127.0.1.2"):
        url = f"http://{address}:8084/alice.xml"
        wait_for(lambda url=url: b"tcp://127.0.1.1:7775" in fetch(url)[1], 30, url)
        published = fetch(url)[1]
        assert b"<revision>2</revision>" in published
        assert b"tcp://127.0.1.1:7771" not in published

    # A path the node cannot write: the answer names the CLI command that can.
    unreachable = "/nonexistent-dir/backup.txt"
    status, envelope = a.api("POST", "/identity/backup/v1", {"destination_path": unreachable})
    assert status == 409 and f"bitdust identity backup {unreachable}" in envelope["errors"][0]

    # The guide's backup call, written by the node itself, then the CLI's own.
    by_api = tmp_path / "bitdust_identity_backup_key.txt"
    result = a.api("POST", "/identity/backup/v1", {"destination_path": str(by_api)})
    assert result[0] == 200
    assert by_api.stat().st_mode & 0o777 == 0o600
    assert by_api.read_text().splitlines()[0] == "http://host-a.com:8084/alice.xml"
    again = a.api("POST", "/identity/backup/v1", {"destination_path": str(by_api)})
    assert again[0] == 409 and "refusing to overwrite" in again[1]["errors"][0]
    by_cli = tmp_path / "cli-backup.txt"
    a.bitdust("identity", "backup", str(by_cli))
    assert by_cli.stat().st_mode & 0o777 == 0o600
    assert by_cli.read_bytes() == by_api.read_bytes()

    # Restore on a fresh node (host-c.com, empty state dir): same IDURL, same key.
    c = guide_hosts["host-c.com"]
    c.configure("host-a.com:14441", **{
        "services/identity-propagate/known-servers": "host-a.com:8084:6661,host-b.com:8084:6661"
    })  # fmt: skip
    c.bitdust("daemon")
    restored = c.data("identity", "restore", str(by_cli))
    assert restored["idurl"] == alice["idurl"]
    assert restored["publickey"] == alice["publickey"]
    key_a = (a.base / "state/default/identity/private_key.pem").read_bytes()
    key_c = (c.base / "state/default/identity/private_key.pem").read_bytes()
    assert key_a == key_c
    assert (c.base / "state/default/identity/private_key.pem").stat().st_mode & 0o777 == 0o600
    shown = c.data("identity", "show")
    assert shown["global_id"] == "alice@host-a.com_8084"


@pytest.mark.timeout(120)
def test_restore_refuses_a_foreign_or_broken_backup(guide_hosts: dict[str, GuideHost],
                                                    tmp_path: Path) -> None:  # fmt: skip
    a, _ = start_core(guide_hosts, "host-a.com:8084:6661,host-b.com:8084:6661")
    broken = tmp_path / "broken.txt"
    broken.write_text("not a backup\n")
    result = cli(a.env, "identity", "restore", str(broken))
    assert result.returncode == 1
    assert "not a key backup file" in result.stderr and "Traceback" not in result.stderr
    assert a.api("GET", "/identity/get/v1")[0] == 409
    # BitDust's positional key size: `identity create NAME [KEY_SIZE]`
    wrong = cli(a.env, "identity", "create", "carol", "512")
    assert wrong.returncode != 0 and "Traceback" not in wrong.stderr
    assert "key size 512 is not supported (expected 1024, 2048, 3072 or 4096)" in wrong.stderr
    created = a.data("identity", "create", "carol", "1024")
    assert created["idurl"] == "http://host-a.com:8084/carol.xml"


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Path]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(binary):
        pytest.skip("nginx is not installed (make deps installs it)")
    if os.geteuid() != 0:
        pytest.skip("nginx must run as root to bind port 80")
    base = tmp_path / "nginx"
    (base / "sites").mkdir(parents=True)
    write_nginx_conf(base, f"{base}/sites/*.conf")
    yield base
    pid = base / "nginx.pid"
    if pid.exists():
        subprocess.run([binary, "-c", str(base / "nginx.conf"), "-s", "stop"], check=False)
        wait_for(lambda: not pid.exists(), 10, "nginx to stop")


@pytest.mark.timeout(240)
def test_identities_through_nginx_on_port_80(
    guide_hosts: dict[str, GuideHost], nginx: Path
) -> None:
    known = "host-a.com:80:6661,host-b.com:80:6661"
    a, b = start_core(guide_hosts, known)
    for host in (a, b):
        site = host.bitdust("identity-server", "nginx-config")
        assert f"listen {host.address}:80;" in site
        (nginx / "sites" / f"{host.name}.conf").write_text(site)
    check = subprocess.run(["nginx", "-t", "-c", str(nginx / "nginx.conf")],
                           capture_output=True, text=True)  # fmt: skip
    assert check.returncode == 0, check.stderr
    subprocess.run(["nginx", "-c", str(nginx / "nginx.conf")], check=True)

    status, index, _ = fetch("http://127.0.1.1/", host="host-a.com")
    assert status == 200 and b"<title>Identities on host-a.com</title>" in index

    status, envelope = b.api("POST", "/identity/create/v1", {"username": "bob"})
    assert status == 200, envelope
    bob = envelope["result"]
    assert bob["sources"] == ["http://host-a.com/bob.xml", "http://host-b.com/bob.xml"]
    assert bob["global_id"] == "bob@host-a.com"
    for address, name in (("127.0.1.1", "host-a.com"), ("127.0.1.2", "host-b.com")):
        status, xml, _ = fetch(f"http://{address}/bob.xml", host=name)
        assert status == 200 and b"<source>http://host-a.com/bob.xml</source>" in xml
    status, _, _ = fetch("http://127.0.1.1/nobody-here.xml", host="host-a.com")
    assert status == 404
    request = urllib.request.Request("http://127.0.1.1/bob.xml", data=b"x" * 10, method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
