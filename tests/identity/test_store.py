"""IdentityStore: every refusal rule, each leaving the directory byte for byte unchanged."""

from __future__ import annotations

import logging
import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bitdust.identity.document import SCHEME_LEGACY, parse_identity
from bitdust.identity.errors import IdentityError, IdentityRefused
from bitdust.identity.keys import generate_private_key
from bitdust.identity.store import IdentityStore
from tests.identity.conftest import make_identity, reference_file, snapshot
from tests.identity.test_document import BILLION_LAUGHS, XXE

NOW = 1_800_000_000.0


@pytest.fixture
def store(tmp_path):
    return IdentityStore(tmp_path / "ids", "host-a.com", 80, expiry_seconds=1000)


@pytest.fixture
def stored(store, key):
    """``store`` already holding alice revision 2."""
    store.submit(make_identity(key, revision=2).to_xml(), NOW)
    return store


def _assert_refused(store, data: bytes, match: str, caplog) -> None:
    before = snapshot(store.directory)
    caplog.clear()
    with (
        caplog.at_level(logging.WARNING, logger="bitdust.identity.store"),
        pytest.raises(IdentityRefused, match=match) as refused,
    ):
        store.submit(data, NOW + 10, peer="127.0.0.9:5555")
    assert snapshot(store.directory) == before
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and refused.value.reason in lines[0] and "127.0.0.9" in lines[0]
    assert "PRIVATE" not in lines[0]


def test_accepts_and_serves_a_valid_identity(store, key):
    identity = make_identity(key)
    accepted = store.submit(identity.to_xml(), NOW)
    assert accepted == identity
    assert store.names() == ["alice"]
    assert store.get("alice") == identity.to_xml()
    assert store.lookup("alice").mtime == NOW
    assert store.idurl_for("alice") == "http://host-a.com/alice.xml"


def test_refuses_bad_signature(store, key, caplog):
    data = make_identity(key).to_xml().replace(b"tcp://127.0.1.1:7771", b"tcp://127.0.1.1:7772")
    _assert_refused(store, data, "bad signature", caplog)


def test_refuses_legacy_signature_unless_accepted(tmp_path, key, caplog):
    legacy = make_identity(key, scheme=SCHEME_LEGACY).to_xml()
    strict = IdentityStore(tmp_path / "strict", "host-a.com", 80)
    _assert_refused(strict, legacy, "accept-legacy-identities", caplog)
    lenient = IdentityStore(tmp_path / "lenient", "host-a.com", 80, accept_legacy=True)
    assert lenient.submit(legacy, NOW).scheme == SCHEME_LEGACY


def test_accepts_bitdust_reference_file_with_legacy_on(tmp_path):
    store = IdentityStore(tmp_path / "ids", "127.0.0.1", 8084, accept_legacy=True)
    data = reference_file("alice.xml")
    store.submit(data, NOW)
    assert store.get("alice") == data


def test_refuses_foreign_host(store, key, caplog):
    data = make_identity(key, sources=("http://host-b.com/alice.xml",)).to_xml()
    _assert_refused(store, data, "none of the identity's sources is on this server", caplog)


def test_refuses_foreign_port(store, key, caplog):
    # Same host, but the IDURL names port 8084 while this server is reached on 80.
    data = make_identity(key, sources=("http://host-a.com:8084/alice.xml",)).to_xml()
    _assert_refused(store, data, "expected http://host-a.com/alice.xml", caplog)


def test_matches_host_and_public_port(tmp_path, key):
    store = IdentityStore(tmp_path / "ids", "host-a.com", 8084)
    ok = make_identity(
        key, sources=("http://host-b.com/alice.xml", "http://host-a.com:8084/alice.xml")
    )
    store.submit(ok.to_xml(), NOW)
    assert store.names() == ["alice"]


def test_refuses_key_takeover(stored, other_key, caplog):
    data = make_identity(other_key, revision=9).to_xml()
    _assert_refused(stored, data, "key takeover refused", caplog)


def test_refuses_older_revision(stored, key, caplog):
    _assert_refused(
        stored, make_identity(key, revision=1).to_xml(), "older than the stored revision 2", caplog
    )


def test_refuses_equal_revision_with_different_content(stored, key, caplog):
    data = make_identity(key, revision=2, contacts=("tcp://127.0.1.1:9999",)).to_xml()
    _assert_refused(stored, data, "already stored with different content", caplog)


def test_equal_revision_same_content_is_a_touch(stored, key):
    data = make_identity(key, revision=2).to_xml()
    before = stored.get("alice")
    stored.submit(data, NOW + 500)
    assert stored.get("alice") == before
    assert stored.lookup("alice").mtime == NOW + 500
    assert stored.expire(NOW + 1200) == []  # the touch refreshed the expiry
    assert stored.expire(NOW + 1500) == ["alice"]


def test_higher_revision_replaces(stored, key):
    newer = make_identity(key, revision=3, contacts=("tcp://127.0.1.1:8888",))
    stored.submit(newer.to_xml(), NOW + 1)
    assert parse_identity(stored.get("alice")) == newer


def test_refuses_oversized(store, key, caplog):
    data = make_identity(key).to_xml()
    small = IdentityStore(store.directory, "host-a.com", 80, size_limit=len(data) - 1)
    _assert_refused(
        small, data, f"identity is {len(data)} bytes; this server accepts at most", caplog
    )
    _assert_refused(store, b"x" * 70000, "accepts at most 65536", caplog)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"<identity><sources>", "malformed identity: .*not well-formed"),
        (b"not xml at all", "malformed identity"),
        (BILLION_LAUGHS, "malformed identity: .*DOCTYPE"),
        (XXE, "malformed identity: .*DOCTYPE"),
    ],
)
def test_refuses_malformed_and_hostile_xml(stored, data, match, caplog):
    _assert_refused(stored, data, match, caplog)


def test_refusal_leaves_existing_identity_intact(stored, other_key, caplog):
    before = stored.get("alice")
    _assert_refused(stored, make_identity(other_key, revision=5).to_xml(), "key takeover", caplog)
    assert stored.get("alice") == before


def test_expire_removes_untouched_identities(store, key, other_key):
    store.submit(make_identity(key).to_xml(), NOW)
    store.submit(make_identity(other_key, name="bob").to_xml(), NOW + 600)
    assert store.expire(NOW + 999) == []
    assert store.expire(NOW + 1000) == ["alice"]
    assert store.names() == ["bob"]
    assert store.get("alice") is None


def test_server_full_refuses_new_names_only(tmp_path, key, other_key, caplog):
    store = IdentityStore(tmp_path / "ids", "host-a.com", 80, max_identities=1)
    store.submit(make_identity(key).to_xml(), NOW)
    _assert_refused(store, make_identity(other_key, name="bob").to_xml(), "full", caplog)
    store.submit(make_identity(key, revision=2).to_xml(), NOW)


def test_get_of_unknown_or_invalid_name(store):
    assert store.get("nobody") is None
    assert store.get("../etc/passwd") is None
    assert store.names() == []


def test_ignores_foreign_files_and_removes_stale_temp_files(tmp_path):
    directory = tmp_path / "ids"
    directory.mkdir()
    (directory / ".alice.xml.abc.tmp").write_bytes(b"half")
    (directory / "README").write_text("x")
    (directory / "Bad Name.xml").write_text("x")
    store = IdentityStore(directory, "host-a.com", 80)
    assert store.names() == []
    assert not (directory / ".alice.xml.abc.tmp").exists()


def test_bad_configuration_is_refused(tmp_path):
    with pytest.raises(IdentityError, match="'Host_A' is not a valid host name"):
        IdentityStore(tmp_path, "Host_A", 80)
    with pytest.raises(IdentityError, match="0 is not a valid TCP port"):
        IdentityStore(tmp_path, "host-a.com", 0)
    with pytest.raises(IdentityError, match="size limit 1000000000 must be 1-65536 bytes"):
        IdentityStore(tmp_path, "host-a.com", 80, size_limit=10**9)


def test_refuses_a_public_key_with_a_large_exponent_before_checking_its_signature(
    store, key, caplog
):
    """A 2048-bit modulus with a ~1,500-bit odd exponent: every verification would cost many
    times one with 65537, so the key itself is refused, whatever the signature."""
    n = key.public_key().public_numbers().n
    crafted = rsa.RSAPublicNumbers((1 << 1500) + 1, n).public_key()
    crafted_text = crafted.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    identity = make_identity(key)
    data = identity.to_xml().replace(identity.publickey.encode(), crafted_text)
    _assert_refused(
        store, data, "malformed identity: <publickey>: .*public exponent is not 65537", caplog
    )


def test_counts_come_from_the_index_not_a_directory_scan(tmp_path, key, other_key, monkeypatch):
    directory = tmp_path / "ids"
    first = IdentityStore(directory, "host-a.com", 80)
    first.submit(make_identity(key).to_xml(), NOW)
    reopened = IdentityStore(directory, "host-a.com", 80, max_identities=2)  # scans once
    assert reopened.count() == 1 and reopened.stored_bytes() == 4096

    def no_scan(*args):
        raise AssertionError("the directory was scanned again")

    monkeypatch.setattr("os.scandir", no_scan)
    reopened.submit(make_identity(other_key, name="bob").to_xml(), NOW)
    assert (reopened.count(), reopened.names()) == (2, ["alice", "bob"])
    assert reopened.expire(NOW + 10**9) == ["alice", "bob"]
    assert reopened.count() == 0 and reopened.stored_bytes() == 0


def test_new_names_per_key_are_limited_per_hour(tmp_path, key, caplog):
    store = IdentityStore(tmp_path / "ids", "host-a.com", 80, new_names_per_key=3)
    for name in ("name1", "name2", "name3"):
        store.submit(make_identity(key, name=name).to_xml(), NOW, peer=f"127.0.0.{name[-1]}")
    _assert_refused(
        store,
        make_identity(key, name="name4").to_xml(),
        "this key registered 3 new names in the last hour on this server",
        caplog,
    )
    store.submit(make_identity(key, name="name1", revision=2).to_xml(), NOW + 20)  # updates pass
    store.submit(make_identity(key, name="name4").to_xml(), NOW + 3601)  # an hour later


def test_new_names_per_address_are_limited_per_hour(tmp_path, key, other_key, caplog):
    store = IdentityStore(tmp_path / "ids", "host-a.com", 80, new_names_per_address=2)
    store.submit(make_identity(key, name="name1").to_xml(), NOW, peer="127.0.0.9:5555")
    store.submit(make_identity(other_key, name="name2").to_xml(), NOW, peer="127.0.0.9:5555")
    third = make_identity(generate_private_key(1024), name="name3").to_xml()
    _assert_refused(store, third, "2 new names came from 127.0.0.9:5555 in the last hour", caplog)
    store.submit(third, NOW, peer="127.0.0.10")  # another address has its own quota


def test_store_is_bounded_in_bytes(tmp_path, key, other_key, caplog):
    store = IdentityStore(tmp_path / "ids", "host-a.com", 80, max_bytes=4096)
    store.submit(make_identity(key).to_xml(), NOW)
    _assert_refused(
        store, make_identity(other_key, name="bob").to_xml(), "full \\(4096 bytes", caplog
    )
    store.submit(make_identity(key, revision=2).to_xml(), NOW)  # same size: an update fits


def test_a_flood_of_resends_is_logged_as_a_bounded_number_of_lines(stored, key, caplog):
    data = make_identity(key, revision=2).to_xml()
    with caplog.at_level(logging.INFO, logger="bitdust.identity.store"):
        for _ in range(500):
            stored.submit(data, NOW + 1, peer="127.0.1.3")
    touched = [r for r in caplog.records if "touched" in r.getMessage()]
    assert len(touched) == 60  # ACCEPTED_LINES_PER_MINUTE; the rest are counted


# -- the cache of served identities: a change to a name is served at once ----------------------


def _serve(store, name: str = "alice"):
    """What GET /<name>.xml answers (the server calls ``lookup``), served twice so the second
    answer comes from the cache when the first put it there."""
    first = store.lookup(name)
    assert store.lookup(name) == first
    return first


def test_an_accepted_new_revision_is_served_at_once_with_a_new_etag(stored, key):
    old = _serve(stored)
    newer = make_identity(key, revision=3, contacts=("tcp://127.0.1.1:8888",)).to_xml()
    stored.submit(newer, NOW + 1)
    served = stored.lookup("alice")
    assert served.data == newer != old.data
    assert served.etag != old.etag
    assert served.mtime == NOW + 1 and served.last_modified == "Fri, 15 Jan 2027 08:00:01 GMT"


def test_a_touch_is_served_at_once_with_the_new_last_modified(stored, key):
    old = _serve(stored)
    assert old.last_modified == "Fri, 15 Jan 2027 08:00:00 GMT"
    stored.submit(make_identity(key, revision=2).to_xml(), NOW + 500)  # same content: a touch
    served = stored.lookup("alice")
    assert (served.data, served.etag) == (old.data, old.etag)
    assert served.mtime == NOW + 500
    assert served.last_modified == "Fri, 15 Jan 2027 08:08:20 GMT"


def test_an_expired_identity_is_not_served_from_the_cache(stored):
    _serve(stored)
    assert stored.expire(NOW + 1000) == ["alice"]
    assert stored.lookup("alice") is None and stored.get("alice") is None


def test_a_disk_read_that_raced_a_change_is_not_cached(stored, key, monkeypatch):
    """The server reads on the event loop while the worker stores: a read that began before a
    new revision was written may return the old bytes once, but must not keep serving them."""
    newer = make_identity(key, revision=3, contacts=("tcp://127.0.1.1:8888",)).to_xml()
    real_open = os.open

    def open_then_store(path, flags, *args):
        descriptor = real_open(path, flags, *args)  # the old file, as the reader opened it
        monkeypatch.setattr(os, "open", real_open)
        stored.submit(newer, NOW + 1)  # the worker replaces it meanwhile
        return descriptor

    monkeypatch.setattr(os, "open", open_then_store)
    assert stored.lookup("alice").data != newer  # the raced read: old bytes, this once
    assert stored.lookup("alice").data == newer


def test_the_cache_stays_within_its_byte_bound(tmp_path, key):
    size = len(make_identity(key, name="name0").to_xml())
    store = IdentityStore(
        tmp_path / "ids",
        "host-a.com",
        80,
        new_names_per_key=40,
        new_names_per_address=40,
        cache_bytes=5 * size + size // 2,
    )
    names = [f"name{i}" for i in range(40)]
    for name in names:
        store.submit(make_identity(key, name=name).to_xml(), NOW)
    for name in names:
        _serve(store, name)
    # behind the store's back, every file goes: what is still served is what the cache holds
    for path in store.directory.iterdir():
        path.unlink()
    cached = [name for name in names if store.lookup(name) is not None]
    assert cached == names[-5:]  # the most recently served, as many as fit
    assert sum(len(store.lookup(name).data) for name in cached) <= store.cache_limit


def test_a_read_while_a_new_revision_is_stored_gets_the_new_bytes(stored, key, monkeypatch):
    """The server reads on the event loop while the worker stores: once the new file is in
    place, a read gets it, not the copy cached before."""
    _serve(stored)
    newer = make_identity(key, revision=3, contacts=("tcp://127.0.1.1:8888",)).to_xml()
    real_utime = os.utime
    seen = []

    def read_then_utime(path, times):
        seen.append(stored.lookup("alice").data)  # after the write, before its mtime is set
        real_utime(path, times)

    monkeypatch.setattr(os, "utime", read_then_utime)
    stored.submit(newer, NOW + 1)
    assert seen == [newer]


def test_the_least_recently_served_identity_leaves_the_cache_first(tmp_path, key):
    size = len(make_identity(key, name="name0").to_xml())
    store = IdentityStore(tmp_path / "ids", "host-a.com", 80, cache_bytes=2 * size + size // 2)
    names = ["name0", "name1", "name2"]
    for name in names:
        store.submit(make_identity(key, name=name).to_xml(), NOW)
    _serve(store, "name0")
    _serve(store, "name1")
    _serve(store, "name0")  # name0 is now the most recently served
    _serve(store, "name2")  # one must go: name1
    for path in store.directory.iterdir():
        path.unlink()
    assert [name for name in names if store.lookup(name) is not None] == ["name0", "name2"]
