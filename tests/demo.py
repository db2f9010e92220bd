"""`make demo`: the BitDust guide's private network on this host, end to end.

Four hosts (host-a.com to host-d.com = 127.0.1.1 to 127.0.1.4), each with its own /etc, state and
runtime dirs under a temporary directory, driven with the `bitdust` command as the guide does:
Part 2 (a DHT of four seed nodes), Part 3 (identity servers on host-a and host-b behind nginx on
port 80), Part 4 (identities for alice, bob, carl and dave, a key backup, and a restore on a fresh
machine). It uses the frozen binary `dist/bitdust` when it exists. Everything it starts, it stops.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.helpers import HOSTS, REPO, GuideHost, alive, cli, wait_for, write_nginx_conf


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def show(host: GuideHost, command: str) -> None:
    print(f"[{host.name}]$ bitdust {command}")


def get(url: str, host_header: str) -> bytes:
    request = urllib.request.Request(url, headers={"Host": host_header})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


def start_nginx(base: Path, hosts: list[GuideHost]) -> Path | None:
    if os.geteuid() != 0 or not shutil.which("nginx"):
        print("(nginx or root missing: identity servers are used on port 8084 directly)")
        return None
    (base / "sites").mkdir(parents=True)
    write_nginx_conf(base, f"{base}/sites/*.conf")
    for host in hosts:
        (base / "sites" / f"{host.name}.conf").write_text(
            host.bitdust("identity-server", "nginx-config")
        )
        show(host, "identity-server nginx-config > sites/" + host.name + ".conf")
    subprocess.run(["nginx", "-t", "-q", "-c", str(base / "nginx.conf")], check=True)
    subprocess.run(["nginx", "-c", str(base / "nginx.conf")], check=True)
    return base


def demo(base: Path) -> None:
    hosts = [GuideHost(base, name) for name in HOSTS]
    a, b, _, d = hosts
    binary = os.environ.get("BITDUST_BIN")
    print(f"bitdust: {binary or 'python -m bitdust (source tree)'}; hosts under {base}")

    step("Part 2: start the DHT: genesis on host-a.com, the others join through host-a.com:14441")
    for host in hosts:
        known = "genesis" if host is a else "host-a.com:14441"
        host.configure(known)
        show(host, f"set services/entangled-dht/known-nodes {known}")
        host.bitdust("daemon")
        show(host, "daemon")
    wait_for(lambda: all(h.contacts() == 3 for h in hosts), 60, "every node to see 3 contacts")
    for host in hosts:
        print(f'[{host.name}] network/status?dht=1 -> "contacts": {host.contacts()}')
    show(b, "states")
    print(b.bitdust("states"), end="")

    step("Part 3: identity servers on host-a.com and host-b.com (HTTP 8084, TCP 6661)")
    nginx_base = base / "nginx"
    for host in (a, b):
        host.bitdust("set", "services/identity-server/enabled", "true")
        host.bitdust("set", "services/identity-server/web-port", "8084")
        host.bitdust("set", "services/identity-server/tcp-port", "6661")
        host.bitdust("set", "services/identity-server/host", host.name)
    nginx = start_nginx(nginx_base, [a, b])
    http_port = 80 if nginx else 8084
    servers = f"host-a.com:{http_port}:6661,host-b.com:{http_port}:6661"
    for host in hosts:
        host.bitdust("set", "services/identity-propagate/known-servers", servers)
        show(host, f"set services/identity-propagate/known-servers {servers}")
        host.bitdust("restart")
    wait_for(lambda: all(h.contacts() == 3 for h in hosts), 60, "the DHT to settle again")
    index = get(f"http://127.0.1.1:{http_port}/", "host-a.com").decode()
    print("http://host-a.com/ ->", index[index.index("<title>") : index.index("</title>") + 8])

    step("Part 4: create identities alice, bob, carl and dave")
    for host, name in zip(hosts, ("alice", "bob", "carl", "dave"), strict=True):
        status, envelope = host.api("POST", "/identity/create/v1", {"username": name})
        if status != 200:
            raise SystemExit(f"identity/create for {name} failed: {envelope}")
        print(f"[{host.name}] curl -X POST -d '{{\"username\": \"{name}\"}}' "
              f"localhost:8180/identity/create/v1 -> {envelope['result']['idurl']}")  # fmt: skip
    status = a.api("GET", "/network/status/v1?dht=1")[1]["result"]
    fields = ("idurl", "global_id", "identity_sources", "identity_revision")
    print(json.dumps({key: status[key] for key in fields}, indent=2))
    xml = get(f"http://127.0.1.2:{http_port}/alice.xml", "host-b.com").decode()
    print(f"http://host-b.com/alice.xml ->\n{xml[:400]}...")
    backup = base / "alice_identity_backup_key.txt"
    a.bitdust("identity", "backup", str(backup))
    show(a, f"identity backup {backup}  (mode {oct(backup.stat().st_mode & 0o777)})")

    step("The DHT survives its genesis node: host-a.com is killed, a value is still found")
    b.bitdust("dht", "set", "demo:greeting", "hello from host-b")
    pid = a.pid()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid), 10, "host-a to die")
    found = d.data("dht", "get", "demo:greeting")["values"]
    print(f"[host-d.com] dht get demo:greeting -> {[v['value'] for v in found]}")
    if [v["value"] for v in found] != ["hello from host-b"]:
        raise SystemExit("the value was lost")

    step("host-a.com is gone: restore alice on a fresh machine from her key backup")
    fresh = GuideHost(base / "fresh", "host-a.com")
    fresh.configure("host-b.com:14441", **{"services/identity-propagate/known-servers": servers})
    fresh.bitdust("daemon")
    restored = fresh.data("identity", "restore", str(backup))
    show(fresh, f"identity restore {backup} -> {restored['idurl']}")
    if restored["idurl"] != status["idurl"]:
        raise SystemExit("the restored identity differs")

    step("Stop everything")
    for host in (*hosts, fresh):
        cli(host.env, "stop")
    if nginx:
        subprocess.run(["nginx", "-c", str(nginx / "nginx.conf"), "-s", "stop"], check=False)
    print("\ndemo finished: DHT, identity servers behind nginx, identities, backup and restore")


def main() -> int:
    dist = REPO / "dist" / "bitdust"
    if "BITDUST_BIN" not in os.environ and dist.exists():
        os.environ["BITDUST_BIN"] = str(dist)
    base = Path(tempfile.mkdtemp(prefix="bitdust-demo-"))
    started = time.monotonic()
    try:
        demo(base)
    finally:
        for instance_dir in base.glob("**/run/default"):
            env_base = instance_dir.parent.parent
            from tests.helpers import node_env

            cli(node_env(env_base), "stop")
        pid = base / "nginx" / "nginx.pid"
        if pid.exists():
            subprocess.run(["nginx", "-c", str(base / "nginx" / "nginx.conf"), "-s", "stop"],
                           check=False)  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)
    print(f"({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
