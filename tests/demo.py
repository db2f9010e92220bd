"""`make demo`: the BitDust guide's private network on this host, end to end.

Four hosts (host-a.com to host-d.com = 127.0.1.1 to 127.0.1.4) and a customer's machine
(host-e.com = 127.0.1.5), each with its own /etc, state and runtime dirs under a temporary
directory, driven with the `bitdust` command and the REST API (with the API secret) as the guide
does: Part 2 (a DHT of four seed nodes), Part 3 (identity servers on host-a and host-b, behind
nginx on port 80 when this runs as root with nginx installed), Part 4 (identities alice, bob,
carl and dave, and their key backups), Part 5 (a router on each host), Part 6 (a supplier on each
host), Part 7 (a customer that accepts no connections, started as the systemd unit starts it,
joins from a network.json, backs up a directory and gets it back; then loses a supplier, then its
machine, and recovers everything from its key backup). tests/test_guide_e2e.py runs the same
scenario as a test. It uses the frozen binary `dist/bitdust` when it exists, and stops everything
it starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.helpers import (
    ADDRESSES,
    CUSTOMER_HOST,
    HOST_MAP,
    HOSTS,
    REPO,
    GuideHost,
    Node,
    alive,
    cli,
    keep_reading,
    start_node,
    wait_for,
    write_nginx_conf,
)
from tests.storage.test_guide_storage import tree_state, write_random

MiB = 1024 * 1024
NAMES = ("alice", "bob", "carl", "dave")
#: What `bitdust states | grep proxy` prints on a router, by the guide (after each index).
ROUTER_STATES = ["service_proxy_server(ON)", "service_proxy_transport(OFF)", "proxy_router(LISTEN)"]
DONATED = 50 * 1024**3  # the guide's "50 GB"


def check(ok: Any, what: str, seen: Any = None) -> None:
    """Say what is checked and that it held, or stop the walk-through with what was seen."""
    if not ok:
        raise AssertionError(f"{what}: not so" + (f" (seen: {seen!r})" if seen is not None else ""))
    print(f"    ok: {what}")


def check_within(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    """Wait until ``predicate()`` holds, then say so."""
    wait_for(predicate, timeout, what)
    print(f"    ok: {what}")


def run(host: GuideHost, *args: str) -> str:
    """`bitdust ARGS` on ``host``, shown as the guide writes it."""
    print(f"[{host.name}]$ bitdust {' '.join(args)}")
    return host.bitdust(*args)


def curl(host: GuideHost, method: str, path: str, body: Any = None) -> Any:
    """The guide's curl to the host's REST API (the API secret is sent too); its result."""
    data = f" -d '{json.dumps(body)}'" if body is not None else ""
    verb = f" -X {method}" if method != "GET" else ""
    print(f"[{host.name}]$ curl{verb}{data} localhost:8180{path}")
    status, envelope = host.api(method, path, body)
    if status != 200:
        raise AssertionError(f"{method} {path} on {host.name} answered {status}: {envelope}")
    return envelope["result"]


def indented(text: str) -> None:
    for line in text.rstrip("\n").splitlines():
        print(f"    {line}")


def get(url: str, host_header: str) -> bytes:
    request = urllib.request.Request(url, headers={"Host": host_header})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


def write_documents(root: Path) -> int:
    """The customer's directory: some 14 MB in files of every kind (empty, one byte, random,
    text, an executable in a subdirectory with its own mode); returns the bytes in all."""
    (root / "notes" / "scripts").mkdir(parents=True)
    write_random(root / "empty.txt", 0, 1)
    write_random(root / "one-byte.bin", 1, 2)
    write_random(root / "photo.raw", 12 * MiB, 3)
    lines = b"".join(b"line %d of the customer's diary\n" % i for i in range(40_000))
    (root / "notes" / "diary.txt").write_bytes(lines)
    write_random(root / "notes" / "scripts" / "backup.sh", 5000, 4).chmod(0o750)
    (root / "notes" / "diary.txt").chmod(0o600)
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


class GuideNetwork:
    """The guide's network under ``base``, built part by part; every part checks what the guide
    says the user should see, and ``stop`` leaves nothing running."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.hosts = [GuideHost(base, name) for name in HOSTS]
        self.customer = GuideHost(base, CUSTOMER_HOST)
        self.node: Node | None = None  # the customer's process, started as the unit does
        self.nginx: Path | None = None
        self.http_port = 8084
        self.by_idurl: dict[str, GuideHost] = {}
        self.key_backup = base / "eve_identity_backup_key.txt"
        self.timings: dict[str, float] = {}
        self.rates: dict[str, float] = {}
        self.killed: list[GuideHost] = []

    @property
    def servers(self) -> str:
        return f"host-a.com:{self.http_port}:6661,host-b.com:{self.http_port}:6661"

    @contextlib.contextmanager
    def part(self, title: str) -> Iterator[None]:
        print(f"\n==> {title}", flush=True)
        started = time.monotonic()
        yield
        self.timings[title] = time.monotonic() - started
        print(f"    ({self.timings[title]:.1f} s)", flush=True)

    def identity_url(self, server: str, path: str = "") -> str:
        """A URL of an identity server, as the guide writes it (port 80 goes unsaid)."""
        port = "" if self.http_port == 80 else f":{self.http_port}"
        return f"http://{server}{port}/{path}"

    def served(self, server: str, path: str = "") -> bytes:
        """What the identity server on ``server`` answers at ``path``."""
        url = self.identity_url(server, path).replace(server, ADDRESSES[server], 1)
        return get(url, server)

    def settled(self) -> None:
        wait_for(lambda: all(h.contacts() == 3 for h in self.hosts), 60, "3 DHT contacts each")

    # -- the guide's parts ---------------------------------------------------------------------

    def part_2_dht(self) -> None:
        with self.part("Part 2: the DHT: genesis on host-a.com, the others join host-a.com:14441"):
            for host in self.hosts:
                known = "genesis" if host is self.hosts[0] else "host-a.com:14441"
                host.configure(known)
                print(f"[{host.name}]$ bitdust set services/entangled-dht/known-nodes {known}")
                run(host, "daemon")
            self.settled()
            contacts = {host.name: host.contacts() for host in self.hosts}
            print(f"curl localhost:8180/network/status/v1?dht=1 on each host -> {contacts}")
            check(set(contacts.values()) == {3}, "every seed node knows the other three")

    def part_3_identity_servers(self) -> None:
        with self.part("Part 3: identity servers on host-a.com and host-b.com"):
            a, b = self.hosts[:2]
            for host in (a, b):
                for key, value in (
                    ("services/identity-server/enabled", "true"),
                    ("services/identity-server/web-port", "8084"),
                    ("services/identity-server/tcp-port", "6661"),
                    ("services/identity-server/host", host.name),
                ):
                    run(host, "set", key, value)
            self.nginx = self.start_nginx(self.base / "nginx", [a, b])
            self.http_port = 80 if self.nginx else 8084
            for host in self.hosts:
                run(host, "set", "services/identity-propagate/known-servers", self.servers)
                run(host, "restart")
            self.settled()
            for host in (a, b):
                title = f"<title>Identities on {host.name}</title>"
                index = self.served(host.name).decode()
                check(title in index, f"{self.identity_url(host.name)} serves {title}")

    def start_nginx(self, base: Path, hosts: list[GuideHost]) -> Path | None:
        """nginx on port 80 in front of the identity servers, as the guide has Apache."""
        if os.geteuid() != 0 or not shutil.which("nginx"):
            print("    (not root, or no nginx: the identity servers answer on port 8084 directly)")
            return None
        (base / "sites").mkdir(parents=True)
        write_nginx_conf(base, f"{base}/sites/*.conf")
        for host in hosts:
            site = run(host, "identity-server", "nginx-config")
            (base / "sites" / f"{host.name}.conf").write_text(site)
            print(f"    -> {base}/sites/{host.name}.conf")
        subprocess.run(["nginx", "-t", "-q", "-c", str(base / "nginx.conf")], check=True)
        subprocess.run(["nginx", "-c", str(base / "nginx.conf")], check=True)
        print("    (nginx on port 80 of host-a.com and host-b.com, in front of port 8084)")
        return base

    def part_4_identities(self) -> None:
        with self.part("Part 4: identities alice, bob, carl and dave, and their key backups"):
            for host, name in zip(self.hosts, NAMES, strict=True):
                created = curl(host, "POST", "/identity/create/v1", {"username": name})
                self.by_idurl[created["idurl"]] = host
                print(f"    -> {created['idurl']}")
                backup = self.base / f"{name}_identity_backup_key.txt"
                run(host, "identity", "backup", str(backup))
                check(backup.stat().st_mode & 0o777 == 0o600, f"{backup.name} is mode 0600")
            a = self.hosts[0]
            status = curl(a, "GET", "/network/status/v1?dht=1")
            fields = ("idurl", "global_id", "identity_sources", "identity_revision")
            indented(json.dumps({key: status[key] for key in fields}, indent=2))
            check(status["global_id"].startswith("alice@host-a.com"), "alice is online on host-a")
            xml = self.served("host-b.com", "alice.xml")
            url = self.identity_url("host-b.com", "alice.xml")
            check(b"<publickey>" in xml, f"{url} serves alice's identity")

    def part_5_routers(self) -> None:
        with self.part("Part 5: a traffic router on each of the four hosts"):
            for host in self.hosts:
                run(host, "set", "services/proxy-transport/enabled", "false")
                run(host, "set", "services/proxy-server/enabled", "true")
                run(host, "restart")
                print(f"[{host.name}]$ bitdust states | grep proxy")
                lines = [line for line in host.bitdust("states").splitlines() if "proxy" in line]
                indented("\n".join(lines))
                states = [line.split()[1] for line in lines]
                check(states == ROUTER_STATES, "the guide's three proxy lines", states)
            self.settled()

    def part_6_suppliers(self) -> None:
        with self.part("Part 6: a supplier on each of the four hosts, donating 50 GB"):
            for host in self.hosts:
                run(host, "set", "services/supplier/enabled", "true")
                run(host, "set", "services/supplier/donated-space", "50", "GB")
                run(host, "restart")
                space = curl(host, "GET", "/space/donated/v1")
                print(f"    -> donated {space['donated']}, used {space['used']}")
                check(space["donated"] == DONATED and space["used"] == 0, "50 GB donated, unused")
            self.settled()

    # -- Part 7: the customer ------------------------------------------------------------------

    def network_json(self) -> dict[str, Any]:
        """What the network's operators hand a new user: its seeds and identity servers."""
        return {
            "name": "guide",
            "label": "Your own BitDust network from scratch",
            "service_entangled_dht": {
                "known_nodes": [{"host": host.name, "udp_port": 14441} for host in self.hosts]
            },
            "service_identity_propagate": {
                "known_servers": [
                    {"host": name, "http_port": self.http_port, "tcp_port": 6661}
                    for name in ("host-a.com", "host-b.com")
                ]
            },
        }

    def customer_settings(self) -> dict[str, Any]:
        """/etc/bitdust/default.conf on host-e.com: a customer behind a router."""
        return {
            "services/network/listen-host": self.customer.address,
            "services/network/host-map": HOST_MAP,
            "services/entangled-dht/rpc-timeout": 2,
            "services/entangled-dht/udp-port": 14441,
            "services/tcp-connections/tcp-port": 7771,
            "interface/api/rest-http-port": 8180,
            "services/proxy-transport/enabled": "true",
            "services/nodes-lookup/enabled": "true",
            "services/customer/enabled": "true",
            "services/customer/suppliers-number": 4,
            "services/customer/needed-space": "1 GB",
        }

    def start_customer(self) -> None:
        """`bitdust --instance default run` under a NOTIFY_SOCKET, as bitdust@default.service
        runs it; it returns once the node said READY=1."""
        print(f"[{CUSTOMER_HOST}]$ systemctl start bitdust@default   # bitdust --instance "
              "default run, Type=notify")  # fmt: skip
        self.node = start_node(self.customer.base, "default", self.customer_settings())
        check("READY=1" in self.node.notify.fields(), "the node told its NOTIFY_SOCKET READY=1")
        keep_reading(self.node.notify)

    def stop_customer(self) -> None:
        print(f"[{CUSTOMER_HOST}]$ systemctl stop bitdust@default   # SIGTERM")
        assert self.node is not None
        code = self.node.stop()
        check(code == 0, "the node stopped cleanly", code)

    def part_7_customer(self) -> None:
        with self.part("Part 7: a customer on host-e.com that accepts no connections"):
            etc = self.customer.base / "etc"
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "network.json").write_text(json.dumps(self.network_json(), indent=2) + "\n")
            print(f"[{CUSTOMER_HOST}]$ cat /etc/bitdust/network.json")
            indented((etc / "network.json").read_text())
            print(f"[{CUSTOMER_HOST}]$ cat /etc/bitdust/default.conf")
            indented("\n".join(f"{k} = {v}" for k, v in self.customer_settings().items()))
            self.start_customer()
            eve = curl(self.customer, "POST", "/identity/create/v1", {"username": "eve"})
            print(f"    -> {eve['idurl']}")
            run(self.customer, "identity", "backup", str(self.key_backup))
            check(self.key_backup.stat().st_mode & 0o777 == 0o600, "eve's key backup is 0600")
            check_within(lambda: len(self.customer.data("supplier", "list")) == 4, 90,
                         "eve hired 4 suppliers")  # fmt: skip
            indented(run(self.customer, "supplier", "list"))
            hired = {row["idurl"] for row in self.customer.data("supplier", "list")}
            check(hired == set(self.by_idurl), "eve hired alice, bob, carl and dave")
            self.check_routed(eve["idurl"])

    def router(self) -> GuideHost:
        """The host whose router the customer goes through, once it has one."""
        wait_for(lambda: self.proxy()["router"], 90, "the customer registered with a router")
        return self.by_idurl[self.proxy()["router"]]

    def proxy(self) -> dict[str, Any]:
        return self.customer.data("network", "status", "--proxy")["proxy"]

    def check_routed(self, idurl: str) -> None:
        router = self.router()
        prefix = f"tcp://{router.address}:7771/"
        print(f"[{CUSTOMER_HOST}]$ bitdust network status --proxy -> router {router.name}")

        def published() -> bytes:
            return self.served("host-a.com", idurl.rsplit("/", 1)[1])

        served = f"host-a.com serves eve's identity with {router.name}'s router in it"
        check_within(lambda: prefix.encode() in published(), 30, served)
        contacts = self.customer.data("network", "status")["identity_contacts"]
        check(
            contacts and all(contact.startswith(prefix) for contact in contacts),
            f"eve's only contacts are through {router.name}'s router ({prefix}...)",
            contacts,
        )
        address = f"tcp://{self.customer.address}:".encode()
        check(address not in published(), "her published identity names no address of her own")

    def back_up_and_restore(self, source: Path) -> None:
        with self.part("Part 7: eve backs up a directory and downloads it back"):
            total = write_documents(source)
            before = tree_state(source)
            started = time.monotonic()
            print(f"[{CUSTOMER_HOST}]$ bitdust file upload {source} documents")
            done = self.transfer("file", "upload", str(source), "documents")
            self.rate("upload", total, time.monotonic() - started)
            check({event["remote"] for event in done} == {f"documents/{n}" for n in before},
                  f"{len(before)} files ({total / 1e6:.1f} MB) uploaded")  # fmt: skip
            indented(run(self.customer, "file", "list"))
            self.download_identical(before, "restored", "download")
            print(f"[{CUSTOMER_HOST}]$ bitdust storage")
            check_within(self.offsite_current, 60, "the newest catalogue is kept off-site too")

    def transfer(self, *args: str) -> list[dict[str, Any]]:
        """A `bitdust --json file ...` command's per-file results (progress lines left out)."""
        result = cli(self.customer.env, "--json", *args, check=True, timeout=120)
        events = [json.loads(line) for line in result.stdout.splitlines() if line]
        return [event for event in events if event.get("event") == "done"]

    def rate(self, what: str, size: int, seconds: float) -> None:
        self.rates[what] = size / 1e6 / seconds
        print(f"    {what}: {size / 1e6:.1f} MB in {seconds:.1f} s = {self.rates[what]:.1f} MB/s"
              " (the command's wall time)")  # fmt: skip

    def download_identical(self, before: dict[str, Any], name: str, label: str) -> None:
        target = self.base / name
        started = time.monotonic()
        print(f"[{CUSTOMER_HOST}]$ bitdust file download documents {target}")
        done = self.transfer("file", "download", "documents", str(target))
        self.rate(label, sum(event["size"] for event in done), time.monotonic() - started)
        restored = tree_state(target)
        check(restored == before, "every file identical: content, mode and mtime", restored)

    def offsite_current(self) -> bool:
        consumed = self.customer.data("storage")["consumed"]
        return consumed["offsite_generation"] == consumed["catalogue_generation"]

    def lose_a_supplier(self, source: Path) -> None:
        with self.part("A supplier is lost (SIGKILL): the files still restore"):
            router = self.router()
            victim = next(h for h in reversed(self.hosts[2:]) if h is not router)
            name = NAMES[self.hosts.index(victim)]
            self.kill(victim, f"{name}; eve's router is {router.name}'s")
            self.download_identical(tree_state(source), "after-loss", "download (a supplier lost)")

    def lose_the_machine(self, source: Path) -> None:
        with self.part("eve's machine is lost: everything recovered from her key backup"):
            check(self.offsite_current(), "the catalogue off-site is still the newest")
            listed = self.customer.data("file", "list")
            self.stop_customer()
            state = self.customer.base / "state"
            print(f"[{CUSTOMER_HOST}]$ rm -rf /var/lib/bitdust   # ({state})")
            shutil.rmtree(state)
            self.start_customer()
            restored = run(self.customer, "--json", "identity", "restore", str(self.key_backup))
            idurl = json.loads(restored)["idurl"]
            check(idurl.endswith("/eve.xml"), f"eve is back: {idurl}")
            check_within(lambda: self.customer.data("file", "list") == listed, 90,
                         f"bitdust file list shows the {len(listed)} files again")  # fmt: skip
            self.download_identical(
                tree_state(source), "after-recovery", "download (recovered machine)"
            )

    def dht_survives_its_genesis(self) -> None:
        with self.part("The DHT survives its genesis node: host-a.com is killed"):
            a, b = self.hosts[:2]
            reader = next(host for host in self.hosts[2:] if host not in self.killed)
            run(b, "dht", "set", "demo:greeting", "hello from host-b")
            self.kill(a, "the genesis node, an identity server")
            found = [v["value"] for v in reader.data("dht", "get", "demo:greeting")["values"]]
            print(f"[{reader.name}]$ bitdust dht get demo:greeting -> {found}")
            check(found == ["hello from host-b"], f"{reader.name} still finds the value", found)

    def kill(self, host: GuideHost, why: str) -> None:
        """The machine ``host`` dies at once: SIGKILL, no goodbye to anyone."""
        print(f"[{host.name}]$ kill -9 $(pidof bitdust)   # {why}")
        pid = host.pid()
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not alive(pid), 10, f"{host.name} to die")
        self.killed.append(host)

    def stop(self) -> None:
        """Every node and nginx, whatever state the walk-through ended in."""
        if self.node is not None:
            self.node.stop()
        for host in (*self.hosts, self.customer):
            cli(host.env, "stop")
        if self.nginx is not None:
            conf = str(self.nginx / "nginx.conf")
            subprocess.run(["nginx", "-c", conf, "-s", "stop"], check=False, capture_output=True)
            wait_for(lambda: not (self.nginx / "nginx.pid").exists(), 10, "nginx to stop")


def walk_through(network: GuideNetwork, source: Path) -> None:
    """The guide, part by part, then what the storage must survive."""
    network.part_2_dht()
    network.part_3_identity_servers()
    network.part_4_identities()
    network.part_5_routers()
    network.part_6_suppliers()
    network.part_7_customer()
    network.back_up_and_restore(source)
    network.lose_a_supplier(source)
    network.lose_the_machine(source)
    network.dht_survives_its_genesis()


def main() -> int:
    dist = REPO / "dist" / "bitdust"
    if "BITDUST_BIN" not in os.environ and dist.exists():
        os.environ["BITDUST_BIN"] = str(dist)
    base = Path(tempfile.mkdtemp(prefix="bitdust-demo-"))
    print(f"bitdust: {os.environ.get('BITDUST_BIN') or 'python -m bitdust (source tree)'}; "
          f"hosts under {base}")  # fmt: skip
    network = GuideNetwork(base)
    started = time.monotonic()
    try:
        walk_through(network, base / "documents")
    except AssertionError as exc:
        print(f"\ndemo FAILED: {exc}")
        return 1
    finally:
        network.stop()
        shutil.rmtree(base, ignore_errors=True)
    print("\ndemo finished; nothing is left running. Timings:")
    for title, seconds in network.timings.items():
        print(f"  {seconds:6.1f} s  {title}")
    rates = "; ".join(f"{what} {rate:.1f} MB/s" for what, rate in network.rates.items())
    print(f"  {time.monotonic() - started:6.1f} s  in all; {rates}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
