"""The guide's Parts 6 and 7 with real processes on loopback (run under the shared test lock):
four suppliers on host-a.com … host-d.com, a customer on a fifth host (127.0.1.5) that finds
them through the DHT, backs up files and a directory tree with the CLI, gets them back identical,
re-uploads unchanged data for free, and still restores everything with one supplier killed.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import CUSTOMER_HOST, GuideHost, bitdust_command, cli, wait_for
from tests.test_guide_identity import start_core

SERVERS = "host-a.com:8084:6661,host-b.com:8084:6661"
SUPPLIER = {
    "services/identity-propagate/known-servers": SERVERS,
    "services/supplier/enabled": "true",
    "services/supplier/donated-space": "50 GB",
}
MARKER = b"BITDUST-PLAINTEXT-MARKER-7f3a9c"
MiB = 1024 * 1024


def create_identity(host: GuideHost, name: str) -> str:
    status, envelope = host.api("POST", "/identity/create/v1", {"username": name, "key_size": 1024})
    assert status == 200, envelope
    return str(envelope["result"]["idurl"])


def start_suppliers(hosts: dict[str, GuideHost], names: dict[str, str]) -> list[GuideHost]:
    """The guide's Part 6 on the four hosts: each becomes a supplier under its own identity."""
    a, b = start_core(hosts, SERVERS)
    c, d = hosts["host-c.com"], hosts["host-d.com"]
    for host in (c, d):
        host.configure("host-a.com:14441", **SUPPLIER)
        host.bitdust("daemon")
    suppliers = [a, b, c, d]
    for host in (a, b):
        host.bitdust("set", "services/supplier/enabled", "true")
        host.bitdust("set", "services/supplier/donated-space", "50", "GB")
    for host, name in zip(suppliers, names.values(), strict=True):
        create_identity(host, name)
    for host in suppliers:
        host.bitdust("restart")  # advertises at once now that it has an identity
    for host in suppliers:
        space = host.api("GET", "/space/donated/v1")[1]["result"]
        assert space["donated"] == 50 * 1024**3 and space["used"] == 0, space
    return suppliers


@pytest.fixture
def customer(tmp_path: Path) -> Iterator[GuideHost]:
    """The fifth host, stopped at the end whatever happened."""
    host = GuideHost(tmp_path, CUSTOMER_HOST)
    yield host
    cli(host.env, "stop")


def start_customer(
    customer: GuideHost, suppliers_number: int = 4, name: str = "eve", **settings: Any
) -> None:
    customer.configure(
        "host-a.com:14441",
        **{
            "services/identity-propagate/known-servers": SERVERS,
            "services/nodes-lookup/enabled": "true",
            "services/customer/enabled": "true",
            "services/customer/suppliers-number": suppliers_number,
            "services/customer/needed-space": "1 GB",
            **settings,
        },
    )
    customer.bitdust("daemon")
    create_identity(customer, name)
    wait_for(
        lambda: len(customer.data("supplier", "list")) == suppliers_number,
        90,
        f"the customer hires {suppliers_number} suppliers",
    )


def write_random(path: Path, size: int, seed: int) -> Path:
    path.write_bytes(hashlib.shake_256(seed.to_bytes(8, "big")).digest(size) if size else b"")
    return path


def tree_state(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every regular file under ``root``: (SHA-256, permission bits, mtime in ns)."""
    return {
        str(path.relative_to(root)): (
            hashlib.sha256(path.read_bytes()).hexdigest(),
            path.stat().st_mode & 0o7777,
            path.stat().st_mtime_ns,
        )
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


#: What the copies of the catalogue kept off-site add on the suppliers after a change (its SQLite
#: file and manifests, erasure-coded): far below one chunk of file data.
CATALOGUE_COPIES = MiB


def used_on_suppliers(suppliers: list[GuideHost]) -> int:
    """Everything the suppliers hold for customers: file data and catalogue copies."""
    return sum(host.api("GET", "/space/donated/v1")[1]["result"]["used"] for host in suppliers)


def file_data_on_suppliers(customer: GuideHost) -> int:
    """The bytes of file fragments the customer placed on its suppliers, by its catalogue."""
    return customer.api("GET", "/space/consumed/v1")[1]["result"]["stored"]


def upload(customer: GuideHost, local: Path, remote: str, *options: str) -> list[dict[str, Any]]:
    """``bitdust --json file upload``: the per-file results, progress lines left out."""
    result = cli(customer.env, "--json", "file", "upload", str(local), remote, *options, check=True)
    events = [json.loads(line) for line in result.stdout.splitlines() if line]
    return [event for event in events if event.get("event") == "done"]


def upload_killing(customer: GuideHost, local: Path, remote: str, victim: GuideHost) -> str:
    """``bitdust file upload LOCAL REMOTE`` with ``victim``'s node SIGKILLed once the customer
    has stored two chunks, in the middle of the upload: the CLI's stderr, once it has ended
    (empty when the upload still completed)."""
    command = [*bitdust_command(), "file", "upload", str(local), remote]
    running = subprocess.Popen(command, env=customer.env, stderr=subprocess.PIPE, text=True)
    wait_for(
        lambda: customer.data("service", "customer")["counters"]["chunks_sent"] >= 2,
        60,
        "the upload under way",
    )
    os.kill(victim.pid(), signal.SIGKILL)
    _, stderr = running.communicate(timeout=120)
    assert (running.returncode == 0) == (not stderr), (running.returncode, stderr)
    return stderr


@pytest.mark.timeout(420)
def test_guide_parts_6_and_7_backup_restore_and_a_lost_supplier(
    guide_hosts: dict[str, GuideHost], customer: GuideHost, tmp_path: Path
) -> None:
    names = {"host-a.com": "alice", "host-b.com": "bob", "host-c.com": "carl", "host-d.com": "dave"}
    suppliers = start_suppliers(guide_hosts, names)
    start_customer(customer)
    hired = customer.data("supplier", "list")
    assert sorted(row["idurl"].rsplit("/", 1)[1] for row in hired) == sorted(
        f"{name}.xml" for name in names.values()
    )
    published = customer.data("supplier", "list-dht")
    assert published["suppliers"] == [row["idurl"] for row in hired]
    assert published["k"] == 2
    # network/status has the suppliers' rows when asked for them, and only then
    status = customer.data("network", "status", "--suppliers")
    assert [row["idurl"] for row in status["suppliers"]] == [row["idurl"] for row in hired]
    assert "suppliers" not in customer.data("network", "status")

    source = tmp_path / "source"
    tree = source / "docs"
    (tree / "sub" / "deeper").mkdir(parents=True)
    write_random(tree / "empty.bin", 0, 1)
    write_random(tree / "one.bin", 1, 2)
    write_random(tree / "random.bin", 10 * MiB, 3)
    text = b"".join(b"line %d of a compressible text file " % i + MARKER + b"\n"
                    for i in range(200_000))[: 10 * MiB]  # fmt: skip
    (tree / "sub" / "text.txt").write_bytes(text)
    write_random(tree / "sub" / "deeper" / "script.sh", 3000, 4).chmod(0o750)
    write_random(tree / "sub" / "deeper" / "photo.jpg", 3 * MiB, 10)
    (tree / "sub" / "text.txt").chmod(0o600)
    os.utime(tree / "one.bin", ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    before = tree_state(tree)

    results = upload(customer, tree, "docs")
    assert {r["remote"] for r in results} == {f"docs/{name}" for name in before}
    listed = {row["remote"]: row for row in customer.data("file", "list")}
    assert set(listed) == {f"docs/{name}" for name in before}
    assert listed["docs/random.bin"]["size"] == 10 * MiB
    first_version = listed["docs/random.bin"]["version"]
    # The REST route a page at a time: two files after the last one's remote path, until a
    # short page; its bad arguments refused.
    pages, after = [], ""
    while True:
        status, answer = customer.api("GET", f"/file/list/v1?path=docs/sub&limit=2&after={after}")
        assert status == 200, answer
        pages.append([row["remote"] for row in answer["result"]])
        if len(pages[-1]) < 2:
            break
        after = pages[-1][-1]
    assert pages == [
        ["docs/sub/deeper/photo.jpg", "docs/sub/deeper/script.sh"],
        ["docs/sub/text.txt"],
    ]
    for query, error in (
        ("limit=-1", "field 'limit'"),
        ("limit=9999999999999999999", "field 'limit': a whole number out of range"),
        ("after=" + "x" * 4097, "field 'after'"),
    ):
        status, answer = customer.api("GET", f"/file/list/v1?{query}")
        assert status == 400 and error in answer["errors"][0], answer

    restored = tmp_path / "restored"
    customer.bitdust("file", "download", "docs", str(restored))
    assert tree_state(restored) == before
    single = tmp_path / "single.bin"
    customer.bitdust("file", "download", "docs/random.bin", str(single))
    assert single.read_bytes() == (tree / "random.bin").read_bytes()

    # No supplier's disk holds a known plaintext marker or a plaintext chunk's hash.
    secrets = [MARKER, hashlib.sha256(text).digest(), hashlib.sha256(text).hexdigest().encode()]
    for host in suppliers:
        for path in (host.base / "state").rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert not any(secret in data for secret in secrets), path

    # The same file again: not even read (its size, mode and mtime match the catalogue's);
    # read again when asked, and not sent (the same SHA-256). Touched, it is read and recorded
    # as a new version: no chunk data sent, no more file data on the suppliers.
    used, stored = used_on_suppliers(suppliers), file_data_on_suppliers(customer)
    [same] = upload(customer, tree / "random.bin", "docs/random.bin")
    assert same["unchanged"] and same["version"] == listed["docs/random.bin"]["version"]
    [checked] = upload(customer, tree / "random.bin", "docs/random.bin", "--reread")
    assert checked["unchanged"] and checked["version"] == listed["docs/random.bin"]["version"]
    os.utime(tree / "random.bin")
    before = tree_state(tree)
    [again] = upload(customer, tree / "random.bin", "docs/random.bin")
    assert again["new_chunks"] == 0 and again["sent_bytes"] == 0
    assert again["version"] != listed["docs/random.bin"]["version"]
    assert file_data_on_suppliers(customer) == stored
    assert used_on_suppliers(suppliers) - used < CATALOGUE_COPIES

    # The supplier at position 0 (asked first for every chunk) killed: every file still
    # downloads, byte-identical.
    first = hired[0]["idurl"].rsplit("/", 1)[1].removesuffix(".xml")
    [victim] = [host for host in suppliers if names[host.name] == first]
    os.kill(victim.pid(), signal.SIGKILL)
    after_loss = tmp_path / "after-loss"
    customer.bitdust("file", "download", "docs", str(after_loss))
    assert tree_state(after_loss) == before

    info = customer.data("file", "info", "docs/random.bin")
    assert [v["version"] for v in info["versions"]] == [again["version"], first_version]
    hired_idurls = [row["idurl"] for row in hired]
    for chunk in info["versions"][0]["chunks"]:
        assert [f["supplier"] for f in chunk["fragments"]] == hired_idurls

    # Deleting a directory frees its chunks on the suppliers that are up (the dead one's
    # fragments are deleted when it is back); the rest stays restorable.
    alive = [host for host in suppliers if host is not victim]
    used_alive = used_on_suppliers(alive)
    deleted = customer.data("file", "delete", "docs/sub")
    assert deleted["files"] == 3
    status, answer = customer.api("DELETE", "/file/delete/v1?remote=docs/sub")
    assert (status, answer["errors"]) == (404, ["no file or directory 'docs/sub' in the catalogue"])
    assert not [r for r in customer.data("file", "list") if r["remote"].startswith("docs/sub/")]
    assert used_on_suppliers(alive) < used_alive
    customer.bitdust("file", "download", "docs/random.bin", str(tmp_path / "kept.bin"))
    assert (tmp_path / "kept.bin").read_bytes() == (tree / "random.bin").read_bytes()


@pytest.mark.timeout(420)
def test_deduplication_sends_only_changed_chunks(
    guide_hosts: dict[str, GuideHost], customer: GuideHost, tmp_path: Path
) -> None:
    names = {"host-a.com": "alice", "host-b.com": "bob", "host-c.com": "carl", "host-d.com": "dave"}
    suppliers = start_suppliers(guide_hosts, names)
    start_customer(customer)
    big = write_random(tmp_path / "big.bin", 64 * MiB, 5)
    [first] = upload(customer, big, "big.bin")
    assert first["new_chunks"] == first["chunks"] >= 8  # 64 MiB of 4 MiB average chunks
    stored = file_data_on_suppliers(customer)
    assert stored == first["sent_bytes"] >= 2 * 64 * MiB  # k = 2 of N = 4: twice the data
    used = used_on_suppliers(suppliers)
    assert stored <= used < stored + CATALOGUE_COPIES

    os.utime(big)  # the same bytes, read and cut again
    [second] = upload(customer, big, "big.bin")
    assert second["new_chunks"] == 0 and second["sent_bytes"] == 0
    assert file_data_on_suppliers(customer) == stored
    assert used_on_suppliers(suppliers) - used < CATALOGUE_COPIES

    data = bytearray(big.read_bytes())
    data[32 * MiB : 33 * MiB] = hashlib.shake_256(b"changed").digest(MiB)
    big.write_bytes(bytes(data))
    [third] = upload(customer, big, "big.bin")
    assert 1 <= third["new_chunks"] <= 3, third
    assert third["sent_bytes"] < first["sent_bytes"] / 4, third
    assert file_data_on_suppliers(customer) == stored + third["sent_bytes"]

    restored = tmp_path / "restored.bin"
    customer.bitdust("file", "download", "big.bin", str(restored))
    assert hashlib.sha256(restored.read_bytes()).digest() == hashlib.sha256(data).digest()
    original = tmp_path / "original.bin"
    customer.bitdust(
        "file", "download", "big.bin", str(original), "--version", str(first["version"])
    )
    assert original.read_bytes() == write_random(tmp_path / "again.bin", 64 * MiB, 5).read_bytes()


@pytest.mark.timeout(420)
def test_quota_and_non_customer_refusals(
    guide_hosts: dict[str, GuideHost], customer: GuideHost, tmp_path: Path
) -> None:
    """Two suppliers, a customer that asked for 4 MB: each supplier grants it 4 MB (needed / N
    * 2) and refuses a 6 MB fragment with the reason; a supplier that rejects the customer
    refuses its next write; what was stored before stays restorable from the other."""
    a, b = start_core(guide_hosts, SERVERS)
    for host, name in ((a, "alice"), (b, "bob")):
        host.bitdust("set", "services/supplier/enabled", "true")
        host.bitdust("set", "services/supplier/donated-space", "20", "MB")
        create_identity(host, name)
        host.bitdust("restart")
    start_customer(
        customer,
        suppliers_number=2,
        **{"services/customer/needed-space": "4 MB", "services/customer/data-fragments": 1},
    )
    customers = a.data("customer", "list")
    assert [row["quota"] for row in customers] == [4 * MiB]
    small = write_random(tmp_path / "small.bin", MiB, 6)
    [stored] = upload(customer, small, "small.bin")
    assert stored["new_chunks"] == 1

    big = write_random(tmp_path / "big.bin", 6 * MiB, 7)
    refused = cli(customer.env, "file", "upload", str(big), "big.bin")
    assert refused.returncode == 1
    assert "over quota" in refused.stderr, refused.stderr
    assert [row["remote"] for row in customer.data("file", "list")] == ["small.bin"]

    eve = customers[0]["idurl"]
    rejected = a.data("customer", "reject", eve)
    assert rejected["idurl"] == eve and rejected["freed"] > 0
    assert a.data("customer", "list") == []
    other = write_random(tmp_path / "other.bin", MiB, 8)
    refused = cli(customer.env, "file", "upload", str(other), "other.bin")
    assert refused.returncode == 1
    assert "not a customer of this supplier" in refused.stderr, refused.stderr

    restored = tmp_path / "restored.bin"
    customer.bitdust("file", "download", "small.bin", str(restored))  # k = 1: bob has it
    assert restored.read_bytes() == small.read_bytes()


@pytest.mark.timeout(420)
def test_customer_behind_a_router_backs_up_and_restores(
    guide_hosts: dict[str, GuideHost], customer: GuideHost, tmp_path: Path
) -> None:
    """The customer accepts no connections (proxy-transport on): suppliers reach it through
    the router on host-c.com, and it backs up and restores the same way."""
    a, b = start_core(guide_hosts, SERVERS)
    c = guide_hosts["host-c.com"]
    c.configure(
        "host-a.com:14441",
        **{"services/identity-propagate/known-servers": SERVERS,
           "services/proxy-server/enabled": "true"},
    )  # fmt: skip
    c.bitdust("daemon")
    create_identity(c, "router")
    c.bitdust("restart")
    for host, name in ((a, "alice"), (b, "bob")):
        host.bitdust("set", "services/supplier/enabled", "true")
        host.bitdust("set", "services/supplier/donated-space", "1", "GB")
        create_identity(host, name)
        host.bitdust("restart")
    start_customer(customer, suppliers_number=2, **{"services/proxy-transport/enabled": "true"})
    wait_for(
        lambda: customer.data("network", "status", "--proxy")["proxy"]["router"],
        90,
        "the customer is routed",
    )
    source = write_random(tmp_path / "routed.bin", 5 * MiB, 9)
    [result] = upload(customer, source, "routed.bin")
    assert result["new_chunks"] >= 1
    restored = tmp_path / "restored.bin"
    customer.bitdust("file", "download", "routed.bin", str(restored))
    assert restored.read_bytes() == source.read_bytes()
    contacts = customer.data("network", "status")["identity_contacts"]
    assert contacts and all(c.startswith("tcp://127.0.1.3:7771/") for c in contacts), contacts


@pytest.mark.timeout(420)
def test_a_suppliers_router_lost_in_the_middle_of_an_upload(
    guide_hosts: dict[str, GuideHost], customer: GuideHost, tmp_path: Path
) -> None:
    """Dave, a supplier behind routers, loses his router (SIGKILL) while the customer writes to
    him through it: the upload completes or ends with an error that names him; once he has
    moved to his second router, the upload run again completes, sending only what he lacks,
    and the file restores from his fragments alone (k = 1 of N = 2, Bob the other)."""
    _, b = start_core(guide_hosts, SERVERS)
    c, d = guide_hosts["host-c.com"], guide_hosts["host-d.com"]
    router = {"services/identity-propagate/known-servers": SERVERS,
              "services/proxy-server/enabled": "true"}  # fmt: skip
    c.configure("host-a.com:14441", **router)
    c.bitdust("daemon")
    routers = [create_identity(c, "router1")]
    c.bitdust("restart")
    b.bitdust("set", "services/proxy-server/enabled", "true")
    b.bitdust("set", "services/supplier/enabled", "true")
    b.bitdust("set", "services/supplier/donated-space", "1", "GB")
    routers.append(create_identity(b, "bob"))  # a supplier and the second router
    b.bitdust("restart")
    d.configure(
        "host-a.com:14441",
        **SUPPLIER,
        **{"services/nodes-lookup/enabled": "true", "services/proxy-transport/enabled": "true",
           "services/proxy-transport/preferred-routers": ",".join(routers)},
    )  # fmt: skip
    d.bitdust("daemon")
    dave = create_identity(d, "dave")
    d.bitdust("restart")  # advertises at once now that it has an identity

    def router_of_dave() -> str | None:
        return d.data("network", "status", "--proxy")["proxy"].get("router")

    wait_for(lambda: router_of_dave() == routers[0], 90, "dave routed through host-c.com")
    start_customer(customer, suppliers_number=2, **{"services/customer/data-fragments": 1})
    assert dave in [row["idurl"] for row in customer.data("supplier", "list")]

    big = write_random(tmp_path / "big.bin", 96 * MiB, 11)
    stderr = upload_killing(customer, big, "big.bin", c)
    assert not stderr or dave in stderr, stderr

    wait_for(lambda: router_of_dave() == routers[1], 90, "dave moved to host-b.com")
    [done] = upload(customer, big, "big.bin")
    # the chunks stored before the kill (two at least) are not sent again
    assert done["new_chunks"] <= done["chunks"] - 2, done
    assert done["sent_bytes"] < 2 * big.stat().st_size, done
    b.bitdust("set", "services/supplier/enabled", "false")  # bob's copy gone: dave's restores it
    restored = tmp_path / "restored.bin"
    customer.bitdust("file", "download", "big.bin", str(restored))
    assert restored.read_bytes() == big.read_bytes()
