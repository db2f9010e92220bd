"""IDURLs, user names and global ids, as BitDust writes them.

An IDURL is where an identity file is served: ``http://<host>[:<port>]/<name>.xml``. The port is
written only when it is not 80 (``http://host-a.com:8084/alice.xml``). Hosts are lower-case DNS
names or dotted IPv4 addresses; IPv6 literals are not supported. Names are 3-20 characters of
``[a-z0-9_-]``. A global id is BitDust's short form ``alice@host-a.com``, with ``_<port>`` appended
to the host when the port is not 80 (``alice@host-a.com_8084``), as BitDust's ``global_id`` does.

This module only parses and formats strings; it never resolves or contacts a host.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bitdust.identity.errors import IdurlError

DEFAULT_HTTP_PORT = 80
MAX_IDURL_LENGTH = 256

_NAME_RE = re.compile(r"[a-z0-9_-]{3,20}")
_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4_RE = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
_IDURL_RE = re.compile(r"http://([^/:]+)(?::([0-9]{1,5}))?/([^/]+)\.xml")


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid user name, else raise :class:`IdurlError`."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise IdurlError(
            f"{printable(name)} is not a valid identity name "
            "(3-20 characters: lower-case letters, digits, '_' or '-')"
        )
    return name


def validate_host(host: str) -> str:
    """Return ``host`` if it is a lower-case DNS name or a dotted IPv4 address."""
    if not isinstance(host, str) or not host or len(host) > 253:
        raise IdurlError(f"{printable(host)} is not a valid host name")
    if _IPV4_RE.fullmatch(host):
        return host
    labels = host.split(".")
    if all(_LABEL_RE.fullmatch(label) for label in labels) and not labels[-1].isdigit():
        return host
    raise IdurlError(
        f"{printable(host)} is not a valid host name (expected a lower-case DNS name like "
        "'host-a.com' or an IPv4 address)"
    )


def validate_port(port: int) -> int:
    """Return ``port`` if it is an int in 1..65535."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise IdurlError(f"{printable(port)} is not a valid TCP port (expected 1-65535)")
    return port


@dataclass(frozen=True, slots=True)
class Idurl:
    """A parsed IDURL: the identity server's host and HTTP port, and the user's name."""

    host: str
    port: int
    name: str

    def __post_init__(self) -> None:
        validate_host(self.host)
        validate_port(self.port)
        validate_name(self.name)

    def __str__(self) -> str:
        return format_idurl(self.host, self.port, self.name)

    @property
    def server(self) -> tuple[str, int]:
        """``(host, port)`` of the identity server that serves this IDURL."""
        return (self.host, self.port)

    @property
    def global_id(self) -> str:
        """BitDust's global id, e.g. ``alice@host-a.com`` or ``alice@host-a.com_8084``."""
        return format_global_id(self.host, self.port, self.name)


def _validate_parts(host: str, port: int, name: str) -> None:
    validate_host(host)
    validate_port(port)
    validate_name(name)


def format_idurl(host: str, port: int, name: str) -> str:
    """Build an IDURL; the port is written only when it is not 80."""
    _validate_parts(host, port, name)
    if port == DEFAULT_HTTP_PORT:
        return f"http://{host}/{name}.xml"
    return f"http://{host}:{port}/{name}.xml"


def parse_idurl(text: str) -> Idurl:
    """Parse an IDURL, refusing anything that :func:`format_idurl` would not write back the same.

    Raises :class:`IdurlError` with the reason.
    """
    if not isinstance(text, str) or len(text) > MAX_IDURL_LENGTH:
        raise IdurlError(f"{printable(text)} is not an IDURL (too long or not text)")
    match = _IDURL_RE.fullmatch(text)
    if match is None:
        raise IdurlError(
            f"{printable(text)} is not an IDURL (expected e.g. 'http://host-a.com/alice.xml' or "
            "'http://host-a.com:8084/alice.xml')"
        )
    host, port_text, name = match.groups()
    if port_text is not None and (port_text.startswith("0") or int(port_text) == DEFAULT_HTTP_PORT):
        raise IdurlError(
            f"{printable(text)}: write the port only when it is not 80, without leading zeros"
        )
    port = int(port_text) if port_text is not None else DEFAULT_HTTP_PORT
    try:
        return Idurl(host, port, name)
    except IdurlError as exc:
        raise IdurlError(f"{printable(text)} is not a valid IDURL: {exc.message}") from None


def format_global_id(host: str, port: int, name: str) -> str:
    """BitDust's global id: ``name@host``, plus ``_port`` when the port is not 80."""
    _validate_parts(host, port, name)
    if port == DEFAULT_HTTP_PORT:
        return f"{name}@{host}"
    return f"{name}@{host}_{port}"


def global_id_of(idurl: str) -> str:
    """Global id of an IDURL: ``http://host-a.com:8084/alice.xml`` -> ``alice@host-a.com_8084``."""
    return parse_idurl(idurl).global_id


def printable(value: object) -> str:
    """A short, printable rendering of untrusted input for error messages."""
    text = value if isinstance(value, str) else repr(value)
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    if len(text) > 80:
        text = text[:77] + "..."
    return repr(text) if isinstance(value, str) else text
