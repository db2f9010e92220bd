"""Helpers for tests that run real node processes: environments, notify sockets, API calls.

A node under test is the real program (`python -m bitdust`, or the frozen binary when
``BITDUST_BIN`` names it) with its config, state and runtime dirs in a temporary directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bitdust.malloc import with_tunables
from tests.ports import free_port

REPO = Path(__file__).resolve().parent.parent

# The guide's four hosts, as loopback addresses (DESIGN §12).
HOSTS = {
    "host-a.com": "127.0.1.1",
    "host-b.com": "127.0.1.2",
    "host-c.com": "127.0.1.3",
    "host-d.com": "127.0.1.4",
}
#: The guide's Part 7 customer: a fifth machine, not one of the network's four hosts.
CUSTOMER_HOST = "host-e.com"
#: A supplier that joins later, to take the place of one that is lost.
SPARE_HOST = "host-f.com"
#: More suppliers than the guide has hosts, for the benchmark of upload by number of suppliers.
EXTRA_HOSTS = {"host-g.com": "127.0.1.7", "host-h.com": "127.0.1.8"}
ADDRESSES = {**HOSTS, CUSTOMER_HOST: "127.0.1.5", SPARE_HOST: "127.0.1.6", **EXTRA_HOSTS}
HOST_MAP = ",".join(f"{name}={address}" for name, address in ADDRESSES.items())


def bitdust_command() -> list[str]:
    binary = os.environ.get("BITDUST_BIN")
    if binary:
        return [binary]
    return [sys.executable, "-m", "bitdust"]


def alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie nobody reaped yet counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def node_env(base: Path, **extra: str) -> dict[str, str]:
    """An environment whose bitdust dirs all live under ``base``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BITDUST_", "NOTIFY_"))}
    env.update(
        BITDUST_CONFIG_DIR=str(base / "etc"),
        BITDUST_STATE_DIR=str(base / "state"),
        BITDUST_RUNTIME_DIR=str(base / "run"),
        PYTHONPATH=str(REPO),
    )
    env.update(extra)
    (base / "etc").mkdir(parents=True, exist_ok=True)
    return env


def write_conf(base: Path, instance: str, settings: dict[str, Any]) -> Path:
    path = base / "etc" / f"{instance}.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{key} = {value}" for key, value in settings.items()]
    path.write_text("# written by the test\n" + "\n".join(lines) + "\n")
    return path


def cli(
    env: dict[str, str],
    *args: str,
    check: bool = False,
    timeout: float = 60,
    user: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `bitdust ARGS` and capture its output."""
    command = [*bitdust_command(), *args]
    if user is not None:
        command = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups", *command]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(
            f"bitdust {' '.join(args)} exited {result.returncode}\n{result.stdout}{result.stderr}"
        )
    return result


class NotifyListener:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET, in a short directory of its
    own: a socket path under a long pytest tmp_path can pass AF_UNIX's 107-byte limit."""

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="bd-notify-")
        self.path = os.path.join(self.directory, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages: list[str] = []

    def wait_for(self, field_: str, timeout: float, process: subprocess.Popen | None = None) -> str:
        """Wait until a message holding ``field_`` (e.g. 'READY=1') arrives."""
        deadline = time.monotonic() + timeout
        for message in self.messages:
            if field_ in message.splitlines():
                return message
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, min(0.2, deadline - time.monotonic())))
            try:
                message = self.sock.recv(65536).decode()
            except TimeoutError:
                if process is not None and process.poll() is not None:
                    raise AssertionError(
                        f"process exited {process.returncode} before {field_}"
                    ) from None
                continue
            self.messages.append(message)
            if field_ in message.splitlines():
                return message
        raise AssertionError(f"no {field_} within {timeout} s; got {self.messages}")

    def fields(self) -> list[str]:
        """Every field received so far, in order, after reading what is waiting."""
        self.sock.settimeout(0.05)
        while True:
            try:
                self.messages.append(self.sock.recv(65536).decode())
            except TimeoutError:
                break
        return [field for message in self.messages for field in message.splitlines()]

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def keep_reading(notify: NotifyListener, interval: float = 0.5) -> threading.Thread:
    """Read a node's notifications as systemd does, until the listener is closed: a node that
    lives long under a NotifyListener nobody reads blocks in its send once its datagrams fill
    the socket's queue (net.unix.max_dgram_qlen, 10 by default), and its API stops answering."""

    def read() -> None:
        while True:
            try:
                notify.fields()
            except OSError:  # closed: the node was stopped
                return
            time.sleep(interval)

    thread = threading.Thread(target=read, name="notify-reader", daemon=True)
    thread.start()
    return thread


@dataclass
class Node:
    """A `bitdust run` process under test."""

    base: Path
    instance: str
    env: dict[str, str]
    process: subprocess.Popen
    notify: NotifyListener
    api_host: str = "127.0.0.1"
    api_port: int = 0
    log_path: Path = field(default_factory=Path)

    @property
    def runtime(self) -> Path:
        return self.base / "run" / self.instance

    @property
    def secret(self) -> str:
        return (self.runtime / "api.secret").read_text().strip()

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        secret: bool = True,
        raw: bytes | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Call the REST API over TCP; returns (HTTP status, decoded envelope)."""
        url = f"http://{self.api_host}:{self.api_port}{path}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(url, data=data, method=method)
        if secret:
            request.add_header("api_secret", self.secret)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, envelope = self.api(method, path, body)
        assert status == 200 and envelope["status"] == "OK", (status, envelope)
        return envelope["result"]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 10) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.notify.close()
        return code


def start_node(
    base: Path,
    instance: str = "default",
    settings: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    env_extra: dict[str, str] | None = None,
    wait: bool = True,
    timeout: float = 30,
) -> Node:
    """Write the instance's conffile and start `bitdust run`, waiting for READY=1, with the
    allocator's tunables that the systemd unit and `bitdust daemon` give a node."""
    settings = dict(settings or {})
    api_host = str(settings.get("services/network/listen-host") or "127.0.0.1")
    if not api_host.startswith("127."):
        api_host = "127.0.0.1"
    settings.setdefault("interface/api/rest-http-port", free_port(host=api_host))
    settings.setdefault("services/entangled-dht/udp-port", 0)
    settings.setdefault("services/tcp-connections/tcp-port", 0)
    write_conf(base, instance, settings)
    env = with_tunables(node_env(base, **(env_extra or {})))
    notify = NotifyListener()
    env["NOTIFY_SOCKET"] = notify.path
    command = [*bitdust_command(), "--instance", instance, "run"]
    for key, value in (options or {}).items():
        command += ["-o", f"{key}={value}"]
    log_path = base / f"{instance}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    node = Node(
        base,
        instance,
        env,
        process,
        notify,
        api_host,
        int(settings["interface/api/rest-http-port"]),
        log_path,
    )
    if wait:
        try:
            notify.wait_for("READY=1", timeout, process)
        except AssertionError as exc:
            node.stop()
            raise AssertionError(f"{exc}\nlog:\n{node.log()}") from None
    return node


@contextlib.contextmanager
def running_node(base: Path, **kwargs: Any) -> Iterator[Node]:
    node = start_node(base, **kwargs)
    try:
        yield node
    finally:
        node.stop()


def wait_for(predicate: Any, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


# The services the guide turns off on its core hosts.
GUIDE_OFF = (
    "customer", "supplier", "proxy-transport", "proxy-server", "private-messages", "nodes-lookup",
)  # fmt: skip


class GuideHost:
    """One of the guide's hosts: its own dirs, driven with the CLI as the guide does."""

    def __init__(self, base: Path, name: str, instance: str = "default") -> None:
        self.name = name
        self.address = ADDRESSES[name]
        self.base = base / name
        self.env = node_env(self.base, BITDUST_INSTANCE=instance)
        self.instance = instance

    def bitdust(self, *args: str) -> str:
        return cli(self.env, *args, check=True).stdout

    def data(self, *args: str) -> Any:
        """What a command prints with --json, decoded."""
        return json.loads(cli(self.env, "--json", *args, check=True).stdout)

    def configure(self, known_nodes: str, **settings: Any) -> None:
        """The guide's commands, plus the two settings that make one machine play this host."""
        self.bitdust("set", "services/network/listen-host", self.address)
        self.bitdust("set", "services/network/host-map", HOST_MAP)
        self.bitdust("set", "services/entangled-dht/rpc-timeout", "2")
        for service in GUIDE_OFF:
            self.bitdust("set", f"services/{service}/enabled", "false")
        self.bitdust("set", "services/entangled-dht/udp-port", "14441")
        self.bitdust("set", "services/entangled-dht/known-nodes", known_nodes)
        for key, value in settings.items():
            self.bitdust("set", key, str(value))

    def contacts(self) -> int:
        status = self.data("network", "status", "--dht")
        assert status["dht"]["layers"][0]["contacts"] == status["dht"]["contacts"]
        return status["dht"]["contacts"]

    @property
    def runtime(self) -> Path:
        return self.base / "run" / self.instance

    def pid(self) -> int:
        return int((self.runtime / "bitdust.pid").read_text().split()[0])

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        """The guide's curl: REST on this host's address, with the API secret."""
        port = self.data("get", "interface/api/rest-http-port")["value"]
        secret = (self.runtime / "api.secret").read_text().strip()
        request = urllib.request.Request(
            f"http://{self.address}:{port}{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"api_secret": secret},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


NGINX_MAIN = """\
{user}worker_processes 1;
pid {base}/nginx.pid;
error_log {base}/error.log;
events {{ worker_connections {worker_connections}; }}
http {{
    access_log off;
    client_body_temp_path {base}/body;
    proxy_temp_path {base}/proxy;
    fastcgi_temp_path {base}/fastcgi;
    uwsgi_temp_path {base}/uwsgi;
    scgi_temp_path {base}/scgi;
    include {sites};
}}
"""


def write_nginx_conf(
    base: Path, sites: str, run_as_root: bool = True, worker_connections: int = 64
) -> Path:
    """A complete nginx.conf of its own, writing nothing outside ``base``, that includes the
    ``sites`` glob; ``run_as_root`` keeps the workers root so they can use the test's dirs."""
    base.mkdir(parents=True, exist_ok=True)
    conf = base / "nginx.conf"
    user = "user root;\n" if run_as_root else ""
    conf.write_text(
        NGINX_MAIN.format(user=user, base=base, sites=sites, worker_connections=worker_connections)
    )
    return conf
