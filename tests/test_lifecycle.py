"""The node process: systemd notifications, signals, config checks before start, the CLI's
daemon/states/stop/restart, and check-config across instances."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sqlite3
import time
from pathlib import Path

import pytest

from bitdust.errors import ExitStatus
from tests.helpers import alive, cli, node_env, running_node, start_node, write_conf
from tests.ports import free_port

# A dht-seed on a free port: one real service with its own socket.
SEED = {"services/entangled-dht/known-nodes": "genesis"}


def test_run_notifies_systemd_and_stops_on_sigterm(tmp_path: Path) -> None:
    journald = {"WATCHDOG_USEC": "200000", "JOURNAL_STREAM": "8:12345"}
    node = start_node(tmp_path, "dht-seed", SEED, env_extra=journald)
    ready = node.notify.wait_for("READY=1", 1)
    assert any(line.startswith("STATUS=") for line in ready.splitlines())
    node.notify.wait_for("WATCHDOG=1", 5, node.process)
    started = time.monotonic()
    node.process.send_signal(signal.SIGTERM)
    assert node.process.wait(10) == 0
    assert time.monotonic() - started < 10
    node.notify.wait_for("STOPPING=1", 1)
    assert not (node.runtime / "bitdust.pid").exists()
    assert not (node.runtime / "api.secret").exists()
    node.notify.close()
    lines = node.log().splitlines()
    assert "<6>INFO bitdust: stopping" in lines  # the syslog priority, for journalctl -p
    assert all(line.startswith(("<6>", "<7>")) for line in lines), lines


def test_sighup_reloads_live_settings_and_reports_the_rest(tmp_path: Path) -> None:
    with running_node(tmp_path, instance="dht-seed", settings=SEED) as node:
        conf = tmp_path / "etc" / "dht-seed.conf"
        conf.write_text(
            conf.read_text() + "logs/level = debug\nservices/entangled-dht/bucket-size = 5\n"
        )
        node.process.send_signal(signal.SIGHUP)
        node.notify.wait_for("RELOADING=1", 5, node.process)
        deadline = time.monotonic() + 5
        while "restart needed" not in node.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        log = node.log()
        assert "reloaded: logs/level" in log
        assert "restart needed to apply: services/entangled-dht/bucket-size" in log
        status = node.ok("GET", "/process/info/v1")
        assert status["ready"] is True


def test_run_refuses_a_bad_config_with_every_reason(tmp_path: Path) -> None:
    write_conf(
        tmp_path,
        "default",
        {
            "services/proxy-server/enabled": "true",
            "services/proxy-transport/enabled": "true",
            "services/supplier/donated-space": "lots",
        },
    )
    result = cli(node_env(tmp_path), "run")
    assert result.returncode == 2
    assert "default.conf:4: services/supplier/donated-space: 'lots'" in result.stderr
    assert "Traceback" not in result.stderr
    write_conf(
        tmp_path,
        "default",
        {
            "services/proxy-server/enabled": "true",
            "services/proxy-transport/enabled": "true",
        },
    )
    result = cli(node_env(tmp_path), "run")
    assert result.returncode == 2
    assert "services/proxy-server/enabled and services/proxy-transport/enabled" in result.stderr


def test_a_service_that_cannot_start_fails_the_process(tmp_path: Path) -> None:
    port = free_port()
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        node = start_node(
            tmp_path, "dht-seed", {**SEED, "interface/api/rest-http-port": port}, wait=False
        )
        assert node.process.wait(20) == 1
        assert "cannot start the REST API" in node.log()
        node.notify.close()


def test_a_dht_database_of_a_newer_schema_ends_the_node_for_good(tmp_path: Path) -> None:
    """Exit 65, which the unit's RestartPreventExitStatus= lists: no restart every 5 s forever,
    the reason in STATUS= and the log, nothing left in the runtime dir, the file untouched."""
    database = tmp_path / "state" / "dht-seed" / "dht.sqlite3"
    database.parent.mkdir(parents=True)
    with contextlib.closing(sqlite3.connect(database)) as db:  # as a later version leaves it
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA user_version = 1000")
    before = database.read_bytes()
    node = start_node(tmp_path, "dht-seed", SEED, wait=False)
    assert node.process.wait(20) == ExitStatus.DATA_FORMAT
    node.notify.wait_for("STOPPING=1", 1)
    fields = node.notify.fields()
    [status] = [field for field in fields if field.startswith("STATUS=failed")]
    assert status.startswith("STATUS=failed: service entangled-dht failed to start: ")
    assert "schema version 1000 is newer" in status and str(database) in status
    assert "READY=1" not in fields
    assert "Traceback" not in node.log()
    assert sorted(path.name for path in node.runtime.iterdir()) == []
    assert database.read_bytes() == before
    node.notify.close()


def test_daemon_passes_the_no_restart_status_through_and_shows_a_rotated_logs_tail(
    tmp_path: Path,
) -> None:
    """`bitdust daemon` exits 65 as the node did (scripts can tell it from a retryable failure),
    and prints the node's reason even when the node rotated a full log at its first line."""
    env = node_env(tmp_path)
    write_conf(tmp_path, "dht-seed", {**SEED, "interface/api/rest-http-port": free_port()})
    database = tmp_path / "state" / "dht-seed" / "dht.sqlite3"
    database.parent.mkdir(parents=True)
    with contextlib.closing(sqlite3.connect(database)) as db:
        db.execute("PRAGMA user_version = 1000")
    log = database.parent / "bitdust.log"
    log.write_bytes(b"an old line\n" * (10 * 1024 * 1024 // 12 + 1))  # past the rotation size
    result = cli(env, "--instance", "dht-seed", "daemon")
    assert result.returncode == ExitStatus.DATA_FORMAT, result.stderr
    assert "schema version 1000 is newer" in result.stderr
    assert "failed to start (exit 65)" in result.stderr
    assert (database.parent / "bitdust.log.1").stat().st_size > 10 * 1024 * 1024


def test_daemon_states_restart_stop_through_the_cli(tmp_path: Path) -> None:
    env = node_env(tmp_path)
    write_conf(
        tmp_path,
        "dht-seed",
        {**SEED, "interface/api/rest-http-port": free_port(), "services/entangled-dht/udp-port": 0},
    )
    result = cli(env, "--instance", "dht-seed", "daemon", check=True)
    assert "started (pid" in result.stdout
    pidfile = tmp_path / "run" / "dht-seed" / "bitdust.pid"
    first_pid = int(pidfile.read_text().split()[0])
    try:
        again = cli(env, "--instance", "dht-seed", "daemon")
        assert again.returncode == 1 and "already running" in again.stderr

        states = cli(env, "--instance", "dht-seed", "states", check=True).stdout.splitlines()
        assert "1: service_entangled_dht(ON)" in states
        assert "6: service_proxy_server(OFF)  disabled" in states
        assert any(line.startswith("10: service_private_messages(OFF)") for line in states)
        assert cli(env, "--instance", "dht-seed", "automat", "list").stdout.splitlines() == states

        cli(env, "--instance", "dht-seed", "restart", check=True)
        second_pid = int(pidfile.read_text().split()[0])
        assert second_pid != first_pid
        assert not alive(first_pid)
    finally:
        stopped = cli(env, "--instance", "dht-seed", "stop", check=True)
    assert "stopped" in stopped.stdout
    assert not pidfile.exists()
    assert "is not running" in cli(env, "--instance", "dht-seed", "stop", check=True).stdout
    missing = cli(env, "--instance", "dht-seed", "states")
    assert missing.returncode == 1
    assert "is not running" in missing.stderr and "Traceback" not in missing.stderr


def test_daemon_reports_why_it_failed(tmp_path: Path) -> None:
    env = node_env(tmp_path)
    write_conf(
        tmp_path,
        "default",
        {"services/proxy-server/enabled": "true", "services/proxy-transport/enabled": "true"},
    )
    result = cli(env, "daemon")
    assert result.returncode == ExitStatus.CONFIG  # the node's own status: a restart cannot help
    assert "services/proxy-server/enabled and services/proxy-transport/enabled" in result.stderr
    assert "failed to start" in result.stderr


def test_check_config_finds_port_clash_with_a_running_instance(tmp_path: Path) -> None:
    udp = free_port()
    env = node_env(tmp_path)
    write_conf(
        tmp_path,
        "default",
        {"services/entangled-dht/udp-port": udp, "interface/api/rest-http-port": free_port()},
    )
    assert cli(env, "check-config").returncode == 0
    with running_node(
        tmp_path, instance="dht-seed", settings={**SEED, "services/entangled-dht/udp-port": udp}
    ):
        result = cli(env, "check-config")
        assert result.returncode == 2
        assert f"udp port {udp} is also used by instance 'dht-seed'" in result.stderr
    assert cli(env, "check-config").returncode == 0


def test_set_while_running_reloads_the_node(tmp_path: Path) -> None:
    with running_node(tmp_path, instance="dht-seed", settings=SEED) as node:
        result = cli(node.env, "--instance", "dht-seed", "set", "logs/level", "debug", check=True)
        assert "applied to the running node" in result.stdout
        node.notify.wait_for("RELOADING=1", 5, node.process)
        result = cli(
            node.env,
            "--instance",
            "dht-seed",
            "set",
            "services/entangled-dht/bucket-size",
            "6",
            check=True,
        )
        assert "restart needed" in result.stdout
        got = cli(node.env, "--instance", "dht-seed", "get", "services/entangled-dht/bucket-size")
        assert got.stdout.strip() == "6"


def test_version(tmp_path: Path) -> None:
    from bitdust import __version__

    env = node_env(tmp_path)
    assert cli(env, "--version", check=True).stdout.strip() == f"bitdust {__version__}"
    assert cli(env, "version", check=True).stdout.strip() == f"bitdust {__version__}"


def test_set_list_shows_layers(tmp_path: Path) -> None:
    env = node_env(tmp_path)
    write_conf(tmp_path, "supplier", {"services/supplier/donated-space": "50 GB"})
    listing = cli(env, "--instance", "supplier", "set", "list", check=True).stdout.splitlines()
    assert cli(env, "--instance", "supplier", "config", "list", check=True).stdout.splitlines() == (
        listing
    )
    rows = {line.split()[0]: line for line in listing}
    # The guide writes the size unquoted: `bitdust set services/supplier/donated-space 50 GB`.
    cli(
        env,
        "--instance",
        "supplier",
        "set",
        "services/customer/needed-space",
        "1",
        "GB",
        check=True,
    )
    assert (
        cli(
            env, "--instance", "supplier", "get", "services/customer/needed-space", check=True
        ).stdout
        == "1 GB\n"
    )
    assert rows["services/supplier/donated-space"].split()[1:3] == ["50", "GB"]
    assert rows["services/supplier/donated-space"].endswith(f"[{tmp_path / 'etc/supplier.conf'}]")
    assert rows["services/supplier/enabled"].endswith("[role supplier]")
    assert rows["logs/level"].endswith("[default]")


def test_set_needs_write_permission_and_leaves_the_file_unchanged(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run 'bitdust set' as another user (nobody)")
    env = node_env(tmp_path)
    write_conf(tmp_path, "supplier", {"services/supplier/donated-space": "50 GB"})
    conf = tmp_path / "etc" / "supplier.conf"
    before = conf.read_bytes()
    for path in (tmp_path, *tmp_path.parents):
        if path == Path("/tmp"):
            break
        path.chmod(path.stat().st_mode | 0o005)
    (tmp_path / "etc").chmod(0o755)
    conf.chmod(0o644)
    denied = cli(
        env,
        "--instance",
        "supplier",
        "set",
        "services/supplier/donated-space",
        "60 GB",
        user="nobody",
    )
    assert denied.returncode == 2
    assert f"cannot write {conf}: permission denied (run the command with sudo)" in denied.stderr
    assert conf.read_bytes() == before


def test_process_stop_over_the_api_ends_the_node_cleanly(tmp_path: Path) -> None:
    node = start_node(tmp_path, "dht-seed", SEED)
    assert node.ok("POST", "/process/stop/v1") == {"stopping": True}
    assert node.process.wait(10) == 0
    node.notify.wait_for("STOPPING=1", 1)
    node.notify.close()


def test_status_follows_a_dht_that_cannot_join_yet(tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}"
    settings = {"services/entangled-dht/known-nodes": dead, "services/entangled-dht/rpc-timeout": 1}
    with running_node(tmp_path, instance="dht-seed", settings=settings) as node:
        ready = node.notify.wait_for("READY=1", 1)
        assert "STATUS=1 services on; DHT joining through 1 known nodes" in ready
        # The countdown to the next attempt is whatever it is when the heartbeat looks.
        waiting = re.compile(
            r"STATUS=1 services on; DHT no known node answered 1 times, retry in \d+s, 0 contacts"
        )
        deadline = time.monotonic() + 15
        while not any(waiting.fullmatch(field) for field in node.notify.fields()):
            assert time.monotonic() < deadline and node.process.poll() is None, node.notify.messages
            time.sleep(0.1)
        [update] = [message for message in node.notify.messages if waiting.search(message)][:1]
        assert "READY=1" not in update
