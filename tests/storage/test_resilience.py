"""Stored data survives (issue 13) with real processes on loopback, under the shared test lock:
the customer's machine is lost and everything comes back from the key backup alone."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bitdust.storage.customer import MAINTENANCE_TICK, RECOVERY_ROUNDS
from tests.helpers import SPARE_HOST, GuideHost, cli, wait_for
from tests.storage.test_guide_storage import (
    SERVERS,
    SUPPLIER,
    MiB,
    create_identity,
    customer,  # noqa: F401 (a fixture)
    start_customer,
    start_suppliers,
    tree_state,
    upload,
    upload_killing,
    write_random,
)
from tests.test_guide_identity import start_core

NAMES = {"host-a.com": "alice", "host-b.com": "bob", "host-c.com": "carl", "host-d.com": "dave"}


def offsite_current(host: GuideHost) -> bool:
    consumed = host.data("storage")["consumed"]
    return consumed["offsite_generation"] == consumed["catalogue_generation"]


@pytest.mark.timeout(420)
def test_a_lost_machine_recovers_every_file_from_the_key_backup(
    guide_hosts: dict[str, GuideHost],
    customer: GuideHost,  # noqa: F811
    tmp_path: Path,
) -> None:
    suppliers = start_suppliers(guide_hosts, NAMES)
    start_customer(customer)
    backup = tmp_path / "eve-key-backup.txt"
    customer.bitdust("identity", "backup", str(backup))  # before any upload: enough

    tree = tmp_path / "docs"
    (tree / "sub").mkdir(parents=True)
    write_random(tree / "a.bin", 3 * MiB, 1)
    write_random(tree / "sub" / "b.bin", 100_000, 2).chmod(0o600)
    write_random(tree / "gone", 1000, 3)
    upload(customer, tree, "docs")
    wait_for(lambda: offsite_current(customer), 60, "the catalogue stored off-site")

    # A supplier is lost, and the catalogue changes: its copy is still kept current on the
    # others (k + 1 of them suffice), not held until the lost one is replaced.
    hired = [row["idurl"] for row in customer.data("supplier", "list")]
    position, _ = plain_suppliers(hired)
    os.kill(host_of(suppliers, hired[position]).pid(), signal.SIGKILL)
    customer.bitdust("file", "delete", "docs/gone")
    (tree / "gone").unlink()
    before = tree_state(tree)
    listed = customer.data("file", "list")
    wait_for(lambda: offsite_current(customer), 60, "the changed catalogue stored off-site")

    customer.bitdust("stop")
    shutil.rmtree(customer.base / "state")  # the machine is lost; its config is set up anew
    customer.bitdust("daemon")
    customer.bitdust("identity", "restore", str(backup))
    wait_for(lambda: customer.data("file", "list") == listed, 90, "the catalogue recovered")
    restored = tmp_path / "restored"
    customer.bitdust("file", "download", "docs", str(restored))
    assert tree_state(restored) == before
    assert len(customer.data("supplier", "list")) == 4


FAST_AUDITS = {
    "services/customer/audit-interval": "2",
    "services/customer/audit-sample": "1000",  # every fragment, every audit
    "services/customer/supplier-away-limit": "6",
}


@pytest.fixture
def spare(tmp_path: Path) -> Iterator[GuideHost]:
    """A sixth host that becomes a supplier when the test says so, stopped at the end."""
    host = GuideHost(tmp_path, SPARE_HOST)
    yield host
    cli(host.env, "stop")


def start_spare_supplier(spare: GuideHost, name: str) -> str:
    spare.configure("host-a.com:14441", **SUPPLIER)
    spare.bitdust("daemon")
    idurl = create_identity(spare, name)
    spare.bitdust("restart")  # advertises at once now that it has an identity
    return idurl


def fragments_by_index(host: GuideHost, remote: str) -> list[list[tuple[str, str]]]:
    """For each chunk of the newest version of ``remote``: (supplier, state) by fragment."""
    info = host.data("file", "info", remote)
    return [
        [(f["supplier"], f["state"]) for f in chunk["fragments"]]
        for chunk in info["versions"][0]["chunks"]
    ]


def plain_suppliers(hired: list[str]) -> tuple[int, int]:
    """The positions of the suppliers on host-c.com and host-d.com: those a test may kill
    without also killing an identity server (host-a.com and host-b.com serve every identity of
    the network, and a node that cannot fetch identities can reach nobody new)."""
    names = {NAMES["host-c.com"], NAMES["host-d.com"]}
    first, second = (i for i, idurl in enumerate(hired) if _name(idurl) in names)
    return first, second


def _name(idurl: str) -> str:
    return idurl.rsplit("/", 1)[1].removesuffix(".xml")


def host_of(hosts: list[GuideHost], idurl: str) -> GuideHost:
    [host] = [h for h in hosts if NAMES.get(h.name) == _name(idurl)]
    return host


@pytest.mark.timeout(420)
def test_a_lost_supplier_is_replaced_and_its_fragments_rebuilt(
    guide_hosts: dict[str, GuideHost],
    customer: GuideHost,  # noqa: F811
    spare: GuideHost,
    tmp_path: Path,
) -> None:
    """SIGKILL one of four suppliers: a fifth is hired in its place and the lost fragments are
    rebuilt onto it; then SIGKILL a second original one: every file still downloads."""
    suppliers = start_suppliers(guide_hosts, NAMES)
    start_customer(customer, **FAST_AUDITS)
    tree = tmp_path / "docs"
    tree.mkdir()
    for seed in range(3):
        write_random(tree / f"f{seed}.bin", (seed + 1) * MiB, seed)
    before = tree_state(tree)
    upload(customer, tree, "docs")
    fifth = start_spare_supplier(spare, "erin")

    hired = [row["idurl"] for row in customer.data("supplier", "list")]
    position, other = plain_suppliers(hired)
    os.kill(host_of(suppliers, hired[position]).pid(), signal.SIGKILL)
    wait_for(
        lambda: customer.data("supplier", "list")[position]["idurl"] == fifth,
        90,
        f"the fifth supplier hired at position {position}",
    )
    wait_for(
        lambda: all(
            chunk[position] == (fifth, "stored")
            for name in before
            for chunk in fragments_by_index(customer, f"docs/{name}")
        ),
        90,
        f"every fragment {position} rebuilt on the fifth supplier",
    )
    assert spare.api("GET", "/space/donated/v1")[1]["result"]["used"] > 0

    os.kill(host_of(suppliers, hired[other]).pid(), signal.SIGKILL)
    restored = tmp_path / "restored"
    customer.bitdust("file", "download", "docs", str(restored))
    assert tree_state(restored) == before


@pytest.mark.timeout(420)
def test_a_corrupted_fragment_is_found_by_an_audit_and_repaired(
    guide_hosts: dict[str, GuideHost],
    customer: GuideHost,  # noqa: F811
    tmp_path: Path,
) -> None:
    suppliers = start_suppliers(guide_hosts, NAMES)
    start_customer(customer, **FAST_AUDITS)
    source = write_random(tmp_path / "data.bin", 3 * MiB, 7)
    upload(customer, source, "data.bin")
    victim = suppliers[2]
    # the largest fragment there: one of the file's (the catalogue's copies are far smaller)
    fragment = max(
        (p for p in (victim.base / "state").rglob("*") if _is_fragment(p)),
        key=lambda p: p.stat().st_size,
    )
    good = fragment.read_bytes()
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0xFF
    fragment.write_bytes(bytes(damaged))

    restored = tmp_path / "restored.bin"
    customer.bitdust("file", "download", "data.bin", str(restored))  # throughout
    assert restored.read_bytes() == source.read_bytes()
    wait_for(lambda: fragment.exists() and fragment.read_bytes() == good, 60, "the repair")
    rebuilt = customer.data("service", "customer")["counters"]["chunks_rebuilt"]
    assert rebuilt >= 1
    assert all(
        state == "stored" for c in fragments_by_index(customer, "data.bin") for _, state in c
    )
    customer.bitdust("file", "download", "data.bin", str(restored))
    assert restored.read_bytes() == source.read_bytes()


def _is_fragment(path: Path) -> bool:
    return path.is_file() and "fragments" in path.parts and len(path.name) == 64


@pytest.mark.timeout(420)
def test_a_customer_killed_in_the_middle_of_an_upload(
    guide_hosts: dict[str, GuideHost],
    customer: GuideHost,  # noqa: F811
    tmp_path: Path,
) -> None:
    """SIGKILL the customer while it uploads: the CLI says so; after a restart the earlier
    files are intact, no partial version is listed, and the upload run again completes."""
    start_suppliers(guide_hosts, NAMES)
    start_customer(customer)
    early = write_random(tmp_path / "early.bin", 2 * MiB, 1)
    upload(customer, early, "early.bin")
    big = write_random(tmp_path / "big.bin", 96 * MiB, 2)
    stderr = upload_killing(customer, big, "big.bin", customer)
    assert stderr.startswith("bitdust: "), stderr

    customer.bitdust("daemon")
    assert [row["remote"] for row in customer.data("file", "list")] == ["early.bin"]
    [done] = upload(customer, big, "big.bin")
    assert done["chunks"] > done["new_chunks"]  # what was sent before the kill is not sent again
    for name, local in (("early.bin", early), ("big.bin", big)):
        restored = tmp_path / f"restored-{name}"
        customer.bitdust("file", "download", name, str(restored))
        assert restored.read_bytes() == local.read_bytes()


def mount_small_tmpfs(path: Path, size: str) -> None:
    """A small file system at ``path``, or skip: mounting needs CAP_SYS_ADMIN."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {mounted.stderr.strip()}")


@pytest.mark.timeout(420)
def test_a_supplier_with_a_full_disk_refuses_and_the_data_goes_elsewhere(
    guide_hosts: dict[str, GuideHost],
    customer: GuideHost,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A supplier donates 50 GB on a disk of 3 MB: it refuses the fragment that does not fit
    with the reason, the customer hires another one for that position and the upload
    completes; nothing stored earlier is lost."""
    a, b = start_core(guide_hosts, SERVERS)
    c = guide_hosts["host-c.com"]
    mount_small_tmpfs(c.base / "state", "3m")
    try:
        c.configure("host-a.com:14441", **SUPPLIER)
        c.bitdust("daemon")
        a.bitdust("set", "services/supplier/enabled", "true")
        for host, name in ((a, "alice"), (c, "carl")):
            create_identity(host, name)
            host.bitdust("restart")
        start_customer(customer, suppliers_number=2, **{"services/customer/data-fragments": 1})
        early = write_random(tmp_path / "early.bin", 200_000, 1)
        upload(customer, early, "early.bin")

        b.bitdust("set", "services/supplier/enabled", "true")
        bob = create_identity(b, "bob")
        b.bitdust("restart")
        big = write_random(tmp_path / "big.bin", 6 * MiB, 2)
        [done] = upload(customer, big, "big.bin")
        assert done["new_chunks"] >= 1
        assert bob in [row["idurl"] for row in customer.data("supplier", "list")]
        for name, local in (("early.bin", early), ("big.bin", big)):
            restored = tmp_path / f"restored-{name}"
            customer.bitdust("file", "download", name, str(restored))
            assert restored.read_bytes() == local.read_bytes()
        refused = c.data("service", "supplier")["counters"]
        assert any("disk" in reason for reason in refused.get("refused", {})), refused
    finally:
        cli(c.env, "stop")
        subprocess.run(["umount", "-l", str(c.base / "state")], check=False)


@pytest.mark.timeout(420)
def test_a_supplier_killed_in_the_middle_of_a_write(
    guide_hosts: dict[str, GuideHost],
    customer: GuideHost,  # noqa: F811
    spare: GuideHost,
    tmp_path: Path,
) -> None:
    """SIGKILL a supplier while the customer writes to it: the upload ends with an error that
    names it; once it is replaced the upload run again completes, sending only what was not
    stored yet, and everything restores."""
    suppliers = start_suppliers(guide_hosts, NAMES)
    start_customer(customer, **FAST_AUDITS)
    big = write_random(tmp_path / "big.bin", 96 * MiB, 3)
    start_spare_supplier(spare, "erin")
    hired = [row["idurl"] for row in customer.data("supplier", "list")]
    position, _ = plain_suppliers(hired)
    stderr = upload_killing(customer, big, "big.bin", host_of(suppliers, hired[position]))
    assert hired[position] in stderr, stderr

    wait_for(
        lambda: hired[position] not in [r["idurl"] for r in customer.data("supplier", "list")],
        90,
        "the killed supplier replaced",
    )
    [done] = upload(customer, big, "big.bin")
    # the chunks stored before the kill: only their fragment for the new supplier is sent
    assert done["sent_bytes"] < 0.9 * 2 * big.stat().st_size, done
    restored = tmp_path / "restored.bin"
    customer.bitdust("file", "download", "big.bin", str(restored))
    assert restored.read_bytes() == big.read_bytes()


def fragments_on(suppliers: list[GuideHost]) -> int:
    return sum(_is_fragment(p) for host in suppliers for p in (host.base / "state").rglob("*"))


@pytest.mark.timeout(420)
def test_a_restarted_customer_finds_its_catalogue_copies_instead_of_storing_another(
    guide_hosts: dict[str, GuideHost],
    customer: GuideHost,  # noqa: F811
    tmp_path: Path,
) -> None:
    """After a restart the catalogue is not stored off-site again while it has not changed; a
    change replaces the older of its two copies there (the slot without the newest): however
    often the customer restarts, the suppliers hold as many fragments. A customer that starts
    while its suppliers are down waits for them before it stores anything."""
    suppliers = start_suppliers(guide_hosts, NAMES)
    start_customer(customer)
    tree = tmp_path / "docs"
    tree.mkdir()
    for n in range(3):
        write_random(tree / f"{n}.bin", 100_000, n)
    upload(customer, tree, "docs")
    touched = tree / "0.bin"

    def new_version() -> None:
        """A new version of a file with the same bytes: a change of the catalogue alone."""
        os.utime(touched)
        [done] = upload(customer, touched, "docs/0.bin")
        assert done["sent_bytes"] == 0
        wait_for(lambda: offsite_current(customer), 60, "the changed catalogue stored off-site")

    new_version()
    new_version()  # both slots hold a copy now
    stored = fragments_on(suppliers)
    for _ in range(2):
        customer.bitdust("stop")
        customer.bitdust("daemon")
        wait_for(lambda: offsite_current(customer), 60, "the catalogue's copies found off-site")
        assert customer.data("service", "customer")["sent_bytes"] == 0
        new_version()
        wait_for(
            lambda: fragments_on(suppliers) == stored, 30, "the older copy's fragments deleted"
        )

    # Started while none of its suppliers answers (a boot before the network is up): it stores
    # no copy blind, over rounds of maintenance, and none once they answer.
    for host in suppliers:
        host.bitdust("stop")
    customer.bitdust("stop")
    customer.bitdust("daemon")
    time.sleep(RECOVERY_ROUNDS * MAINTENANCE_TICK + 2)
    assert not offsite_current(customer)
    for host in suppliers:
        host.bitdust("daemon")
    wait_for(lambda: offsite_current(customer), 90, "the catalogue's copies found off-site")
    assert customer.data("service", "customer")["sent_bytes"] == 0
