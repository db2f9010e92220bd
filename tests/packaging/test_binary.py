"""The frozen binary dist/bitdust on its own: no virtualenv, no Python, what systemd will run.

It must start, notify systemd (READY=1, WATCHDOG=1, STOPPING=1 from the child of the onefile
bootloader), reload on SIGHUP and exit 0 on SIGTERM, both forwarded by the bootloader; it must
carry every module that is imported by name and the data files the code looks up; and it must
never need memory that is writable and executable (the unit sets MemoryDenyWriteExecute=yes).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import bitdust
from tests.packaging.conftest import REPO, NotifySocket, bare_env
from tests.ports import free_port

pytestmark = pytest.mark.packaging

# The kernel's own W^X rule (Linux >= 6.3): the same refusal MemoryDenyWriteExecute=yes makes
# systemd install with seccomp: no mapping may be both writable and executable, and none may
# become executable later.
PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1


def node_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return bare_env(
        BITDUST_CONFIG_DIR=str(tmp_path / "etc"),
        BITDUST_STATE_DIR=str(tmp_path / "state"),
        BITDUST_RUNTIME_DIR=str(tmp_path / "run"),
        **extra,
    )


def run_flags(api_port: int) -> list[str]:
    """A dht-seed on free ports, so that the test never clashes with a running node."""
    return [
        "-o",
        "services/entangled-dht/udp-port=0",
        "-o",
        f"interface/api/rest-http-port={api_port}",
        "-o",
        "services/entangled-dht/known-nodes=genesis",
    ]


def mdwe_supported() -> bool:
    """Whether this kernel has PR_SET_MDWE (checked in a child, which it would change)."""
    code = (
        "import ctypes,sys;libc=ctypes.CDLL(None,use_errno=True);"
        f"sys.exit(0 if libc.prctl({PR_SET_MDWE},{PR_MDWE_REFUSE_EXEC_GAIN},0,0,0)==0 else 1)"
    )
    return subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def under_mdwe() -> None:
    """preexec_fn: forbid writable+executable memory in the child and everything it runs."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE)")


def test_version_without_virtualenv_or_python(binary: Path) -> None:
    timings = []
    for _ in range(3):
        started = time.monotonic()
        result = subprocess.run(
            [str(binary), "--version"],
            env=bare_env(),
            cwd="/",
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        timings.append(time.monotonic() - started)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"bitdust {bitdust.__version__}"
    size = binary.stat().st_size
    print(f"\nbinary: {size / 1e6:.1f} MB; --version: best {min(timings):.3f} s of {timings}")


def test_binary_carries_dynamic_modules_and_data(binary: Path, tmp_path: Path) -> None:
    """Services loaded by name, the role presets and the nginx template are inside the binary."""
    archive = subprocess.run(
        [str(REPO / ".venv" / "bin" / "pyi-archive_viewer"), "-l", "-r", str(binary)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if archive.returncode != 0:
        pytest.fail(f"pyi-archive_viewer failed (run 'make venv'): {archive.stderr}")
    listing = archive.stdout
    from bitdust.node.catalog import CATALOG

    for spec in CATALOG:
        if spec.implementation:
            module = spec.implementation.partition(":")[0]
            assert f"'{module}'" in listing, f"{module} (service {spec.name}) is not bundled"
    for role in ("default", "dht-seed", "identity-server", "proxy-router", "supplier"):
        assert f"bitdust/roles/{role}.conf" in listing
    for heavy in ("tkinter", "unittest", "pytest", "hypothesis", "zstandard._cffi", "PyInstaller"):
        assert f"'{heavy}'" not in listing, f"{heavy} should not be bundled"
    # The presets are found inside the binary when /usr/share/bitdust/roles is absent.
    env = node_env(tmp_path, BITDUST_ROLES_DIR="")
    result = subprocess.run(
        [str(binary), "--instance", "supplier", "get", "services/tcp-connections/tcp-port"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "7772"


def start(
    binary: Path, tmp_path: Path, notify: NotifySocket, api_port: int, **popen_extra
) -> subprocess.Popen[bytes]:
    env = node_env(tmp_path, NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC="1000000")
    with open(tmp_path / "node.log", "wb") as log:
        return subprocess.Popen(
            [str(binary), "--instance", "dht-seed", "run", *run_flags(api_port)],
            env=env,
            cwd="/",
            stdout=subprocess.DEVNULL,
            stderr=log,
            **popen_extra,
        )


def api_get(tmp_path: Path, port: int, path: str) -> dict:
    """GET on the node's REST API with the secret it wrote to its runtime dir."""
    secret = (tmp_path / "run" / "dht-seed" / "api.secret").read_text().strip()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {secret}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_frozen_binary_lifecycle_notify_reload_and_sigterm(
    binary: Path, tmp_path: Path, notify_socket: NotifySocket
) -> None:
    """The bootloader is the process systemd starts; its child talks to NOTIFY_SOCKET."""
    port = free_port()
    started = time.monotonic()
    process = start(binary, tmp_path, notify_socket, port)
    try:
        ready = notify_socket.wait_for("READY=1", 30, process) - started
        notify_socket.wait_for("WATCHDOG=1", 5, process)
        status = api_get(tmp_path, port, "/network/status/v1?dht=1")
        assert status["status"] == "OK"
        assert status["result"]["dht"]["contacts"] == 0
        process.send_signal(signal.SIGHUP)  # systemctl reload: ExecReload=kill -HUP $MAINPID
        notify_socket.wait_for("RELOADING=1", 10, process)
        sigterm = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0, (tmp_path / "node.log").read_text()
        stopped = time.monotonic() - sigterm
        notify_socket.wait_for("STOPPING=1", 1)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not (tmp_path / "run" / "dht-seed" / "api.secret").exists()
    print(f"\nfrozen binary: READY=1 after {ready:.2f} s; SIGTERM to exit 0 in {stopped:.2f} s")


def test_frozen_binary_runs_without_writable_executable_memory(
    binary: Path, tmp_path: Path, notify_socket: NotifySocket
) -> None:
    """What MemoryDenyWriteExecute=yes in bitdust@.service relies on, checked with the kernel's
    PR_SET_MDWE: the node starts, serves, reloads and stops."""
    if not mdwe_supported():
        pytest.skip("this kernel has no PR_SET_MDWE (Linux < 6.3); W^X cannot be checked here")
    port = free_port()
    process = start(binary, tmp_path, notify_socket, port, preexec_fn=under_mdwe)
    try:
        notify_socket.wait_for("READY=1", 30, process)
        assert api_get(tmp_path, port, "/process/info/v1")["status"] == "OK"
        process.send_signal(signal.SIGHUP)
        notify_socket.wait_for("RELOADING=1", 10, process)
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0, (tmp_path / "node.log").read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_native_libraries_work_without_writable_executable_memory() -> None:
    """The same libraries the binary bundles (cryptography, expat, zstandard, zfec, msgpack,
    uvloop, sqlite3), exercised under PR_SET_MDWE, beyond what a dht-seed touches."""
    if not mdwe_supported():
        pytest.skip("this kernel has no PR_SET_MDWE (Linux < 6.3); W^X cannot be checked here")
    code = """
import asyncio, os, sqlite3
import msgpack, uvloop, zfec, zstandard
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from xml.etree import ElementTree
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
sig = key.sign(b"m", padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
key.public_key().verify(sig, b"m", padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
ed25519.Ed25519PrivateKey.generate().sign(b"m")
x25519.X25519PrivateKey.generate().exchange(x25519.X25519PrivateKey.generate().public_key())
nonce = os.urandom(12)
assert AESGCM(AESGCM.generate_key(256)).encrypt(nonce, b"d", None)
assert ChaCha20Poly1305(ChaCha20Poly1305.generate_key()).encrypt(nonce, b"d", None)
assert ElementTree.fromstring(b"<identity><sources/></identity>").tag == "identity"
data = os.urandom(1 << 16) * 4
assert zstandard.ZstdDecompressor().decompress(zstandard.ZstdCompressor().compress(data)) == data
blocks = zfec.Encoder(2, 4).encode([data[:1024], data[1024:2048]])
assert zfec.Decoder(2, 4).decode(blocks[2:], [2, 3])[0] == data[:1024]
assert msgpack.unpackb(msgpack.packb({"a": [1, b"x"]})) == {"a": [1, b"x"]}
db = sqlite3.connect(":memory:")
db.execute("create table t(x)")
db.execute("insert into t values(1)")
async def main():
    await asyncio.sleep(0)
    return await asyncio.get_running_loop().getaddrinfo("localhost", 80)
assert uvloop.run(main())
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=under_mdwe,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "suite_name",
    [
        "test_lifecycle.py",  # run, notify, signals, bad configs, daemon/stop/restart, check-config
        "test_api.py",  # the REST API: secret, envelope, argument checks, the CLI as nobody
        "test_guide_dht.py",  # the guide's part 2 on four loopback hosts
        "test_guide_identity.py",  # parts 3 and 4: identity servers, nginx, backup and restore
        "p2p/test_guide_p2p.py",  # p2p sessions by IDURL between two guide hosts
        "proxy/test_guide_proxy.py",  # part 5: a router's states and status
        "proxy/test_guide_routed.py",  # a routed node reached through a router that is killed
        # the guide end to end: parts 2-7, a routed customer started as its unit starts it, a
        # lost supplier and a lost machine (the storage suites run from the source tree only)
        "test_guide_e2e.py",
    ],
)
def test_integration_suite_passes_against_the_frozen_binary(binary: Path, suite_name: str) -> None:
    """Every capability's real-process tests, with BITDUST_BIN pointing at the frozen binary:
    what users run is what is tested."""
    suite = REPO / "tests" / suite_name
    if not suite.is_file():
        pytest.fail(f"{suite} is missing")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BITDUST_", "PYTEST_"))}
    env["BITDUST_BIN"] = str(binary)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(suite)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=580,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    print("\n" + result.stdout.strip().splitlines()[-1])


def test_daemonized_frozen_node_keeps_its_unpacked_files(binary: Path, tmp_path: Path) -> None:
    """`bitdust daemon` exits once the node is ready, and its onefile unpack directory with it:
    the node needs its own (PYINSTALLER_RESET_ENVIRONMENT), or a reload finds no role preset
    and a lazily imported extension module is gone."""
    env = node_env(tmp_path)
    port = free_port()
    started = subprocess.run(
        [str(binary), "--instance", "dht-seed", "daemon", *run_flags(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert started.returncode == 0, started.stderr
    pid = int((tmp_path / "run" / "dht-seed" / "bitdust.pid").read_text().split()[0])
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        home = [v.split(b"=", 1)[1] for v in environ if v.startswith(b"_PYI_APPLICATION_HOME_DIR=")]
        assert home, "the node does not run from a onefile unpack directory"
        assert Path(home[0].decode()).is_dir(), "the node's unpacked files were deleted"
        os.kill(pid, signal.SIGHUP)
        time.sleep(0.5)
        setting = api_get(tmp_path, port, "/config/get/services/customer/enabled/v1")["result"]
        assert setting["layer"] == "role dht-seed", setting
    finally:
        subprocess.run(
            [str(binary), "--instance", "dht-seed", "stop"],
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
