"""The node's configuration: one registry of typed options and the layers that set them.

Keys are BitDust's settings paths (``services/supplier/donated-space``) so its users' habits carry
over. Layers, later wins (DESIGN §3): defaults → role preset → ``network.json`` → the instance's
conffile → ``api-settings.conf`` in the state dir → ``BITDUST_*`` environment → command-line flags.

This module never writes a file except through :meth:`ConffileEdit.write`, which changes one
line atomically and leaves the file byte-for-byte unchanged when the new value is refused.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import stat
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bitdust.files import atomic_write, read_bounded

DEFAULT_INSTANCE = "default"
ROLES = ("default", "dht-seed", "identity-server", "proxy-router", "supplier")
_INSTANCE_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
MAX_CONFFILE_BYTES = 1024 * 1024


class ConfigError(Exception):
    """A configuration problem a user can fix; the message says how."""


class UnknownKey(ConfigError):
    pass


class BadValue(ConfigError):
    pass


class Overridden(ConfigError):
    """A value written to one layer would not be the one in force: a higher layer sets the key.
    The message names that layer and how to clear it."""


# ---------------------------------------------------------------------------------------------
# Value types


@dataclass(frozen=True)
class OptionType:
    """How one kind of value is parsed from text and written back."""

    name: str
    expected: str
    parse_text: Callable[[str], Any]
    format_value: Callable[[Any], str] = str
    native: tuple[type, ...] = ()
    choices: tuple[Any, ...] = ()  # every value, for a type that is a fixed list

    def parse(self, raw: Any) -> Any:
        """Parse text (or, from JSON, a native value of the right type)."""
        if isinstance(raw, bool) and bool not in self.native:
            raise ValueError(f"expected {self.expected}")
        if self.native and isinstance(raw, self.native):
            return self.parse_text(self.format_value(raw))
        if not isinstance(raw, str):
            raise ValueError(f"expected {self.expected}")
        check_one_line(raw)
        return self.parse_text(raw.strip())


def check_one_line(text: str) -> None:
    """Refuse what could end a conffile line or hide in one: every line and paragraph separator
    (U+2028 and U+0085 included), control characters and lone surrogates.

    A value holding one would be written as two lines, the second a setting of the caller's
    choice (``a\u2028interface/api/auth-secret-enabled = false``).
    """
    for char in text:
        if unicodedata.category(char) in _NOT_IN_A_LINE:
            raise ValueError(f"contains U+{ord(char):04X} ({_char_name(char)}); one line expected")


_NOT_IN_A_LINE = frozenset({"Cc", "Zl", "Zp", "Cs"})  # control, line sep, paragraph sep, surrogate


def _char_name(char: str) -> str:
    return unicodedata.name(char, "a control character").lower()


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise ValueError("not a boolean")


def _int_parser(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not re.fullmatch(r"[+-]?[0-9]{1,19}", text):
            raise ValueError("not a whole number")
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"out of range {low}..{high}")
        return value

    return parse


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1024,
    "kib": 1024,
    "mb": 1024**2,
    "mib": 1024**2,
    "gb": 1024**3,
    "gib": 1024**3,
    "tb": 1024**4,
    "tib": 1024**4,
}


MAX_SIZE = 2**62


def _parse_size(text: str) -> int:
    """Sizes as BitDust writes them ('50 GB'); units are binary, as BitDust counts them."""
    match = re.fullmatch(r"([0-9]{1,19}(?:\.[0-9]{1,6})?) *([a-zA-Z]{0,3})", text)
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError("not a size")
    numerator, denominator = _scaled(match.group(1), _SIZE_UNITS[match.group(2).lower()])
    value = numerator // denominator
    if value > MAX_SIZE:
        raise ValueError("too large")
    return value


def format_size(value: int) -> str:
    for unit in ("TB", "GB", "MB", "KB"):
        factor = _SIZE_UNITS[unit.lower()]
        if value >= factor and value % factor == 0:
            return f"{value // factor} {unit}"
    return f"{value} B"


_DURATION_UNITS = {
    "": 1,
    "s": 1,
    "sec": 1,
    "m": 60,
    "min": 60,
    "h": 3600,
    "d": 86400,
    "days": 86400,
}


# Durations are seconds with at most 6 decimals and 9 digits before the point (31 years): any
# such value is written in seconds (or a whole unit) and reads back as the same float.
MAX_DURATION = 999_999_999


def _parse_duration(text: str) -> float:
    match = re.fullmatch(r"([0-9]{1,9}(?:\.[0-9]{1,6})?) *([a-z]{0,4})", text.lower())
    if not match or match.group(2) not in _DURATION_UNITS:
        raise ValueError("not a duration")
    numerator, denominator = _scaled(match.group(1), _DURATION_UNITS[match.group(2)])
    if numerator > MAX_DURATION * denominator:
        raise ValueError(f"longer than {MAX_DURATION} s")
    return numerator / denominator  # a quotient of integers, rounded once


def _scaled(number: str, factor: int) -> tuple[int, int]:
    """``number`` (digits, perhaps a point and decimals) times ``factor``, exactly: a numerator
    over a power of ten (a node that read its settings need not load the decimal module)."""
    whole, _, decimals = number.partition(".")
    return int(whole + decimals) * factor, 10 ** len(decimals)


def _format_duration(value: float) -> str:
    """The largest whole unit, else seconds: '90 d', '12 h', '5 min', '2.5 s'."""
    for unit, factor in (("d", 86400), ("h", 3600), ("min", 60)):
        if value >= factor and value % factor == 0:
            return f"{int(value // factor)} {unit}"
    return f"{value:.6f}".rstrip("0").rstrip(".") + " s"


_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9-]{1,63})*$"
)


def _check_host(host: str) -> str:
    if _HOSTNAME_RE.match(host):
        return host.lower()
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        raise ValueError(f"{host!r} is not a host name or address") from None


def _parse_port_text(text: str, allow_zero: bool = True) -> int:
    port = _int_parser(0 if allow_zero else 1, 65535)(text)
    return port


def _split_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _parse_host_ports(text: str) -> tuple[tuple[str, int], ...]:
    entries = []
    for item in _split_list(text):
        host, sep, port = item.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{item!r} is not host:port")
        entries.append((_check_host(host), _parse_port_text(port, allow_zero=False)))
    return tuple(entries)


def _format_host_ports(value: Iterable[tuple[str, int]]) -> str:
    return ",".join(f"{host}:{port}" for host, port in value)


def _parse_known_nodes(text: str) -> tuple[tuple[str, int], ...] | str:
    if text.lower() == "genesis":
        return "genesis"
    return _parse_host_ports(text)


def _format_known_nodes(value: Any) -> str:
    return value if isinstance(value, str) else _format_host_ports(value)


#: More identity servers than an identity can name as sources serve no purpose, and each one is
#: contacted when a name is checked: a bound on that work.
MAX_KNOWN_SERVERS = 32


def _parse_known_servers(text: str) -> tuple[tuple[str, int, int], ...]:
    """BitDust's ``host:web_port[:tcp_port]`` list; the tcp port defaults to 6661. A server
    (host and web port: the base of its IDURLs) is listed once."""
    entries = []
    seen: set[tuple[str, int]] = set()
    for item in _split_list(text):
        parts = item.split(":")
        if len(parts) not in (2, 3):
            raise ValueError(f"{item!r} is not host:http_port:tcp_port")
        host = _check_host(parts[0])
        http_port = _parse_port_text(parts[1], allow_zero=False)
        tcp_port = _parse_port_text(parts[2], allow_zero=False) if len(parts) == 3 else 6661
        if (host, http_port) in seen:
            raise ValueError(f"{host}:{http_port} is listed twice")
        seen.add((host, http_port))
        entries.append((host, http_port, tcp_port))
    if len(entries) > MAX_KNOWN_SERVERS:
        raise ValueError(f"{len(entries)} servers listed (at most {MAX_KNOWN_SERVERS})")
    return tuple(entries)


def _format_known_servers(value: Iterable[tuple[str, int, int]]) -> str:
    return ",".join(f"{host}:{http}:{tcp}" for host, http, tcp in value)


def _parse_host_map(text: str) -> dict[str, str]:
    mapping = {}
    for item in _split_list(text):
        name, sep, address = item.partition("=")
        if not sep:
            raise ValueError(f"{item!r} is not name=address")
        host = _check_host(name.strip())
        try:
            mapping[host] = str(ipaddress.ip_address(address.strip()))
        except ValueError:
            raise ValueError(f"{address.strip()!r} is not an IP address") from None
    return mapping


def _format_host_map(value: Mapping[str, str]) -> str:
    return ",".join(f"{name}={address}" for name, address in value.items())


def _parse_listen_host(text: str) -> str:
    if not text:
        return ""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError("not an IP address") from None


def _parse_string(text: str) -> str:
    if len(text) > 4096:
        raise ValueError("longer than 4096 characters")
    return text


def _choice(*choices: str) -> OptionType:
    def parse(text: str) -> str:
        if text.lower() not in choices:
            raise ValueError("not one of the choices")
        return text.lower()

    return OptionType("choice", " or ".join(choices), parse, choices=choices)


BOOL = OptionType("bool", "true or false", _parse_bool, lambda v: "true" if v else "false", (bool,))
PORT = OptionType(
    "port", "a port number 0-65535 (0 = any free port)", _int_parser(0, 65535), str, (int,)
)
PORT_OR_OFF = OptionType(
    "port", "a port number 1-65535, or 0 for off", _int_parser(0, 65535), str, (int,)
)
SIZE = OptionType("size", "a size like '50 GB' or '256 MB'", _parse_size, format_size, (int,))
DURATION = OptionType(
    "duration",
    "a duration like '30', '10 s', '5 min', '12 h' or '30 d'",
    _parse_duration,
    _format_duration,
    (int, float),
)
KNOWN_NODES = OptionType(
    "known nodes",
    "'genesis' or a list like 'host-a.com:14441,host-b.com:14441'",
    _parse_known_nodes,
    _format_known_nodes,
)
KNOWN_SERVERS = OptionType(
    "server list",
    "a list like 'host-a.com:80:6661,host-b.com:8084:6661'",
    _parse_known_servers,
    _format_known_servers,
)
HOST_MAP = OptionType(
    "host map",
    "a list like 'host-a.com=127.0.1.1,host-b.com=127.0.1.2'",
    _parse_host_map,
    _format_host_map,
)
LISTEN_HOST = OptionType("address", "an IP address, or empty for all addresses", _parse_listen_host)
STRING = OptionType("string", "text on one line", _parse_string)
HOST = OptionType(
    "host", "a host name or IP address, or empty", lambda t: _check_host(t) if t else ""
)


def _parse_role(text: str) -> str:
    if text and text.lower() not in ROLES:
        raise ValueError("not a role")
    return text.lower()


ROLE = OptionType(
    "role",
    "one of " + ", ".join(ROLES) + ", or empty (by the instance's name)",
    _parse_role,
    choices=ROLES,
)


INT = OptionType("int", "a whole number", _int_parser(-(2**63), 2**63 - 1), str, (int,))


def choice_of_ints(*choices: int) -> OptionType:
    def parse(text: str) -> int:
        value = _int_parser(min(choices), max(choices))(text)
        if value not in choices:
            raise ValueError("not one of the choices")
        return value

    expected = "one of " + ", ".join(map(str, choices))
    return OptionType("int", expected, parse, str, (int,), choices=choices)


# ---------------------------------------------------------------------------------------------
# The registry


@dataclass(frozen=True)
class Option:
    """One setting. ``low``/``high`` are the bounds the service using it accepts (seconds,
    bytes or a count): `set` and `check-config` refuse what the service would, before it runs."""

    key: str
    type: OptionType
    default: Any
    help: str
    live: bool = False  # True: a running node applies a change on reload, no restart needed
    low: float | None = None
    high: float | None = None

    @property
    def expected(self) -> str:
        if self.low is None or self.high is None:
            return self.type.expected
        return f"{self.type.expected} from {self.format(self.low)} to {self.format(self.high)}"

    def parse(self, raw: Any) -> Any:
        try:
            value = self.type.parse(raw)
            if (
                self.low is not None
                and self.high is not None
                and not self.low <= value <= self.high
            ):
                raise ValueError("out of range")
        except ValueError as exc:
            shown = raw if isinstance(raw, str) else json.dumps(raw)
            if len(shown) > MAX_SHOWN:
                shown = shown[:MAX_SHOWN] + "…"
            raise BadValue(
                f"{self.key}: {shown!r} is not valid: {exc} (expected {self.expected})"
            ) from None
        return value

    def format(self, value: Any) -> str:
        return self.type.format_value(value)


OPTIONS: dict[str, Option] = {}
MAX_SHOWN = 80  # characters of a refused value quoted in its error


def _declare(
    key: str,
    type_: OptionType,
    default: Any,
    help_: str,
    live: bool = False,
    bounds: tuple[float, float] | None = None,
) -> None:
    low, high = bounds if bounds is not None else (None, None)
    OPTIONS[key] = Option(key, type_, default, help_, live, low, high)


def _service(name: str, default: bool, help_: str) -> None:
    _declare(f"services/{name}/enabled", BOOL, default, help_)


_service("entangled-dht", True, "Kademlia DHT over UDP: finds nodes and stores signed records.")
_service("identity-server", False, "Serve identities over HTTP and receive them over TCP.")
_service("identity-propagate", True, "Publish this node's identity to the known identity servers.")
_service("p2p", True, "Encrypted, authenticated TCP sessions with other nodes.")
_service("nodes-lookup", True, "Find routers and suppliers through the DHT.")
_service("proxy-server", False, "Relay traffic for nodes that cannot accept connections (router).")
_service(
    "proxy-transport", True, "Reach the network through a proxy router (for nodes behind NAT)."
)
_service("supplier", False, "Donate disk space to customers.")
_service("customer", True, "Store this node's files on suppliers.")
_service("private-messages", False, "BitDust's private messages (not provided by this node).")

_declare("services/entangled-dht/udp-port", PORT, 14441, "UDP port of the DHT.")
_declare(
    "services/entangled-dht/known-nodes",
    KNOWN_NODES,
    (),
    "'genesis' to start a new DHT, or the nodes to join through.",
)
_declare(
    "services/entangled-dht/bucket-size",
    INT,
    8,
    "Kademlia k: contacts per bucket and replicas per record (BitDust's file uses 4).",
    bounds=(2, 20),  # a NODES reply of k contacts must fit one datagram
)
_declare("services/entangled-dht/parallel-calls", INT, 3, "Kademlia alpha.", bounds=(1, 16))
_declare(
    "services/entangled-dht/rpc-timeout",
    DURATION,
    5.0,
    "Wait this long for a DHT reply.",
    bounds=(0.1, 300),
)
_declare(
    "services/entangled-dht/refresh-timeout",
    DURATION,
    600.0,
    "Refresh a bucket not used for this long.",
    bounds=(10, 86400),
)
_declare(
    "services/entangled-dht/default-age",
    DURATION,
    43200.0,
    "Default lifetime of a record (at most max-age).",
    bounds=(60, 30 * 86400),
)
_declare(
    "services/entangled-dht/max-age",
    DURATION,
    86400.0,
    "Longest lifetime of a record.",
    bounds=(60, 30 * 86400),
)

_declare("services/identity-server/host", HOST, "", "Public host name of this identity server.")
_declare("services/identity-server/web-port", PORT, 8084, "HTTP port serving identity files.")
_declare("services/identity-server/tcp-port", PORT, 6661, "TCP port receiving identity files.")
_declare(
    "services/identity-server/expire-after",
    DURATION,
    90 * 86400.0,
    "Remove identities not updated for this long.",
    bounds=(3600, 3650 * 86400),
)
_declare(
    "services/identity-propagate/known-servers",
    KNOWN_SERVERS,
    (),
    "Identity servers of this network: host:http_port:tcp_port,...",
)
_declare(
    "services/identity-propagate/min-servers",
    INT,
    1,
    "An identity is only created when this many servers accept it (at most max-servers).",
    bounds=(1, 6),
)
_declare(
    "services/identity-propagate/max-servers",
    INT,
    5,
    "An identity lists at most this many servers as sources.",
    bounds=(1, 6),
)

_declare(
    "services/proxy-server/routes-limit",
    INT,
    20,
    "Most nodes routed at once.",
    bounds=(0, 100000),
)
_declare("services/proxy-transport/preferred-routers", STRING, "", "Routers to try first.")
_declare("services/supplier/donated-space", SIZE, 8 * 1024**3, "Disk space donated to customers.")
_declare(
    "services/customer/suppliers-number",
    choice_of_ints(2, 4, 7, 13, 18, 26, 64),
    2,
    "How many suppliers hold this node's data.",
)
_declare("services/customer/needed-space", SIZE, 256 * 1024**2, "Space to rent from suppliers.")
_declare(
    "services/customer/data-fragments",
    INT,
    0,
    "k of the k-of-N erasure code: any k of the N suppliers restore a chunk, any N - k may "
    "vanish (0: half of suppliers-number, BitDust's 2x overhead).",
    bounds=(0, 64),
)
_declare(
    "services/customer/audit-interval",
    DURATION,
    3600.0,
    "Challenge every supplier for a sample of its fragments this often.",
    bounds=(1, 30 * 86400),
)
_declare(
    "services/customer/audit-sample",
    INT,
    4,
    "Fragments challenged per supplier and audit.",
    bounds=(1, 1000),
)
_declare(
    "services/customer/audit-failures-limit",
    INT,
    2,
    "A supplier failing this many audits in a row is replaced.",
    bounds=(1, 100),
)
_declare(
    "services/customer/supplier-away-limit",
    DURATION,
    3600.0,
    "A supplier unreachable for longer than this is replaced and its fragments rebuilt.",
    bounds=(1, 365 * 86400),
)
_declare(
    "services/customer/repair-threshold",
    INT,
    0,
    "Rebuild a chunk once only this many of its fragments are healthy (0: half-way between "
    "data-fragments and suppliers-number).",
    bounds=(0, 64),
)
_declare(
    "services/customer/versions-kept",
    INT,
    3,
    "Versions of each remote path kept; older ones are pruned and their chunks freed.",
    bounds=(1, 10000),
)
_declare("services/tcp-connections/tcp-port", PORT, 7771, "TCP port for p2p sessions and routing.")

_declare(
    "services/network/listen-host",
    LISTEN_HOST,
    "",
    "Address that public services bind to (empty: all).",
)
_declare(
    "services/network/host-map",
    HOST_MAP,
    {},
    "Host names resolved before DNS: host-a.com=127.0.1.1,...",
)
_declare(
    "services/network/accept-legacy-identities",
    BOOL,
    False,
    "Accept identities signed with BitDust's legacy SHA-1 scheme.",
    live=True,
)

_declare(
    "node/role",
    ROLE,
    "",
    "The role this instance runs (its preset of services and ports); empty: the instance's "
    "name when that is a role's, else default. Lets 'supplier2' run as a second supplier.",
)
_declare("interface/api/rest-http-port", PORT, 8180, "Port of the local REST API.")
_declare(
    "interface/api/auth-secret-enabled", BOOL, True, "Require the API secret on every request."
)
_declare(
    "interface/metrics/port",
    PORT_OR_OFF,
    0,
    "Port of a listener serving only GET /metrics, without the secret, on the API's loopback "
    "host, for a Prometheus server (0: off; /metrics on the API needs the secret).",
)
_declare(
    "logs/level",
    _choice("debug", "info", "warning", "error"),
    "info",
    "Least severe log level written.",
    live=True,
)


# Pairs (a, b) where a's value must not exceed b's, whichever layers set them.
NOT_ABOVE = (
    ("services/entangled-dht/default-age", "services/entangled-dht/max-age"),
    ("services/identity-propagate/min-servers", "services/identity-propagate/max-servers"),
)


def get_option(key: str) -> Option:
    """The option for ``key``, or an error that suggests the nearest keys."""
    try:
        return OPTIONS[key]
    except KeyError:
        import difflib  # only for this message: a running node need not load it

        near = difflib.get_close_matches(key, OPTIONS, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(near)}?" if near else "; see 'bitdust set list'"
        raise UnknownKey(f"unknown setting {key!r}{hint}") from None


def api_host(listen_host: str) -> str:
    """The REST API stays on loopback: the listen host when that is one, else 127.0.0.1."""
    if listen_host and ipaddress.ip_address(listen_host).is_loopback:
        return listen_host
    return "127.0.0.1"


def service_key(service: str) -> str:
    return f"services/{service}/enabled"


# ---------------------------------------------------------------------------------------------
# Where things live


@dataclass(frozen=True)
class Paths:
    """The directories of one instance; systemd's own variables win when set."""

    instance: str
    config_dir: Path
    state_dir: Path
    runtime_dir: Path

    @classmethod
    def for_instance(cls, instance: str, env: Mapping[str, str] | None = None) -> Paths:
        env = os.environ if env is None else env
        check_instance_name(instance)
        config_dir = Path(env.get("BITDUST_CONFIG_DIR") or "/etc/bitdust")
        state = env.get("STATE_DIRECTORY", "").split(":")[0]
        runtime = env.get("RUNTIME_DIRECTORY", "").split(":")[0]
        state_dir = (
            Path(state)
            if state
            else Path(env.get("BITDUST_STATE_DIR") or "/var/lib/bitdust") / instance
        )
        runtime_dir = (
            Path(runtime)
            if runtime
            else Path(env.get("BITDUST_RUNTIME_DIR") or "/run/bitdust") / instance
        )
        return cls(instance, config_dir, state_dir, runtime_dir)

    @property
    def conffile(self) -> Path:
        return self.config_dir / f"{self.instance}.conf"

    @property
    def network_json(self) -> Path:
        return self.config_dir / "network.json"

    @property
    def api_settings(self) -> Path:
        return self.state_dir / "api-settings.conf"

    @property
    def pidfile(self) -> Path:
        return self.runtime_dir / "bitdust.pid"

    @property
    def api_secret(self) -> Path:
        return self.runtime_dir / "api.secret"

    @property
    def api_socket(self) -> Path:
        return self.runtime_dir / "api.sock"

    def make_dirs(self) -> None:
        """Create the state (0750) and runtime (0755) dirs, or say why they cannot be used."""
        for directory, mode in ((self.state_dir, 0o750), (self.runtime_dir, 0o755)):
            try:
                directory.mkdir(parents=True, exist_ok=True, mode=mode)
            except PermissionError:
                raise ConfigError(
                    f"cannot create {directory}: permission denied (use sudo)"
                ) from None
            if not os.access(directory, os.W_OK):
                raise ConfigError(f"cannot write to {directory}: permission denied (use sudo)")


def check_instance_name(instance: str) -> None:
    if not _INSTANCE_RE.match(instance):
        raise ConfigError(
            f"instance name {instance!r} is not valid (lower-case letters, digits, '.', '_', '-')"
        )


ROLE_KEY = "node/role"


def role_of(instance: str, setting: Setting | None = None) -> tuple[str, str]:
    """The role an instance runs and why: ``node/role`` when a layer sets it, else the
    instance's name when that is a role's, else the all-in-one default."""
    if setting is not None and setting.value:
        return setting.value, f"{ROLE_KEY} = {setting.value} in {setting.layer}"
    if instance in ROLES:
        return instance, "the instance's name"
    return "default", (
        f"the instance's name {instance!r} is not a role's and {ROLE_KEY} is not set"
    )


def roles_dir() -> Path:
    """Installed presets (/usr/share/bitdust/roles) win over the copies inside the program."""
    override = os.environ.get("BITDUST_ROLES_DIR")
    if override:
        return Path(override)
    installed = Path("/usr/share/bitdust/roles")
    if installed.is_dir():
        return installed
    return Path(__file__).parent / "roles"


# ---------------------------------------------------------------------------------------------
# Reading layers


@dataclass(frozen=True)
class Setting:
    value: Any
    layer: str


@dataclass
class Config:
    """Every option's value and the layer it came from; the role the instance runs and why."""

    paths: Paths
    settings: dict[str, Setting] = field(default_factory=dict)
    role: str = "default"
    role_reason: str = ""

    def __getitem__(self, key: str) -> Any:
        return self.settings[key].value

    def layer(self, key: str) -> str:
        return self.settings[key].layer

    def enabled(self, service: str) -> bool:
        return bool(self[service_key(service)])


def parse_conf_lines(text: str, source: str) -> tuple[list[tuple[int, str, str]], list[str]]:
    """``key = value`` lines as (line number, key, raw value), and the lines that are neither
    that nor a comment."""
    entries, errors = [], []
    for number, line in enumerate(text.split("\n"), start=1):  # "\n" only, never U+2028
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        if not sep:
            errors.append(f"{source}:{number}: expected 'key = value', got {stripped[:60]!r}")
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        entries.append((number, key.strip(), value))
    return entries, errors


def _read_text(path: Path) -> str | None:
    """The file's text; None when there is no such file (a layer nobody wrote)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    if stat.S_ISDIR(mode):
        raise ConfigError(f"{path} is a directory, not a file")
    if not stat.S_ISREG(mode):  # reading a FIFO would wait for a writer that may never come
        raise ConfigError(f"{path} is not a regular file")
    data = read_bounded(path, MAX_CONFFILE_BYTES, what=str(path), error=ConfigError)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None


def read_conffile(path: Path, text: str | None = None) -> dict[str, Any]:
    """Parsed values of a conffile (of ``text`` instead of the file's, when given); every bad
    line is reported with its file and line."""
    if text is None:
        text = _read_text(path)
    if text is None:
        return {}
    values: dict[str, Any] = {}
    entries, errors = parse_conf_lines(text, str(path))
    for number, key, raw in entries:
        try:
            values[key] = get_option(key).parse(raw)
        except ConfigError as exc:
            errors.append(f"{path}:{number}: {exc}")
    if errors:
        raise ConfigError("\n".join(errors))
    return values


def network_json_settings(data: Any, source: str) -> dict[str, Any]:
    """Map BitDust's default_network.json shape onto settings keys."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a JSON object")
    values: dict[str, Any] = {}
    dht = data.get("service_entangled_dht") or {}
    propagate = data.get("service_identity_propagate") or {}
    proxy = data.get("service_proxy_transport") or {}
    if not all(isinstance(section, dict) for section in (dht, propagate, proxy)):
        raise ConfigError(f"{source}: service sections must be JSON objects")
    numeric = {
        "bucket_size": "services/entangled-dht/bucket-size",
        "parallel_calls": "services/entangled-dht/parallel-calls",
        "rpc_timeout": "services/entangled-dht/rpc-timeout",
        "refresh_timeout": "services/entangled-dht/refresh-timeout",
        "default_age": "services/entangled-dht/default-age",
        "max_age": "services/entangled-dht/max-age",
    }
    try:
        for name, key in numeric.items():
            if name in dht:
                values[key] = OPTIONS[key].parse(dht[name])
        if "known_nodes" in dht:
            nodes = dht["known_nodes"]
            if not isinstance(nodes, list):
                raise BadValue("service_entangled_dht.known_nodes: expected a list")
            text = ",".join(f"{_field(n, 'host')}:{_field(n, 'udp_port')}" for n in nodes)
            values["services/entangled-dht/known-nodes"] = OPTIONS[
                "services/entangled-dht/known-nodes"
            ].parse(text)
        if "known_servers" in propagate:
            servers = propagate["known_servers"]
            if not isinstance(servers, list):
                raise BadValue("service_identity_propagate.known_servers: expected a list")
            text = ",".join(
                f"{_field(s, 'host')}:{_field(s, 'http_port')}:{_field(s, 'tcp_port')}"
                for s in servers
            )
            values["services/identity-propagate/known-servers"] = OPTIONS[
                "services/identity-propagate/known-servers"
            ].parse(text)
        if "preferred_routers" in proxy:  # the network's routers, as the setting of that name
            routers = proxy["preferred_routers"]
            if not isinstance(routers, list):
                raise BadValue("service_proxy_transport.preferred_routers: expected a list")
            text = ",".join(_field(router, "idurl") for router in routers)
            values["services/proxy-transport/preferred-routers"] = OPTIONS[
                "services/proxy-transport/preferred-routers"
            ].parse(text)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return values


def _field(entry: Any, name: str) -> str:
    """One field of a host entry, as text for the option's own parser; a ',' would make one
    entry two (``"host": "a.com:1,evil.com"``), so it is refused here."""
    if not isinstance(entry, dict) or name not in entry:
        raise BadValue(f"entry {json.dumps(entry)[:80]} has no {name!r}")
    value = entry[name]
    if isinstance(value, bool) or not isinstance(value, str | int) or "," in str(value):
        raise BadValue(f"entry {json.dumps(entry)[:80]}: {name!r} is not a single value (no ',')")
    return str(value)


def read_network_json(path: Path) -> dict[str, Any]:
    text = _read_text(path)
    if text is None:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from None
    return network_json_settings(data, str(path))


def env_var(key: str) -> str:
    return "BITDUST_" + re.sub(r"[^A-Z0-9]", "_", key.upper())


def load_config(
    paths: Paths,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, str] | None = None,
    edit: ConffileEdit | None = None,
) -> Config:
    """Read every layer; all problems are collected and raised together.

    With ``edit``, its file is read as the edit would leave it: the configuration a change would
    make, checked before the change is written.
    """
    env = os.environ if env is None else env
    config = Config(paths)
    for key, option in OPTIONS.items():
        config.settings[key] = Setting(option.default, "default")
    errors: list[str] = []

    def read(layer: str, reader: Callable[[], dict[str, Any]]) -> tuple[str, dict[str, Any]]:
        try:
            return layer, reader()
        except ConfigError as exc:
            errors.append(str(exc))
            return layer, {}

    layers = [read(str(paths.network_json), lambda: read_network_json(paths.network_json))]
    for path in (paths.conffile, paths.api_settings):
        text = edit.text if edit is not None and edit.path == path else None
        layers.append(read(str(path), lambda path=path, text=text: read_conffile(path, text)))
    env_values = {}
    for key, option in OPTIONS.items():
        if env_var(key) in env:
            env_values[key] = (option, env[env_var(key)])
    layers.append(read(ENVIRONMENT, lambda: _parse_pairs(env_values, ENVIRONMENT)))
    flag_values = {key: (get_option(key), raw) for key, raw in (flags or {}).items()}
    layers.append(read(COMMAND_LINE, lambda: _parse_pairs(flag_values, COMMAND_LINE)))

    # The role picks the preset, the layer just above the defaults: it is read first.
    role_setting = None
    for layer, values in layers:
        if ROLE_KEY in values:
            role_setting = Setting(values[ROLE_KEY], layer)
    config.role, config.role_reason = role_of(paths.instance, role_setting)
    role_file = roles_dir() / f"{config.role}.conf"
    if role_file.is_file():
        layers.insert(0, read(f"role {config.role}", lambda: read_conffile(role_file)))
    else:
        errors.append(f"the preset of role {config.role!r} is missing: {role_file} (reinstall)")
    for layer, values in layers:
        for key, value in values.items():
            config.settings[key] = Setting(value, layer)
    if not errors:
        errors = _order_problems(config)
    if errors:
        raise ConfigError("\n".join(errors))
    return config


def _order_problems(config: Config) -> list[str]:
    def shown(key: str) -> str:
        return f"{key} = {OPTIONS[key].format(config[key])} ({config.layer(key)})"

    return [
        f"{shown(low)} is above {shown(high)}; lower the first or raise the second"
        for low, high in NOT_ABOVE
        if config[low] > config[high]
    ]


def _parse_pairs(pairs: Mapping[str, tuple[Option, str]], source: str) -> dict[str, Any]:
    values, errors = {}, []
    for key, (option, raw) in pairs.items():
        try:
            values[key] = option.parse(raw)
        except ConfigError as exc:
            errors.append(f"{source}: {exc}")
    if errors:
        raise ConfigError("\n".join(errors))
    return values


# ---------------------------------------------------------------------------------------------
# Editing a conffile


@dataclass(frozen=True)
class ConffileEdit:
    """One setting changed in a conffile's text, checked but not yet written."""

    path: Path
    key: str
    value: str  # as written
    text: str  # the whole file after the change

    def write(self) -> None:
        """Replace the file atomically (temp, fsync, rename), keeping its mode and owner."""
        _replace_keeping_owner(self.path, self.text.encode("utf-8"))


def plan_edit(path: Path, key: str, raw_value: str) -> ConffileEdit:
    """Set ``key`` in ``path``'s text, rewriting only its line (comments and order kept).

    Nothing touches the disk: the caller checks the result (e.g. with ``load_config(edit=)``)
    and then writes it, so a refused value leaves the old file byte-for-byte unchanged.
    """
    option = get_option(key)
    key = option.key
    formatted = option.format(option.parse(raw_value))
    lines = _editable_lines(path)
    new_line = f"{key} = {_quoted_if_needed(formatted)}"
    target = _find_key_line(lines, key, commented=False)
    if target is not None:
        ending = "\n" if lines[target].endswith("\n") else ""
        lines[target] = new_line + ending
    else:
        commented = _find_key_line(lines, key, commented=True)
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        position = len(lines) if commented is None else commented + 1
        lines.insert(position, new_line + "\n")
    return ConffileEdit(path, option.key, formatted, "".join(lines))


def plan_unset(path: Path, key: str) -> ConffileEdit | None:
    """Remove every ``key = ...`` line of ``path`` (comments kept), so the layer below decides;
    None when the file sets no such key. Nothing touches the disk, as with :func:`plan_edit`."""
    key = get_option(key).key
    lines = _editable_lines(path)
    kept = list(lines)
    while (index := _find_key_line(kept, key, commented=False)) is not None:
        del kept[index]
    if kept == lines:
        return None
    return ConffileEdit(path, key, "", "".join(kept))


def _editable_lines(path: Path) -> list[str]:
    """The lines of a conffile about to be edited; refused when it cannot be written, or read
    back (a broken line)."""
    _check_writable(path)
    text = _read_text(path)
    if text is None:
        return []
    broken = parse_conf_lines(text, str(path))[1]
    if broken:
        raise ConfigError("\n".join(broken))
    return _split_keeping_ends(text)


ENVIRONMENT = "environment"
COMMAND_LINE = "command line"


def check_in_force(config: Config, key: str, written_to: Path) -> None:
    """Refuse (:class:`Overridden`) when ``key``'s value in ``config`` does not come from
    ``written_to``: a value written there would not be the one in force."""
    layer = config.layer(key)
    if layer == str(written_to):
        return
    value = OPTIONS[key].format(config[key])
    raise Overridden(
        f"{key} not changed: {layer} sets it ({value!r}), and it overrides {written_to}; "
        f"{how_to_clear(config.paths, key, layer)}"
    )


def how_to_clear(paths: Paths, key: str, layer: str) -> str:
    """What the operator does to take ``key`` out of ``layer``."""
    instance = "" if paths.instance == DEFAULT_INSTANCE else f"--instance {paths.instance} "
    if layer in (str(paths.conffile), str(paths.api_settings)):
        return f"clear it there with 'bitdust {instance}unset {key}'"
    if layer == ENVIRONMENT:
        return (
            f"remove {env_var(key)} from the environment (for the systemd unit: "
            f"'systemctl edit bitdust@{paths.instance}')"
        )
    if layer == COMMAND_LINE:
        return f"restart the node without '-o {key}=...'"
    return f"edit {layer}"


def _check_writable(path: Path) -> None:
    """Say why ``path`` cannot be replaced: a missing directory, or permissions (sudo)."""
    if not path.parent.is_dir():
        raise ConfigError(
            f"cannot write {path}: the directory {path.parent} does not exist (create it, or "
            "point BITDUST_CONFIG_DIR at the configuration directory)"
        )
    for target in (path, path.parent) if path.exists() else (path.parent,):
        if not os.access(target, os.W_OK):
            raise ConfigError(f"cannot write {path}: permission denied (run the command with sudo)")


def _quoted_if_needed(value: str) -> str:
    """``value`` as a conffile line holds it: the reader takes one pair of quotes off, so a value
    that starts and ends with the same quote is written inside another pair."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return f'"{value}"'
    return value


def edit_conffile(path: Path, key: str, raw_value: str) -> str:
    """Set ``key`` in ``path`` atomically; returns the value as written."""
    edit = plan_edit(path, key, raw_value)
    edit.write()
    return edit.value


def _split_keeping_ends(text: str) -> list[str]:
    """Lines split on "\n" only, as :func:`parse_conf_lines` reads them."""
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    return lines if lines[-1] else lines[:-1]


def _find_key_line(lines: list[str], key: str, commented: bool) -> int | None:
    pattern = re.compile(r"^\s*#\s*" if commented else r"^\s*")
    found = None
    for index, line in enumerate(lines):
        match = pattern.match(line)
        if match is None:
            continue
        rest = line[match.end() :]
        name, sep, _ = rest.partition("=")
        if sep and name.strip() == key:
            found = index  # the last one wins, as when reading
    return found


def _replace_keeping_owner(path: Path, data: bytes) -> None:
    """Write ``path`` atomically with the mode and owner the old file had."""
    try:
        old = path.stat()
    except FileNotFoundError:
        old = None
    atomic_write(
        path, data, mode=old.st_mode & 0o7777 if old else 0o644, overwrite=True, error=ConfigError
    )
    if old is not None and (old.st_uid, old.st_gid) != (os.getuid(), os.getgid()):
        with contextlib.suppress(PermissionError):
            os.chown(path, old.st_uid, old.st_gid)
