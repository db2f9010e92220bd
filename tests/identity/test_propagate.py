"""identity-propagate: known servers, propagation to two real servers, name checks, create and
restore end to end."""

from __future__ import annotations

import datetime
import time

import pytest

from bitdust.config import Paths, load_config
from bitdust.identity import propagate as propagate_module
from bitdust.identity.document import parse_identity
from bitdust.identity.errors import (
    IdentityError,
    WrongPassphraseError,
)
from bitdust.identity.keys import key_backup_bytes, public_key_to_openssh
from bitdust.identity.local import (
    load_local_identity,
    local_identity_exists,
    save_local_identity,
)
from bitdust.identity.propagate import (
    KNOWN_SERVERS_SETTING,
    KnownServer,
    build_identity,
    check_name_available,
    create_identity,
    idurls_for,
    known_servers,
    next_revision,
    propagate,
    recover_identity,
)
from bitdust.identity.signing import verify
from tests.identity.conftest import TODAY, loop_ticks, resolve
from tests.ports import free_port


def test_known_servers_come_from_the_setting_config_parses(tmp_path):
    env = {"BITDUST_CONFIG_DIR": str(tmp_path / "etc"), "BITDUST_STATE_DIR": str(tmp_path / "s"),
           "BITDUST_RUNTIME_DIR": str(tmp_path / "r")}  # fmt: skip
    config = load_config(
        Paths.for_instance("default", env),
        env={},
        flags={KNOWN_SERVERS_SETTING: "host-a.com:80:6661, host-b.com:8084"},
    )
    assert known_servers(config[KNOWN_SERVERS_SETTING]) == [
        KnownServer("host-a.com", 80, 6661),
        KnownServer("host-b.com", 8084, 6661),
    ]


def test_idurls_for_writes_port_only_when_not_80():
    servers = [KnownServer("host-a.com", 80, 6661), KnownServer("host-b.com", 8084, 6661)]
    assert idurls_for("alice", servers) == [
        "http://host-a.com/alice.xml",
        "http://host-b.com:8084/alice.xml",
    ]


def test_build_and_next_revision(key, other_key):
    servers = [KnownServer("host-a.com", 80, 6661), KnownServer("host-b.com", 8084, 6661)]
    identity = build_identity("alice", servers, ["tcp://127.0.1.1:7771"], key, today=TODAY)
    verify(identity, accept_legacy=False)
    assert identity.revision == 1 and identity.date == "Nov 25, 2026"
    newer = next_revision(
        identity, key, contacts=["tcp://127.0.1.1:7772"], today=datetime.date(2026, 12, 1)
    )
    verify(newer, accept_legacy=False)
    assert (newer.revision, newer.contacts, newer.date) == (
        2,
        ("tcp://127.0.1.1:7772",),
        "Dec 01, 2026",
    )
    with pytest.raises(IdentityError, match="does not belong"):
        next_revision(identity, other_key)


# -- against two real identity servers -----------------------------------------------------------


async def test_propagate_to_two_servers(two_servers, key):
    servers, handles = two_servers
    identity = build_identity("alice", servers, ["tcp://127.0.1.1:7771"], key, today=TODAY)
    results = await propagate(identity.to_xml(), servers, resolve, retries=2, backoff=0.01)
    assert [(r.ok, r.idurl, r.attempts) for r in results] == [
        (True, identity.sources[0], 1),
        (True, identity.sources[1], 1),
    ]
    for handle in handles:
        assert handle.store.get("alice") == identity.to_xml()


async def test_propagate_reports_refusal_and_unreachable_server(two_servers, key, other_key):
    servers, _ = two_servers
    identity = build_identity("alice", servers, [], key, today=TODAY)
    await propagate(identity.to_xml(), servers[:1], resolve)
    takeover = build_identity("alice", servers, [], other_key, today=TODAY, revision=5)
    dead = KnownServer("host-c.com", free_port(host="127.0.1.3"), free_port(host="127.0.1.3"))
    results = await propagate(
        takeover.to_xml(), [servers[0], dead], resolve, retries=3, backoff=0.01, timeout=2
    )
    refused, unreachable = results
    assert not refused.ok and refused.refused and refused.attempts == 1
    assert "key takeover refused" in refused.error
    assert not unreachable.ok and not unreachable.refused and unreachable.attempts == 3
    assert "cannot reach" in unreachable.error


async def test_check_name_available(two_servers, key):
    servers, _ = two_servers
    identity = build_identity("alice", servers[1:], [], key, today=TODAY)
    await propagate(identity.to_xml(), servers[1:], resolve)
    taken = await check_name_available("alice", servers, resolve)
    assert not taken.available and taken.taken_on == (servers[1],)
    free = await check_name_available("bob", servers, resolve)
    assert free.available and free.taken_on == () and free.unreachable == ()
    dead = KnownServer("host-c.com", free_port(host="127.0.1.3"), free_port(host="127.0.1.3"))
    partly = await check_name_available("alice", [servers[1], dead], resolve, timeout=2)
    assert partly.taken_on == (servers[1],)
    assert [(s, "cannot reach" in reason) for s, reason in partly.unreachable] == [(dead, True)]


async def test_create_identity_then_backup_and_restore(two_servers, tmp_path):
    servers, handles = two_servers
    created = await create_identity(
        "carol", servers, ["tcp://127.0.1.1:7771"], resolve, key_bits=1024, min_servers=2
    )
    assert created.identity.name == "carol"
    assert all(result.ok for result in created.results)
    assert public_key_to_openssh(created.private_key) == created.identity.publickey
    for handle in handles:
        assert parse_identity(handle.store.get("carol")) == created.identity

    state = tmp_path / "state" / "identity"
    save_local_identity(state, created.private_key, created.identity)
    assert local_identity_exists(state)
    assert (state / "private_key.pem").stat().st_mode & 0o777 == 0o600
    assert load_local_identity(state).identity == created.identity

    backup = key_backup_bytes(created.identity.idurl, created.private_key, passphrase="pw")
    with pytest.raises(WrongPassphraseError, match="wrong passphrase"):
        await recover_identity(backup, resolve, passphrase="nope")
    key, identity = await recover_identity(backup, resolve, passphrase="pw")
    assert identity == created.identity
    assert key.private_numbers() == created.private_key.private_numbers()

    with pytest.raises(IdentityError, match=r"already taken on host-a\.com, host-b\.com"):
        await create_identity("carol", servers, [], resolve, key_bits=1024)


async def test_create_identity_fails_when_too_few_servers_accept(two_servers):
    servers, _ = two_servers
    dead = KnownServer("host-c.com", free_port(host="127.0.1.3"), free_port(host="127.0.1.3"))
    with pytest.raises(IdentityError, match="accepted by 1 of 2 identity servers, 2 needed"):
        await create_identity(
            "dave",
            [servers[0], dead],
            [],
            resolve,
            key_bits=1024,
            min_servers=2,
            retries=1,
            timeout=2,
        )


async def test_restore_decrypts_the_backup_off_the_event_loop(two_servers, key, monkeypatch):
    servers, _ = two_servers
    identity = build_identity("erin", servers, [], key, today=TODAY)
    await propagate(identity.to_xml(), servers, resolve)
    backup = key_backup_bytes(identity.idurl, key, passphrase="pw")
    real = propagate_module.read_key_backup

    def slow_read(*args):
        time.sleep(0.5)  # a passphrase KDF on a slow machine
        return real(*args)

    monkeypatch.setattr(propagate_module, "read_key_backup", slow_read)
    async with loop_ticks() as ticks:
        _, restored = await recover_identity(backup, resolve, passphrase="pw")
    assert restored == identity
    assert ticks[0] >= 20  # 0 when the decryption blocks the loop for its 0.5 s
