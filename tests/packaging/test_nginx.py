"""The identity server's nginx site, as the frozen binary fills it in, passes `nginx -t`.

The binary carries the template (bitdust/data inside the bundle) for use from dist/; installed, it
prefers /usr/share/bitdust/nginx/bitdust-identity.conf (the install test checks that one).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import write_nginx_conf
from tests.packaging.conftest import bare_env

pytestmark = pytest.mark.packaging


def nginx_config(binary: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    etc = tmp_path / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "identity-server.conf").write_text("services/identity-server/host = host-a.com\n")
    env = bare_env(
        BITDUST_CONFIG_DIR=str(etc),
        BITDUST_STATE_DIR=str(tmp_path / "state"),
        BITDUST_RUNTIME_DIR=str(tmp_path / "run"),
    )
    return subprocess.run(
        [str(binary), "--instance", "identity-server", "identity-server", "nginx-config", *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_nginx_site_from_the_frozen_binary_passes_nginx_t(binary: Path, tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(nginx, os.X_OK):
        pytest.fail("nginx is not installed: run 'make deps' (as root)")
    if os.geteuid() != 0:
        pytest.skip("nginx -t must run as root (it opens its error log and checks the user)")
    result = nginx_config(binary, tmp_path, "--listen", "127.0.1.1:80")
    assert result.returncode == 0, (
        "bitdust identity-server nginx-config failed (is the command in the CLI yet?): "
        + result.stderr
    )
    site = tmp_path / "bitdust-identity.conf"
    site.write_text(result.stdout)
    assert "@" not in result.stdout.replace("$", ""), "a placeholder was left unfilled"
    assert "listen 127.0.1.1:80;" in result.stdout
    assert "server_name host-a.com;" in result.stdout
    assert "server 127.0.0.1:8084;" in result.stdout
    base = tmp_path / "nginx"
    write_nginx_conf(base, str(site), run_as_root=False)
    check = subprocess.run(
        [nginx, "-t", "-q", "-p", str(base), "-c", str(base / "nginx.conf")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stderr


def test_nginx_config_refuses_a_bad_listen_address(binary: Path, tmp_path: Path) -> None:
    result = nginx_config(binary, tmp_path, "--listen", "80; include /etc/shadow")
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.startswith("bitdust: ") and "Traceback" not in result.stderr
