"""`bitdust`: the command line. A thin client of the REST API, except for what must not need a
running node: `run`, `daemon`, `stop`, `check-config`, and `set`/`get`, which read and edit the
instance's conffile themselves (the daemon cannot write /etc under ProtectSystem=strict).

Every failure is printed as one line starting with ``bitdust:`` and a non-zero exit; never a
traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from bitdust import __version__
from bitdust.api.client import TIMEOUT, ApiClient, ClientError
from bitdust.config import (
    COMMAND_LINE,
    DEFAULT_INSTANCE,
    ENVIRONMENT,
    OPTIONS,
    ROLE_KEY,
    ROLES,
    ConffileEdit,
    Config,
    ConfigError,
    Overridden,
    Paths,
    api_host,
    check_in_force,
    get_option,
    how_to_clear,
    load_config,
    plan_edit,
    plan_unset,
)
from bitdust.errors import ExitStatus
from bitdust.files import atomic_write, read_bounded
from bitdust.identity.errors import IdentityError
from bitdust.keysize import (
    ALLOWED_KEY_BITS,
    DEFAULT_KEY_BITS,
    KeyRefused,
    allowed_key_sizes_text,
    check_key_size,
)
from bitdust.malloc import with_tunables
from bitdust.node.checks import SYSTEMD_UNIT_DIR, pid_of_running, systemd_enabled_instances
from bitdust.node.service import StatusSection

DAEMON_TIMEOUT = 90.0
MAX_PASSPHRASE_BYTES = 4096
STOP_TIMEOUT = 15.0
_DECIMAL_UNITS = (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3))
JSON_HELP = "print data as JSON (for scripts) instead of text"
#: shtab's hook on a settings-key argument: the shell function (packaging/completion.py writes
#: it) that offers every key of the registry
SETTING_KEYS_COMPLETION = {"bash": "_bitdust_setting_keys"}


class CliError(Exception):
    """A failure to report on one line; ``code`` is the exit status."""

    def __init__(self, message: str, code: ExitStatus = ExitStatus.FAILURE) -> None:
        super().__init__(message)
        self.code = code


class UsageError(CliError):
    """Bad arguments (a file given that cannot be used, a malformed flag): status 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ExitStatus.CONFIG)


# ---------------------------------------------------------------------------------------------
# Helpers


def parse_flags(pairs: list[str] | None) -> dict[str, str]:
    flags = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"-o {pair!r}: expected KEY=VALUE")
        flags[get_option(key.strip()).key] = value
    return flags


def client_for(paths: Paths, timeout: float = TIMEOUT) -> ApiClient:
    """A client pointed at the instance's API; the port comes from its configuration."""
    try:
        config = load_config(paths)
        port = config["interface/api/rest-http-port"]
        host = config["services/network/listen-host"]
    except ConfigError:
        port, host = OPTIONS["interface/api/rest-http-port"].default, ""
    return ApiClient(paths, api_host(host), port, start_command(paths), timeout)


def start_command(paths: Paths, unit_dir: Path = SYSTEMD_UNIT_DIR) -> str:
    """How this instance is started: through systemd when its unit is enabled, else with
    `bitdust daemon`."""
    if paths.instance in systemd_enabled_instances(unit_dir):
        return f"sudo systemctl start bitdust@{paths.instance}"
    return f"bitdust --instance {paths.instance} daemon"


def running_pid(paths: Paths) -> tuple[int, str] | None:
    """(pid, manager) of the running node, manager being 'systemd' or 'bitdust'."""
    pid = pid_of_running(paths.pidfile)
    if pid is None:
        return None
    try:
        fields = paths.pidfile.read_text().split()
    except OSError:
        fields = []
    return pid, fields[1] if len(fields) > 1 else "bitdust"


def own_command() -> list[str]:
    """How to start this same program again (the frozen binary, or the module)."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    return [sys.executable, "-m", "bitdust"]


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=False))


def show(args: argparse.Namespace, data: Any, human: Callable[[Any], str | Iterator[str]]) -> None:
    """Print a command's data: as JSON with the global ``--json``, else as ``human(data)``.
    Rows that come page by page (an iterator) are printed as ``human`` yields their lines, so
    that a long listing starts at once; JSON lists them whole."""
    if args.json:
        print_json(list(data) if isinstance(data, Iterator) else data)
        return
    text = human(data)
    for line in [text] if isinstance(text, str) else text:
        print(line)


def as_text(data: Any, indent: str = "") -> str:
    """Nested data as indented ``name: value`` lines and ``- item`` lists, for a person."""
    lines = []
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, dict | list) and value:
                lines += [f"{indent}{key}:", as_text(value, indent + "  ")]
            else:
                lines.append(f"{indent}{key}: {_scalar_text(value)}")
    elif isinstance(data, list):
        for item in data:
            nested = isinstance(item, dict | list) and item
            text = as_text(item, indent + "  ").lstrip() if nested else _scalar_text(item)
            lines.append(f"{indent}- {text}")
    else:
        lines.append(indent + _scalar_text(data))
    return "\n".join(lines)


def size_text(size: float) -> str:
    """``10.0 MB``: decimal units, as transfer rates are given."""
    for unit, factor in _DECIMAL_UNITS:
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{size:.0f} B"


def _scalar_text(value: Any) -> str:
    if value is None or value in ([], {}):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


# ---------------------------------------------------------------------------------------------
# Lifecycle


def run_options(args: argparse.Namespace) -> list[str]:
    """The ``-o KEY=VALUE`` options of a run, ``--role`` being one of them."""
    role = [f"{ROLE_KEY}={args.role}"] if args.role else []
    return [*(args.option or []), *role]


def cmd_run(args: argparse.Namespace, paths: Paths) -> int:
    import mimetypes

    # aiohttp.web builds a MimeTypes as it is imported, and the first one parses the system's
    # mime.types into module globals: 0.4 MiB held by every node, which never types a file by
    # its name. Marked as done, mimetypes parses them when first asked, if ever.
    mimetypes.inited = True
    with without_ca_certificates():
        from bitdust.daemon import run

    return run(paths, parse_flags(run_options(args)))


#: the environment variables OpenSSL reads for its default CA file and directory
_CA_LOCATIONS = ("SSL_CERT_FILE", "SSL_CERT_DIR")


@contextlib.contextmanager
def without_ca_certificates() -> Iterator[None]:
    """While in it, OpenSSL finds no CA certificates. aiohttp makes two TLS client contexts as
    it is imported, each loading the system's CA store: 2-3 MiB held by every node, which speaks
    plain HTTP only (IDURLs are http://, the API is on loopback). Those two contexts verify
    nothing, so aiohttp's default HTTPS would fail in a node; contexts made afterwards load the
    store as usual."""
    saved = {name: os.environ.get(name) for name in _CA_LOCATIONS}
    os.environ.update(dict.fromkeys(_CA_LOCATIONS, os.devnull))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def cmd_check_config(args: argparse.Namespace, paths: Paths) -> int:
    from bitdust.daemon import StartError, load_checked_config
    from bitdust.node.checks import active_services

    try:
        config = load_checked_config(paths, parse_flags(run_options(args)))
    except StartError as exc:
        for line in str(exc).splitlines():
            print(f"bitdust: {line}", file=sys.stderr)
        return ExitStatus.CONFIG
    data = {
        "instance": paths.instance,
        "valid": True,
        "role": config.role,
        "role_reason": config.role_reason,
        "services": sorted(active_services(config)),
    }
    show(args, data, _check_text)
    return 0


def _check_text(data: dict[str, Any]) -> str:
    return (
        f"configuration of instance {data['instance']!r} is valid\n"
        f"role: {data['role']} ({data['role_reason']})\n"
        f"services: {', '.join(data['services']) or 'none'}"
    )


def start_daemon(paths: Paths, option: list[str] | None, timeout: float) -> int:
    """Start `bitdust run` in the background and wait for its READY=1 (or its failure)."""
    parse_flags(option)  # refuse bad flags here, not in the log
    running = running_pid(paths)
    if running:
        raise CliError(f"instance {paths.instance!r} is already running (pid {running[0]})")
    paths.make_dirs()
    log_path = paths.state_dir / "bitdust.log"
    with tempfile.TemporaryDirectory(prefix="bitdust-notify-") as temp:
        notify_path = os.path.join(temp, "notify")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.bind(notify_path)
        listener.settimeout(0.2)
        command = [*own_command(), "--instance", paths.instance, "run"]
        for pair in option or []:
            command += ["-o", pair]
        env = with_tunables(dict(os.environ, NOTIFY_SOCKET=notify_path))
        if getattr(sys, "frozen", False):
            # A fresh onefile unpack for the node: ours is deleted when this command exits.
            env["PYINSTALLER_RESET_ENVIRONMENT"] = "1"
        with open(log_path, "ab") as log:
            offset, inode = log.tell(), os.fstat(log.fileno()).st_ino
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                message = listener.recv(4096).decode("utf-8", "replace")
            except TimeoutError:
                message = ""
            if "READY=1" in message.splitlines():
                print(
                    f"bitdust: instance {paths.instance!r} started (pid {process.pid}); "
                    f"log: {log_path}"
                )
                return 0
            if process.poll() is not None:
                with open(log_path, "rb") as log:
                    # the node rotates a full log at its first line: then all of it is this start's
                    if os.fstat(log.fileno()).st_ino == inode:
                        log.seek(offset)
                    tail = log.read().decode("utf-8", "replace").strip().splitlines()[-15:]
                for line in tail:
                    print(line, file=sys.stderr)
                raise CliError(
                    f"instance {paths.instance!r} failed to start (exit {process.returncode}); "
                    f"log: {log_path}",
                    _passed_through(process.returncode),
                )
        raise CliError(
            f"instance {paths.instance!r} did not become ready within {timeout:.0f} s "
            f"(pid {process.pid} still starting); log: {log_path}"
        )


def _passed_through(returncode: int) -> ExitStatus:
    """The node's own status when it says a restart cannot help (configuration, a kept file of a
    newer format), so scripts tell those apart from a failure worth retrying."""
    if returncode in (ExitStatus.CONFIG, ExitStatus.DATA_FORMAT):
        return ExitStatus(returncode)
    return ExitStatus.FAILURE


def cmd_daemon(args: argparse.Namespace, paths: Paths) -> int:
    return start_daemon(paths, run_options(args), args.timeout)


def _systemctl(action: str, paths: Paths) -> int:
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        raise CliError("this instance was started by systemd, but systemctl is not available")
    return subprocess.call([systemctl, action, f"bitdust@{paths.instance}.service"])


def stop_node(paths: Paths) -> bool:
    """Stop the running node; False when it was not running."""
    running = running_pid(paths)
    if running is None:
        return False
    pid, manager = running
    if manager == "systemd":
        if _systemctl("stop", paths) != 0:
            raise CliError(f"systemctl stop bitdust@{paths.instance} failed")
        return True
    try:
        os.kill(pid, signal.SIGTERM)
    except PermissionError:
        raise CliError(f"cannot stop pid {pid}: permission denied (use sudo)") from None
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        if pid_of_running(paths.pidfile) is None:
            return True
        time.sleep(0.05)
    raise CliError(f"instance {paths.instance!r} (pid {pid}) did not stop in {STOP_TIMEOUT:.0f} s")


def cmd_stop(args: argparse.Namespace, paths: Paths) -> int:
    if stop_node(paths):
        print(f"bitdust: instance {paths.instance!r} stopped")
    else:
        print(f"bitdust: instance {paths.instance!r} is not running")
    return 0


def cmd_restart(args: argparse.Namespace, paths: Paths) -> int:
    running = running_pid(paths)
    if running and running[1] == "systemd":
        code = _systemctl("restart", paths)
        if code != 0:
            raise CliError(f"systemctl restart bitdust@{paths.instance} failed")
        return 0
    stop_node(paths)
    return start_daemon(paths, run_options(args), args.timeout)


def cmd_version(args: argparse.Namespace, paths: Paths) -> int:
    show(args, {"version": __version__}, lambda data: f"bitdust {data['version']}")
    return 0


# ---------------------------------------------------------------------------------------------
# Settings


def _config(paths: Paths) -> Config:
    return load_config(paths)


def cmd_set(args: argparse.Namespace, paths: Paths) -> int:
    if args.key == "list" and not args.value:
        return cmd_config_list(args, paths)
    if not args.value:
        return cmd_get(args, paths)
    edit = plan_edit(paths.conffile, args.key, " ".join(args.value))
    check_in_force(_config_with(paths, edit), edit.key, paths.conffile)
    node_view = _node_setting(paths, edit.key)
    if node_view is not None and node_view["layer"] in (ENVIRONMENT, COMMAND_LINE):
        raise Overridden(
            f"{edit.key} not changed: the running node takes it from its {node_view['layer']} "
            f"({node_view['value']!r}); {how_to_clear(paths, edit.key, node_view['layer'])}"
        )
    edit.write()
    change = {
        "key": edit.key,
        "value": edit.value,
        "layer": str(paths.conffile),
        "written_to": str(paths.conffile),
        "node": _apply_to_running_node(paths, edit.key, edit.value),
    }
    show(args, change, lambda data: _change_text(data, paths))
    return 0


def cmd_unset(args: argparse.Namespace, paths: Paths) -> int:
    """Take the key out of the layer its value comes from (the conffile, or the API's
    settings), so the layer below decides."""
    key = get_option(args.key).key
    config = _config(paths)
    layer = config.layer(key)
    node_view = _node_setting(paths, key)
    if node_view is not None and node_view["layer"] in (ENVIRONMENT, COMMAND_LINE):
        layer = node_view["layer"]
    if layer in (ENVIRONMENT, COMMAND_LINE):
        raise Overridden(f"{key} not changed: {layer} sets it; {how_to_clear(paths, key, layer)}")
    change: dict[str, Any] = {"key": key, "value": OPTIONS[key].format(config[key]), "layer": layer}
    if layer in (str(paths.conffile), str(paths.api_settings)):
        edit = plan_unset(Path(layer), key)
        assert edit is not None  # the layer read the key from this file
        after = _config_with(paths, edit)
        edit.write()
        change["value"] = OPTIONS[key].format(after[key])
        change["layer"] = after.layer(key)
        change["removed_from"] = layer
        change["node"] = _apply_to_running_node(paths, key, change["value"])
    show(args, change, lambda data: _change_text(data, paths))
    return 0


def _change_text(change: dict[str, Any], paths: Paths) -> str:
    """``key = value    (written to FILE)`` and what the running node did, for `set`/`unset`."""
    if "written_to" in change:
        where = f"written to {change['written_to']}"
    elif "removed_from" in change:
        where = f"removed from {change['removed_from']}; now from {change['layer']}"
    else:
        where = f"not set here: from {change['layer']}"
    lines = [f"{change['key']} = {change['value']}    ({where})"]
    node = change.get("node")
    if node is not None and node is not NodeApply.NOT_RUNNING:
        restart = f"bitdust --instance {paths.instance} restart"
        lines.append(f"bitdust: {NodeApply(node).text(restart)}")
    return "\n".join(lines)


def _config_with(paths: Paths, edit: ConffileEdit) -> Config:
    """The configuration as ``edit`` would leave it; refused with every reason otherwise."""
    try:
        return load_config(paths, edit=edit)
    except ConfigError as exc:
        raise ConfigError(f"{edit.path} not changed: with it, {exc}") from None


def _node_setting(paths: Paths, key: str) -> dict[str, Any] | None:
    """The running node's row for ``key`` (value and layer), None when it cannot be asked: its
    environment and command line are not the CLI's."""
    if running_pid(paths) is None:
        return None
    try:
        return client_for(paths).call("GET", f"config/get/{key}")
    except ClientError:
        return None


APPLY_TIMEOUT = 5.0


class NodeApply(enum.StrEnum):
    """What became of a change on the running node (``node`` in `set`/`unset --json`)."""

    NOT_RUNNING = "not running"
    APPLIED = "applied"
    RESTART_NEEDED = "restart needed"
    RELOAD_ASKED = "reload asked"  # its API could not be read to check
    NOT_SIGNALLED = "not signalled"  # SIGHUP not permitted

    def text(self, restart: str) -> str:
        return {
            NodeApply.APPLIED: "applied to the running node",
            NodeApply.RESTART_NEEDED: f"restart needed to apply: {restart}",
            NodeApply.RELOAD_ASKED: "the running node was asked to reload",
            NodeApply.NOT_SIGNALLED: f"the node is running; run 'sudo {restart}' to apply",
        }[self]


def _apply_to_running_node(paths: Paths, key: str, value: str) -> NodeApply:
    """Ask a running node to reload (SIGHUP), then check that it took ``value``; a key that
    does not apply live needs a restart."""
    running = running_pid(paths)
    if running is None:
        return NodeApply.NOT_RUNNING
    try:
        os.kill(running[0], signal.SIGHUP)
    except OSError:
        return NodeApply.NOT_SIGNALLED
    if not OPTIONS[key].live:
        return NodeApply.RESTART_NEEDED
    deadline = time.monotonic() + APPLY_TIMEOUT
    seen = None
    while time.monotonic() < deadline:
        seen = _node_setting(paths, key)
        if seen is None or seen["value"] == value:
            break
        time.sleep(0.1)
    if seen is None:
        return NodeApply.RELOAD_ASKED
    if seen["value"] != value:
        raise CliError(
            f"{key}: the running node still has {seen['value']!r} (from {seen['layer']}) after "
            f"{APPLY_TIMEOUT:.0f} s; its log says why"
        )
    return NodeApply.APPLIED


def _setting_row(config: Config, key: str) -> dict[str, str]:
    return {"key": key, "value": OPTIONS[key].format(config[key]), "layer": config.layer(key)}


def cmd_get(args: argparse.Namespace, paths: Paths) -> int:
    row = _setting_row(_config(paths), get_option(args.key).key)
    show(args, row, lambda data: data["value"])
    return 0


def cmd_config_list(args: argparse.Namespace, paths: Paths) -> int:
    config = _config(paths)
    show(args, [_setting_row(config, key) for key in sorted(OPTIONS)], _settings_text)
    return 0


def _settings_text(rows: list[dict[str, str]]) -> str:
    width = max(len(row["key"]) for row in rows)
    return "\n".join(f"{r['key']:<{width}}  {r['value']!s:<30}  [{r['layer']}]" for r in rows)


# ---------------------------------------------------------------------------------------------
# API-backed commands


def cmd_states(args: argparse.Namespace, paths: Paths) -> int:
    show(args, client_for(paths).call("GET", "state/list"), _states_text)
    return 0


def _states_text(rows: list[dict[str, Any]]) -> str:
    """BitDust's form: ``6: service_proxy_server(ON)``."""
    return "\n".join(
        f"{row['index']}: {row['name']}({row['state']})"
        + (f"  {row['reason']}" if row.get("reason") else "")
        for row in rows
    )


def cmd_service(args: argparse.Namespace, paths: Paths) -> int:
    client = client_for(paths)
    if args.name in (None, "list"):
        show(args, client.call("GET", "service/list"), _services_text)
    else:
        show(args, client.call("GET", f"service/info/{args.name}"), as_text)
    return 0


def _services_text(rows: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{row['name']:<20} {row['state']:<12}"
        + (f"  ({row['reason']})" if row.get("reason") else "")
        for row in rows
    )


def cmd_network(args: argparse.Namespace, paths: Paths) -> int:
    if args.action == "speedtest":
        return _network_speedtest(args, paths)
    if args.idurl is not None:
        raise UsageError(f"network {args.action} takes no IDURL")
    if args.action == "connected":
        show(args, client_for(paths).call("GET", "network/connected"), _sessions_text)
        return 0
    flags = {section.value: 1 for section in StatusSection if getattr(args, section.value)}
    show(args, client_for(paths).call("GET", "network/status", **flags), as_text)
    return 0


def _sessions_text(sessions: list[dict[str, Any]]) -> str:
    """One line per p2p session: peer, how it runs, where, and the bytes each way."""
    if not sessions:
        return "no sessions"
    return "\n".join(
        f"{s['idurl'] or '(peer not yet known)'}  {s['direction']} {s['route']} {s['state']}  "
        f"{s['address']}  in {size_text(s['bytes_in'])}, out {size_text(s['bytes_out'])}, "
        f"{s['streams']} streams"
        for s in sessions
    )


SPEEDTEST_SECONDS = 300


def _network_speedtest(args: argparse.Namespace, paths: Paths) -> int:
    """Stream ``--bytes`` to the peer (from it with ``--down``) and print the rate, like iperf."""
    if args.idurl is None:
        raise UsageError("network speedtest needs the peer's IDURL")
    body = {
        "idurl": args.idurl,
        "bytes": args.bytes,
        "direction": "down" if args.down else "up",
        "timeout": SPEEDTEST_SECONDS,
    }
    client = client_for(paths, timeout=SPEEDTEST_SECONDS + 10)
    show(args, client.call("POST", "network/speedtest", body), _speedtest_text)
    return 0


def _speedtest_text(report: dict[str, Any]) -> str:
    verdict = "digests match" if report["digests_match"] else "DIGESTS DIFFER"
    return (
        f"{report['bytes']} bytes {report['direction']} in {report['seconds']} s: "
        f"{report['mb_per_s']} MB/s, {verdict}"
    )


def cmd_api(args: argparse.Namespace, paths: Paths) -> int:
    """Any route by hand: `bitdust api GET network/status dht=1`, `api POST dht/value/set
    key=k value=v`. Values are JSON when they parse as JSON (numbers, true/false), else text."""
    fields: dict[str, Any] = {}
    for pair in args.fields:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"{pair!r}: expected NAME=VALUE")
        try:
            fields[name] = json.loads(raw)
        except json.JSONDecodeError:
            fields[name] = raw
    path = args.path.strip("/").removesuffix("/v1").removeprefix("v1/")
    client = client_for(paths)
    if args.method == "GET":
        print_json(client.call("GET", path, **fields))
    else:
        print_json(client.call(args.method, path, fields))
    return 0


def cmd_dht(args: argparse.Namespace, paths: Paths) -> int:
    client = client_for(paths)
    if args.action == "find" and len(args.args) <= 1:
        result = client.call("GET", "dht/node/find", node_id=args.args[0] if args.args else None)
    elif args.action == "get" and len(args.args) == 1:
        result = client.call("GET", "dht/value/get", key=args.args[0])
        if not result["values"]:
            raise CliError(f"no value under key {args.args[0]!r} in the DHT")
    elif args.action == "set" and len(args.args) == 2:
        body = {"key": args.args[0], "value": args.args[1]}
        if args.expire is not None:
            body["expire"] = args.expire
        result = client.call("POST", "dht/value/set", body)
    else:
        raise UsageError("usage: bitdust dht find [NODE_ID] | get KEY | set KEY VALUE [--expire S]")
    show(args, result, as_text)
    return 0


# ---------------------------------------------------------------------------------------------
# Storage


def cmd_file(args: argparse.Namespace, paths: Paths) -> int:
    from bitdust import cli_transfer

    client = client_for(paths)
    if args.action == "upload":
        local, remote = _positional(args, "file upload LOCAL [REMOTE]", 2)
        reporter = cli_transfer.Reporter(json_lines=args.json)
        return cli_transfer.upload(client, str(local), remote, reporter, args.reread)
    if args.action == "download":
        remote, local = _positional(args, "file download REMOTE [LOCAL] [--version N]", 2)
        reporter = cli_transfer.Reporter(json_lines=args.json)
        return cli_transfer.download(client, str(remote), local, args.version, reporter)
    if args.action == "list":
        if len(args.args) > 1:
            raise UsageError("usage: bitdust file list [PATH]")
        files = cli_transfer.listed(client, args.args[0] if args.args else None)
        show(args, files, _files_text)
    elif args.action == "info":
        (remote,) = _positional(args, "file info REMOTE")
        show(args, client.call("GET", "file/info", remote=remote), as_text)
    elif args.action == "delete":
        (remote,) = _positional(args, "file delete REMOTE")
        show(args, client.call("DELETE", "file/delete", remote=remote), as_text)
    return 0


def _files_text(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """One line per file, made as the rows come."""
    yield f"{'size':>10}  {'modified':<16}  {'versions':>8}  remote"
    for row in rows:
        modified = time.strftime("%Y-%m-%d %H:%M", time.localtime(row["mtime_ns"] / 1e9))
        yield f"{size_text(row['size']):>10}  {modified:<16}  {row['versions']:>8}  {row['remote']}"


def cmd_supplier(args: argparse.Namespace, paths: Paths) -> int:
    client = client_for(paths)
    if args.action == "list":
        if args.idurl is not None:
            raise UsageError("supplier list takes no IDURL (supplier list-dht [IDURL] does)")
        show(args, client.call("GET", "supplier/list"), _suppliers_text)
    elif args.action == "replace":
        if args.idurl is None:
            raise UsageError("usage: bitdust supplier replace POSITION|IDURL")
        which = args.idurl
        query = {"position": int(which)} if which.isdigit() else {"idurl": which}
        show(args, client.call("DELETE", "supplier/replace", **query), as_text)
    else:
        show(args, client.call("GET", "supplier/list/dht", idurl=args.idurl), as_text)
    return 0


def _suppliers_text(rows: list[dict[str, Any]]) -> str:
    return _table(rows, ("position", "state", "quota", "used", "last_audit", "failures", "idurl"))


def cmd_customer(args: argparse.Namespace, paths: Paths) -> int:
    client = client_for(paths)
    if args.action == "list":
        if args.idurl is not None:
            raise UsageError("customer list takes no IDURL")
        show(args, client.call("GET", "customer/list"), _customers_text)
    else:
        if args.idurl is None:
            raise UsageError("usage: bitdust customer reject IDURL")
        show(args, client.call("DELETE", "customer/reject", idurl=args.idurl), as_text)
    return 0


def _customers_text(rows: list[dict[str, Any]]) -> str:
    return _table(rows, ("quota", "used", "fragments", "since", "idurl"))


def _table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    """Rows as aligned columns under their names; sizes (quota, used) in decimal units."""

    def cell(row: dict[str, Any], column: str) -> str:
        value = row.get(column)
        if column in ("quota", "used") and isinstance(value, int):
            return size_text(value)
        return _scalar_text(value)

    cells = [list(columns)] + [[cell(row, column) for column in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        for line in cells
    )


def cmd_storage(args: argparse.Namespace, paths: Paths) -> int:
    """The space this node donates (supplier) and consumes (customer): whichever it serves."""
    client = client_for(paths)
    data: dict[str, Any] = {}
    reasons = []
    for name, path in (("donated", "space/donated"), ("consumed", "space/consumed")):
        try:
            data[name] = client.call("GET", path)
        except ClientError as exc:
            if exc.status != 409:  # 409: that side's service is not running here
                raise
            reasons.append(str(exc))
    if not data:
        raise CliError("; ".join(["no storage service answers", *reasons]))
    show(args, data, as_text)
    return 0


def _passphrase(args: argparse.Namespace, confirm: bool) -> str | None:
    if args.passphrase_file:
        what = f"passphrase file {args.passphrase_file}"
        data = read_bounded(Path(args.passphrase_file), MAX_PASSPHRASE_BYTES, what=what,
                            error=UsageError)  # fmt: skip
        try:
            text = data.decode("utf-8").rstrip("\n")
        except UnicodeDecodeError:
            raise UsageError(f"{what} is not UTF-8 text") from None
        if not text:
            raise UsageError(f"{what} is empty")
        return text
    if args.ask_passphrase:
        first = getpass.getpass("passphrase: ")
        if confirm and getpass.getpass("again: ") != first:
            raise UsageError("the passphrases differ")
        return first
    return None


def cmd_identity(args: argparse.Namespace, paths: Paths) -> int:
    client = client_for(paths)
    if args.action == "create":
        name, key_size = _positional(args, "identity create NAME [KEY_SIZE]", 2)
        key_size = key_size or str(args.key_size)
        try:
            bits = check_key_size(int(key_size) if key_size.isdigit() else key_size)
        except KeyRefused as exc:
            raise UsageError(str(exc)) from None
        body = {"username": name, "key_size": bits}
        show(args, _brief(client.call("POST", "identity/create", body)), as_text)
    elif args.action == "show":
        show(args, _brief(client.call("GET", "identity/get")), as_text)
    elif args.action == "backup":
        destination = Path(str(_positional(args, "identity backup FILE")[0])).absolute()
        if destination.exists():
            raise UsageError(f"refusing to overwrite {destination}: the file exists")
        result = client.call("POST", "identity/backup", {"passphrase": _passphrase(args, True)})
        atomic_write(
            destination, result["backup"].encode(), mode=0o600, overwrite=False, error=CliError
        )
        print(f"bitdust: key backup written to {destination} (mode 0600); keep it safe")
    elif args.action in ("restore", "recover"):
        source, idurl = _positional(args, "identity restore FILE [IDURL]", 2)
        from bitdust.identity.keys import MAX_KEY_FILE_SIZE

        data = read_bounded(
            Path(str(source)), MAX_KEY_FILE_SIZE, what=str(source), error=UsageError
        )
        body = {
            "private_key_source": data.decode("ascii", "replace"),
            "passphrase": _passphrase(args, False),
            "known_idurl": idurl or args.idurl,
        }
        show(args, _brief(client.call("POST", "identity/recover", body)), as_text)
    return 0


def _positional(args: argparse.Namespace, usage: str, most: int = 1) -> list[str | None]:
    """The command's words: one required, at most ``most`` in all, the missing ones None."""
    if not 1 <= len(args.args) <= most:
        raise UsageError(f"usage: bitdust {usage}")
    return [*args.args, *[None] * (most - len(args.args))]


def _brief(view: dict[str, Any]) -> dict[str, Any]:
    """The identity without its XML document, which the API result carries too."""
    return {key: value for key, value in view.items() if key != "xml"}


def cmd_nginx_config(args: argparse.Namespace, paths: Paths) -> int:
    from bitdust.identity.nginx import find_template, render_nginx_site

    config = _config(paths)
    server_name = args.server_name or config["services/identity-server/host"]
    if not server_name:
        raise UsageError("set services/identity-server/host (or pass --server-name)")
    listen_host = config["services/network/listen-host"]
    listen = args.listen or (f"{listen_host}:80" if listen_host else "80")
    upstream_host = listen_host or "127.0.0.1"
    upstream = f"{upstream_host}:{config['services/identity-server/web-port']}"
    try:
        print(render_nginx_site(find_template().read_text(), listen, server_name, upstream), end="")
    except (OSError, IdentityError) as exc:
        raise CliError(str(exc)) from None
    return 0


# ---------------------------------------------------------------------------------------------
# Parser


def _add_run_options(parser: argparse.ArgumentParser, wait: bool = False) -> None:
    parser.add_argument(
        "-o",
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="set an option for this run only (the highest layer)",
    )
    parser.add_argument(
        "--role",
        choices=ROLES,
        help=f"the role to run (as -o {ROLE_KEY}=ROLE; default: the instance's name when it is "
        "a role's, else default)",
    )
    if wait:
        parser.add_argument(
            "--timeout",
            type=float,
            default=DAEMON_TIMEOUT,
            help="seconds to wait for the node to be ready",
        )


Command = Callable[[argparse.Namespace, Paths], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bitdust", description="BitDust node: private, decentralised, encrypted backups."
    )
    parser.add_argument("--version", action="version", version=f"bitdust {__version__}")
    parser.add_argument("--json", action="store_true", help=JSON_HELP)
    parser.add_argument(
        "--instance",
        default=os.environ.get("BITDUST_INSTANCE", DEFAULT_INSTANCE),
        help="instance to act on (default: $BITDUST_INSTANCE or 'default')",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, func: Command, help_: str, aliases: tuple[str, ...] = ()) -> Any:
        p = sub.add_parser(name, help=help_, description=help_, aliases=list(aliases))
        p.set_defaults(func=func)
        # also after the command ('states --json'); SUPPRESS keeps the global one's value
        p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=JSON_HELP)
        return p

    _add_run_options(command("run", cmd_run, "run the node in the foreground", ("start",)))
    _add_run_options(
        command("daemon", cmd_daemon, "run the node in the background", ("detach",)), wait=True
    )
    command("stop", cmd_stop, "stop the running node")
    _add_run_options(command("restart", cmd_restart, "restart the node"), wait=True)
    _add_run_options(command("check-config", cmd_check_config, "validate the configuration"))
    command("version", cmd_version, "print the version")

    p = command("set", cmd_set, "change a setting in the instance's conffile ('set list' lists)")
    key = p.add_argument(
        "key", help="settings key, e.g. services/supplier/donated-space, or 'list'"
    )
    key.complete = SETTING_KEYS_COMPLETION  # type: ignore[attr-defined]
    p.add_argument("value", nargs="*", help="new value (words are joined: set KEY 50 GB)")
    p = command("get", cmd_get, "print a setting's value (with --json: and its layer)")
    key = p.add_argument("key", help="settings key, e.g. logs/level")
    key.complete = SETTING_KEYS_COMPLETION  # type: ignore[attr-defined]
    p = command("unset", cmd_unset, "remove a setting from the layer it comes from")
    key = p.add_argument("key", help="settings key; the layer below (role preset, default) decides")
    key.complete = SETTING_KEYS_COMPLETION  # type: ignore[attr-defined]
    p = command("config", cmd_config_list, "every setting, its value and layer: 'config list'")
    p.add_argument("action", choices=["list"], help="list: the same as 'set list'")

    command("states", cmd_states, "print the state of every service")
    p = command("automat", cmd_states, "BitDust's name for 'states': 'automat list'")
    p.add_argument("action", choices=["list"], help="list: the same as 'states'")
    p = command("service", cmd_service, "'service list' or 'service NAME'", ("services",))
    p.add_argument("name", nargs="?", help="a service's name, e.g. entangled-dht; or 'list'")
    p = command(
        "network",
        cmd_network,
        "'network status [--dht] ...', 'network connected', 'network speedtest IDURL'",
    )
    p.add_argument(
        "action",
        choices=["status", "connected", "speedtest"],
        help="status: the node and the asked sections; connected: the p2p sessions with peers "
        "(direction, direct or routed, bytes); speedtest: stream data to or from a peer",
    )
    p.add_argument("idurl", nargs="?", help="speedtest: the peer's IDURL")
    p.add_argument(
        "--bytes", type=int, default=10_000_000, help="speedtest: how many bytes (default 10 MB)"
    )
    p.add_argument("--down", action="store_true", help="speedtest: the peer sends, not this node")
    for section in StatusSection:
        p.add_argument(f"--{section}", action="store_true", help=f"include the {section} section")
    p = command("api", cmd_api, "call any REST route: 'api GET network/status dht=1'")
    p.add_argument(
        "method", type=str.upper, choices=["GET", "POST", "DELETE", "PUT"], help="HTTP method"
    )
    p.add_argument("path", help="e.g. network/status or /v1/network/status")
    p.add_argument(
        "fields",
        nargs="*",
        metavar="NAME=VALUE",
        help="arguments: the query of a GET, else the JSON body",
    )

    p = command("dht", cmd_dht, "'dht find [NODE_ID]', 'dht get KEY', 'dht set KEY VALUE'")
    p.add_argument(
        "action",
        choices=["find", "get", "set"],
        help="find nodes, get a key's values (exit 1 when none), or set one",
    )
    p.add_argument("args", nargs="*", metavar="ARG", help="NODE_ID, KEY or KEY VALUE")
    p.add_argument("--expire", type=int, help="seconds the value lives (default 12 h)")

    p = command(
        "identity", cmd_identity, "'identity create NAME', 'show', 'backup FILE', 'restore FILE'"
    )
    p.add_argument(
        "action",
        choices=["create", "show", "backup", "restore", "recover"],
        help="what to do with this node's identity (recover: the same as restore)",
    )
    p.add_argument(
        "args",
        nargs="*",
        metavar="ARG",
        help="create: NAME [KEY_SIZE]; backup: FILE; restore: FILE [IDURL]",
    )
    p.add_argument(
        "--key-size",
        type=int,
        default=DEFAULT_KEY_BITS,
        choices=ALLOWED_KEY_BITS,
        help=f"RSA key size in bits: {allowed_key_sizes_text()} (default {DEFAULT_KEY_BITS})",
    )
    p.add_argument("--passphrase-file", help="read the key backup's passphrase from this file")
    p.add_argument("--ask-passphrase", action="store_true", help="ask for a passphrase")
    p.add_argument("--idurl", help="restore: the identity's IDURL, when not the backup's")

    p = command(
        "file", cmd_file, "'file upload LOCAL [REMOTE]', 'download REMOTE [LOCAL]', 'list', ..."
    )
    p.add_argument(
        "action",
        choices=["upload", "download", "list", "info", "delete"],
        help="upload a file or directory, download one, list the catalogue, show or delete one",
    )
    p.add_argument(
        "args",
        nargs="*",
        metavar="ARG",
        help="upload: LOCAL [REMOTE]; download: REMOTE [LOCAL]; list: [PATH]; info, delete: REMOTE",
    )
    p.add_argument("--version", type=int, help="download: this version (default: the latest)")
    p.add_argument(
        "--reread",
        action="store_true",
        help="upload: read every file, also one whose size, mode and mtime match its newest "
        "version in the catalogue, and send it when its SHA-256 differs from that version's",
    )

    p = command(
        "supplier",
        cmd_supplier,
        "'supplier list', 'supplier list-dht [IDURL]', 'supplier replace POSITION|IDURL'",
    )
    p.add_argument(
        "action",
        choices=["list", "list-dht", "replace"],
        help="list: this node's suppliers; list-dht: a customer's supplier list in the DHT; "
        "replace: hire another supplier for a position and rebuild its fragments there",
    )
    p.add_argument(
        "idurl",
        nargs="?",
        help="list-dht: the customer (default: this node); replace: a position or an IDURL",
    )

    p = command("customer", cmd_customer, "'customer list', 'customer reject IDURL'")
    p.add_argument(
        "action",
        choices=["list", "reject"],
        help="list: the customers this node stores for; reject: stop storing for one",
    )
    p.add_argument("idurl", nargs="?", help="reject: the customer's IDURL")

    command("storage", cmd_storage, "space donated to customers and used on suppliers")

    p = command("identity-server", cmd_nginx_config, "'identity-server nginx-config'")
    p.add_argument(
        "action",
        choices=["nginx-config"],
        help="nginx-config: print the nginx site for this identity server",
    )
    p.add_argument("--listen", help="nginx listen address (default: <listen-host>:80 or 80)")
    p.add_argument("--server-name", help="default: services/identity-server/host")
    return parser


def _print_error(exc: Exception) -> None:
    for line in str(exc).splitlines():
        print(f"bitdust: {line}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return ExitStatus.CONFIG
    del parser  # `bitdust run` stays in args.func for the node's life: its parser need not
    try:
        paths = Paths.for_instance(args.instance)
        return args.func(args, paths)
    except ConfigError as exc:
        _print_error(exc)
        return ExitStatus.CONFIG
    except CliError as exc:
        _print_error(exc)
        return exc.code
    except ClientError as exc:
        _print_error(exc)
        return ExitStatus.FAILURE
    except KeyboardInterrupt:
        return ExitStatus.INTERRUPTED
    except Exception as exc:  # a bug of ours: still one line, never a traceback
        print(f"bitdust: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return ExitStatus.INTERNAL


if __name__ == "__main__":
    sys.exit(main())
