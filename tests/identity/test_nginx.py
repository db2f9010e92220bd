"""The nginx site template and its renderer."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from bitdust.identity.nginx import NginxConfigError, render_nginx_site

TEMPLATE = (Path(__file__).parents[2] / "packaging" / "nginx" / "bitdust-identity.conf").read_text()


def test_renders_placeholders():
    site = render_nginx_site(TEMPLATE, "127.0.1.1:80", "host-a.com", "127.0.0.1:8084")
    assert "@" not in site.replace("$", "")
    assert "listen 127.0.1.1:80;" in site
    assert "server_name host-a.com;" in site
    # the node's connections are kept open and reused (one per request cost two thirds)
    assert "upstream bitdust_identity_host_a_com_node {" in site
    assert "server 127.0.0.1:8084;" in site and "keepalive 16;" in site
    assert "proxy_pass http://bitdust_identity_host_a_com_node;" in site
    assert 'proxy_set_header Connection "";' in site
    assert "proxy_set_header Host $host;" in site
    assert "client_max_body_size 64k;" in site
    assert "proxy_read_timeout 10s;" in site and "proxy_connect_timeout 10s;" in site
    assert "limit_except GET" in site
    # per-client connection cap: the node's own per-address cap cannot see clients behind nginx
    assert "limit_conn bitdust_identity_host_a_com 16;" in site


@pytest.mark.parametrize(
    ("listen", "server_name", "upstream"),
    [
        ("80; include /etc/passwd", "host-a.com", "127.0.0.1:8084"),
        ("80", "host-a.com;", "127.0.0.1:8084"),
        ("80", "host-a.com", "127.0.0.1"),
        ("80", "host-a.com", "127.0.0.1:70000"),
        ("0", "host-a.com", "127.0.0.1:8084"),
        ("80", "host-a.com\n}", "127.0.0.1:8084"),
    ],
)
def test_refuses_values_that_could_inject_configuration(listen, server_name, upstream):
    with pytest.raises(NginxConfigError, match=r"is not valid|has a port outside 1-65535"):
        render_nginx_site(TEMPLATE, listen, server_name, upstream)


def test_refuses_template_without_placeholders():
    with pytest.raises(NginxConfigError, match="@UPSTREAM@"):
        render_nginx_site("listen @LISTEN@; server_name @SERVER_NAME@;", "80", "h", "h:1")


def test_rendered_site_passes_nginx_syntax_check(tmp_path):
    nginx = shutil.which("nginx") or (
        Path("/usr/sbin/nginx") if Path("/usr/sbin/nginx").exists() else None
    )
    if nginx is None:
        pytest.skip("nginx is not installed here; the syntax check runs where it is")
    site = render_nginx_site(TEMPLATE, "127.0.1.1:18080", "host-a.com", "127.0.0.1:8084")
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\naccess_log off;\nclient_body_temp_path {tmp_path};\n"
        f"proxy_temp_path {tmp_path};\n{site}\n}}\n"
    )
    result = subprocess.run(
        [str(nginx), "-t", "-c", str(conf), "-p", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
