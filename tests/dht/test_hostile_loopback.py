"""Hostile-input figures on real loopback UDP (issue 10): a node in its own process, attackers
and a legitimate client in this one. Each test runs a few seconds and prints its figures."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bitdust.dht.records import Record, dht_key
from bitdust.dht.schemes import RSA_PSS
from bitdust.dht.settings import DHTSettings
from bitdust.dht.transport import start_dht
from bitdust.dht.wire import Message, MsgType, encode

NODE_HOST = "127.0.0.1"
ATTACKERS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
CLIENT = "127.0.9.1"


@contextmanager
def node_process() -> Iterator[tuple[subprocess.Popen[str], tuple[str, int]]]:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.dht.hostile_node", NODE_HOST],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield proc, (NODE_HOST, port)
    finally:
        proc.kill()
        proc.wait()


def command(proc: subprocess.Popen[str], line: str) -> dict[str, object] | None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline()) if line == "stop" else None


def costly_record() -> Record:
    """The issue's key: a 3072-bit modulus with a ~3000-bit public exponent (5 ms a check)."""
    n = rsa.generate_private_key(public_exponent=65537, key_size=3072).public_key()
    e = (1 << 2999) | 1 | int.from_bytes(os.urandom(374), "big") % (1 << 2999)
    key = rsa.RSAPublicNumbers(e, n.public_numbers().n).public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = int(time.time())
    target = dht_key("victim")
    return Record(target, b"x", now, now + 600, RSA_PSS, der, os.urandom(384))


async def flood(
    addr: tuple[str, int], source: str, datagram: bytes, rate: float, seconds: float
) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    sock.setblocking(False)
    sent, started = 0, time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            while sent < elapsed * rate:
                sock.sendto(datagram, addr)
                sent += 1
            await asyncio.sleep(0.005)
    finally:
        sock.close()
    return sent


@pytest.mark.timeout(60)
async def test_costly_keys_do_not_exhaust_the_cpu_and_a_client_is_served() -> None:
    """Issue 10.1: 200 costly STOREs/s from each of three addresses for 3 s."""
    record = costly_record()
    store = encode(Message(MsgType.STORE, os.urandom(20), os.urandom(20), records=(record,)))
    settings = DHTSettings(rpc_timeout=0.5)
    with node_process() as (proc, addr):
        client = await start_dht(CLIENT, 0, None, settings)
        try:
            command(proc, "go")
            attack = [
                asyncio.create_task(flood(addr, host, store, 200.0, 3.0)) for host in ATTACKERS
            ]
            asked = answered = 0
            while not all(task.done() for task in attack):
                asked += 1
                answered += await client.ping(addr) is not None
                await asyncio.sleep(0.02)
            sent = sum(task.result() for task in attack)
            report = command(proc, "stop")
        finally:
            await client.close()
    assert report is not None
    cpu = float(report["cpu"]) / 3.0  # type: ignore[arg-type]
    counters = report["counters"]
    print(
        f"\n10.1 costly keys: {sent} STOREs in 3 s from 3 addresses; node CPU {cpu:.1%}; "
        f"legitimate pings answered {answered}/{asked}; counters {counters}"
    )
    assert answered >= 0.95 * asked and asked >= 50
    assert cpu < 0.25
