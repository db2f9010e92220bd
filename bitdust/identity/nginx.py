"""Fill in the nginx site template of an identity server.

The template is ``packaging/nginx/bitdust-identity.conf``, installed as
``/usr/share/bitdust/nginx/bitdust-identity.conf``.

The template has three placeholders: ``@LISTEN@`` (nginx ``listen`` argument, e.g. ``80`` or
``127.0.1.1:80``), ``@SERVER_NAME@`` (the identity server's host name) and ``@UPSTREAM@`` (the
node's identity-server web address, ``127.0.0.1:8084``). Values are validated so that nothing but a
listen address, host names and an address can be injected into the configuration. ``@ZONE@``, if
present, becomes a name made of the first server name (``bitdust_identity_host_a_com``), so that
two identity servers' sites on one nginx do not declare the same ``limit_conn_zone``.
"""

from __future__ import annotations

import re
from pathlib import Path

from bitdust.identity.errors import IdentityError

PLACEHOLDERS = ("@LISTEN@", "@SERVER_NAME@", "@UPSTREAM@")
TEMPLATE_NAME = "bitdust-identity.conf"

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])"
_PORT = r"(?:[1-9][0-9]{0,4})"
_LISTEN_RE = re.compile(rf"(?:{_HOST}:)?{_PORT}")
_SERVER_NAME_RE = re.compile(rf"{_HOST}(?: {_HOST})*")
_UPSTREAM_RE = re.compile(rf"{_HOST}:{_PORT}")


class NginxConfigError(IdentityError):
    """A value for the nginx site is malformed, or the template lacks a placeholder."""


def find_template() -> Path:
    """The installed template, else the copy inside the program, else the source tree's."""
    package = Path(__file__).resolve().parent.parent
    candidates = (
        Path("/usr/share/bitdust/nginx") / TEMPLATE_NAME,
        package / "data" / TEMPLATE_NAME,
        package.parent / "packaging" / "nginx" / TEMPLATE_NAME,
    )
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise NginxConfigError(f"the nginx template {TEMPLATE_NAME} is not installed")


def render_nginx_site(template: str, listen: str, server_name: str, upstream: str) -> str:
    """Return ``template`` with its placeholders replaced.

    ``listen``: ``80`` or ``address:port``; ``server_name``: one or more host names separated by
    spaces; ``upstream``: ``host:port`` of the identity server's web port. Raises
    :class:`NginxConfigError` naming the bad value.
    """
    _check("listen address", listen, _LISTEN_RE, "e.g. '80' or '127.0.1.1:80'")
    _check("server name", server_name, _SERVER_NAME_RE, "e.g. 'host-a.com'")
    _check("upstream", upstream, _UPSTREAM_RE, "e.g. '127.0.0.1:8084'")
    for placeholder in PLACEHOLDERS:
        if placeholder not in template:
            raise NginxConfigError(f"the nginx template has no {placeholder} placeholder")
    zone = "bitdust_identity_" + re.sub(r"[^A-Za-z0-9]", "_", server_name.split()[0])
    return (
        template.replace("@LISTEN@", listen)
        .replace("@SERVER_NAME@", server_name)
        .replace("@UPSTREAM@", upstream)
        .replace("@ZONE@", zone)
    )


def _check(what: str, value: str, pattern: re.Pattern[str], example: str) -> None:
    if not isinstance(value, str) or len(value) > 300 or not pattern.fullmatch(value):
        raise NginxConfigError(f"nginx {what} {value!r} is not valid ({example})")
    port = re.search(r"(?:^|:)([0-9]+)$", value)
    if port is not None and what != "server name" and not 1 <= int(port.group(1)) <= 65535:
        raise NginxConfigError(f"nginx {what} {value!r} has a port outside 1-65535")
