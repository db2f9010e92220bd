"""Install test: the package in a fresh Debian 12 root, as an operator installs it: `make
repo`'s signed APT repository added as a source with signed-by=, then `apt install bitdust`.

A minimal bookworm (`debootstrap --variant=minbase`, kept as a tarball in a cache outside the
clone and reused) gets /proc and /dev bind-mounted and the package installed with apt inside
`chroot`; apt refuses the repository under another key. Then, inside that root: the binary
runs (there is no Python there), the user, units and settings files are where Debian puts them,
an enabled instance hangs off the parent unit, `bitdust set` edits a settings file, a dht-seed
runs as user bitdust and answers its API, an `apt-get upgrade` to a rebuilt higher version,
published in the repository, whose shipped comments changed keeps the edited settings (without a
prompt) and restarts running instances, and `dpkg --purge` keeps the identity keys unless told
otherwise through debconf.

Needs root, mounts and chroot; where the machine refuses them the tests skip and say why. Where
they are permitted, every failure fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import bitdust
from bitdust.config import ROLES
from tests.packaging.conftest import REPO, NotifySocket, debian_version, require_tool
from tests.ports import free_port

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(900)]

CACHE = Path(os.environ.get("BITDUST_TEST_CACHE", "/var/cache/bitdust-tests"))
TARBALL = CACHE / "bookworm-minbase.tar.zst"
MIRROR = os.environ.get("BITDUST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
APT_REPO = "/srv/bitdust-apt"
APT_KEYRING = "/usr/share/keyrings/bitdust-archive-keyring.gpg"
APT_SOURCE = "/etc/apt/sources.list.d/bitdust.list"
SETTINGS_FILES = [f"{role}.conf" for role in ROLES] + ["network.json"]


def privilege_problem() -> str | None:
    """Why this machine cannot run the install test, or None when it can."""
    if os.geteuid() != 0:
        return "the install test needs root (debootstrap, mount, chroot)"
    with tempfile.TemporaryDirectory() as probe:
        mounted = subprocess.run(
            ["mount", "--bind", "/proc", probe], capture_output=True, text=True, check=False
        )
        if mounted.returncode != 0:
            return f"bind mounts are not permitted here: {mounted.stderr.strip()}"
        subprocess.run(["umount", "-l", probe], check=True)
    chrooted = subprocess.run(["chroot", "/", "true"], capture_output=True, text=True, check=False)
    if chrooted.returncode != 0:
        return f"chroot is not permitted here: {chrooted.stderr.strip()}"
    return None


def base_tarball() -> Path:
    """The cached minbase root; made with debootstrap (about a minute) when it is missing."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run building it at the same time waits
        if TARBALL.is_file():
            return TARBALL
        require_tool("debootstrap")
        build = Path(tempfile.mkdtemp(prefix="bookworm-", dir=CACHE))
        try:
            result = subprocess.run(
                ["debootstrap", "--variant=minbase", "bookworm", str(build / "root"), MIRROR],
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
            assert result.returncode == 0, f"debootstrap failed: {result.stdout[-3000:]}"
            partial = CACHE / (TARBALL.name + ".partial")
            subprocess.run(
                [
                    "tar",
                    "--zstd",
                    "--numeric-owner",
                    "-cpf",
                    str(partial),
                    "-C",
                    str(build / "root"),
                    ".",
                ],
                check=True,
                timeout=600,
            )
            partial.rename(TARBALL)
        finally:
            shutil.rmtree(build, ignore_errors=True)
    return TARBALL


def mounts_under(root: Path) -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if point == str(root) or point.startswith(f"{root}/"):
            points.append(point)
    return points


@dataclass
class DebianRoot:
    path: Path

    def run(
        self,
        *command: str,
        user: str | None = None,
        env: dict[str, str] | None = None,
        check: bool = True,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the root (as root, or as ``user``) with a clean environment."""
        spec = [f"--userspec={user}:{user}"] if user else []
        full_env = {"PATH": CHROOT_PATH, "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
        full_env.update(env or {})
        result = subprocess.run(
            ["chroot", *spec, str(self.path), *command],
            env=full_env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check:
            assert result.returncode == 0, (
                f"{' '.join(command)} exited {result.returncode}\n{result.stdout[-4000:]}"
                f"\n{result.stderr[-4000:]}"
            )
        return result

    def apt_install(self, deb: Path) -> subprocess.CompletedProcess[str]:
        """`apt-get install ./deb`, never answering a prompt (stdin is /dev/null): a conffile
        question would fail the install. Dependencies come from the mirror; the package lists
        of the cached root are refreshed only when they are too old to find them."""
        inside = Path("/tmp") / deb.name
        shutil.copy2(deb, self.path / inside.relative_to("/"))
        command = ("apt-get", "install", "-y", "-q", "--no-install-recommends", str(inside))
        result = self.run(*command, check=False)
        if result.returncode != 0 and "Unable to locate" not in result.stdout + result.stderr:
            self.run("apt-get", "update", "-q")
            result = self.run(*command, check=False)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        return result

    def publish(self, repository: Path) -> None:
        """Serve ``repository`` (as `make repo` builds it) to the root's apt at APT_REPO, which
        its bitdust source names (a file: URL stands in for the operator's web server)."""
        target = self.path / APT_REPO.lstrip("/")
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(repository, target)

    def apt_update(self, source_list: str = APT_SOURCE) -> subprocess.CompletedProcess[str]:
        """`apt-get update` of one source list only: the root stays offline (Debian's lists
        come with the cached root, and every dependency of bitdust is in minbase)."""
        return self.run(
            "apt-get",
            "update",
            "-q",
            "-o",
            f"Dir::Etc::SourceList={source_list}",
            "-o",
            "Dir::Etc::SourceParts=-",
            "-o",
            "APT::Get::List-Cleanup=0",
            check=False,
        )

    def ids(self, name: str) -> tuple[int, int]:
        for line in (self.path / "etc" / "passwd").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == name:
                return int(fields[2]), int(fields[3])
        raise AssertionError(f"no user {name} in the root's /etc/passwd")


@pytest.fixture(scope="module")
def debian_root(
    deb: Path, apt_repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DebianRoot]:
    """A fresh Debian 12 root with bitdust installed as the README tells an operator: the
    repository's key under /usr/share/keyrings, a source with signed-by=, `apt-get install
    bitdust`."""
    problem = privilege_problem()
    if problem:
        pytest.skip(problem)
    require_tool("zstd")
    started = time.monotonic()
    tarball = base_tarball()
    root = tmp_path_factory.mktemp("debian") / "root"
    root.mkdir()
    mounted: list[Path] = []
    try:
        subprocess.run(
            ["tar", "--zstd", "--numeric-owner", "-xpf", str(tarball), "-C", str(root)],
            check=True,
            timeout=300,
        )
        shutil.copy2("/etc/resolv.conf", root / "etc" / "resolv.conf")
        policy = root / "usr" / "sbin" / "policy-rc.d"
        policy.write_text("#!/bin/sh\n# no service starts inside the test root\nexit 101\n")
        policy.chmod(0o755)
        for name in ("proc", "dev", "dev/pts"):  # /dev/pts: apt logs through a terminal
            subprocess.run(["mount", "--bind", f"/{name}", str(root / name)], check=True)
            mounted.append(root / name)
        debian = DebianRoot(root)
        debian.publish(apt_repo)
        shutil.copy2(apt_repo / "bitdust-archive-keyring.gpg", root / APT_KEYRING.lstrip("/"))
        (root / APT_SOURCE.lstrip("/")).write_text(
            f"deb [signed-by={APT_KEYRING}] file:{APT_REPO} stable main\n"
        )
        updated = debian.apt_update()
        assert updated.returncode == 0, updated.stdout + updated.stderr
        debian.run("apt-get", "install", "-y", "-q", "--no-install-recommends", "bitdust")
        took = time.monotonic() - started
        print(f"\ninstall test: root ready and package installed in {took:.1f} s")
        yield debian
    finally:
        for point in reversed(mounted):
            subprocess.run(["umount", "-l", str(point)], check=False)
        left = mounts_under(root)
        if left:  # never delete through a mount: /dev is the host's
            pytest.fail(f"still mounted after the install test, not deleting {root}: {left}")
        shutil.rmtree(root.parent, ignore_errors=True)
        print(f"\ninstall test: {time.monotonic() - started:.1f} s in all")


def test_package_installs_into_fresh_debian_12(debian_root: DebianRoot, deb: Path) -> None:
    root = debian_root.path
    version = debian_root.run("bitdust", "--version").stdout.strip()
    assert version == f"bitdust {bitdust.__version__}"
    assert debian_root.run("sh", "-c", "command -v python3", check=False).returncode != 0
    assert not list((root / "usr" / "bin").glob("python3*")), "the root has a Python"
    status = debian_root.run("dpkg-query", "-W", "-f=${Status} ${Version}", "bitdust").stdout
    assert status == f"install ok installed {debian_version()}"
    assert debian_root.run("dpkg-query", "-W", "-f=${Status}", "adduser").stdout.endswith(
        "installed"
    )

    passwd = debian_root.run("getent", "passwd", "bitdust").stdout.strip().split(":")
    assert passwd[5:] == ["/var/lib/bitdust", "/usr/sbin/nologin"]
    assert int(passwd[2]) < 1000, "bitdust must be a system user"
    assert debian_root.run("getent", "group", "bitdust").returncode == 0

    for unit in ("bitdust@.service", "bitdust.service"):
        assert (root / "lib" / "systemd" / "system" / unit).is_file()
    wants = root / "etc" / "systemd" / "system" / "multi-user.target.wants"
    assert (wants / "bitdust.service").is_symlink(), "the parent unit is enabled"
    assert not list(wants.glob("bitdust@*")), "no instance may be enabled by the package"

    # The settings files are made by postinst from the templates, and dpkg owns none of them.
    assert not (root / "var" / "lib" / "dpkg" / "info" / "bitdust.conffiles").exists()
    for name in SETTINGS_FILES:
        path = root / "etc" / "bitdust" / name
        assert path.is_file() and stat.S_IMODE(path.stat().st_mode) == 0o644
        assert path.stat().st_uid == 0
        template = root / "usr" / "share" / "bitdust" / "conf" / name
        assert path.read_bytes() == template.read_bytes()
        owner = debian_root.run("dpkg", "-S", f"/etc/bitdust/{name}", check=False)
        assert owner.returncode != 0, f"dpkg owns /etc/bitdust/{name}: {owner.stdout}"
    json.loads((root / "etc" / "bitdust" / "network.json").read_text())
    for role in ROLES:
        assert (root / "usr" / "share" / "bitdust" / "roles" / f"{role}.conf").is_file()
    assert (root / "usr" / "share" / "man" / "man1" / "bitdust.1.gz").is_file()
    if (REPO / "packaging" / "nginx" / "bitdust-identity.conf").is_file():
        assert (root / "usr" / "share" / "bitdust" / "nginx" / "bitdust-identity.conf").is_file()
    # Every instance's configuration is valid as shipped (check-config on each role).
    for role in ROLES:
        debian_root.run("bitdust", "--instance", role, "check-config")


def test_installed_from_the_signed_repository(debian_root: DebianRoot) -> None:
    policy = debian_root.run("apt-cache", "policy", "bitdust").stdout
    installed = policy[policy.index("*** ") :].splitlines()
    assert f"file:{APT_REPO} stable/main amd64 Packages" in installed[1], policy


def test_apt_refuses_the_repository_signed_by_another_key(debian_root: DebianRoot) -> None:
    """signed-by= pins the repository's own key: with Debian's keyring in its place, apt
    refuses the repository instead of trusting it."""
    wrong = "/etc/apt/bitdust-wrong-key.list"
    (debian_root.path / wrong.lstrip("/")).write_text(
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
        f"file:{APT_REPO} stable main\n"
    )
    refused = debian_root.apt_update(wrong)
    output = refused.stdout + refused.stderr
    assert "NO_PUBKEY" in output and "The repository is not updated" in output, output
    assert debian_root.apt_update().returncode == 0  # the right key: accepted again


def test_an_enabled_instance_is_wanted_by_the_parent(debian_root: DebianRoot) -> None:
    """`systemctl enable bitdust@supplier` links it under bitdust.service.wants, so
    `systemctl start bitdust` (and boot, through the enabled parent) starts it. The root has
    no systemd as PID 1: systemctl --root enables offline, as in an image build."""
    root = debian_root.path
    systemctl = require_tool("systemctl")
    enabled = subprocess.run(
        [systemctl, f"--root={root}", "enable", "bitdust@supplier.service"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert enabled.returncode == 0, enabled.stderr
    systemd = root / "etc" / "systemd" / "system"
    link = systemd / "bitdust.service.wants" / "bitdust@supplier.service"
    assert link.is_symlink(), enabled.stderr
    assert os.readlink(link) == "/lib/systemd/system/bitdust@.service"
    assert not list(systemd.glob("multi-user.target.wants/bitdust@*"))
    assert (systemd / "multi-user.target.wants" / "bitdust.service").is_symlink()


def test_bash_completes_bitdust_commands(debian_root: DebianRoot) -> None:
    """The shipped completion works in the root's bash (no bash-completion package needed):
    `bitdust --instance supplier se<TAB>` offers set among the commands (an instance named as
    a command is not taken for that command)."""
    script = (
        ". /usr/share/bash-completion/completions/bitdust; "
        "COMP_WORDS=(bitdust --instance supplier se); COMP_CWORD=3; "
        'COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}; '
        '_bitdust bitdust se supplier; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    offered = debian_root.run("bash", "-c", script).stdout.split()
    assert "set" in offered and all(word.startswith("se") for word in offered), offered


def test_set_edits_the_supplier_conffile(debian_root: DebianRoot) -> None:
    conffile = debian_root.path / "etc" / "bitdust" / "supplier.conf"
    before = conffile.read_text().splitlines()
    result = debian_root.run(
        "bitdust", "--instance", "supplier", "set", "services/supplier/donated-space", "50 GB"
    )
    assert "/etc/bitdust/supplier.conf" in result.stdout
    after = conffile.read_text().splitlines()
    commented = after.index("# services/supplier/donated-space = 8 GB")
    assert after[commented + 1] == "services/supplier/donated-space = 50 GB"
    assert [line for line in after if line not in before] == [after[commented + 1]]
    assert stat.S_IMODE(conffile.stat().st_mode) == 0o644 and conffile.stat().st_uid == 0
    got = debian_root.run(
        "bitdust", "--instance", "supplier", "get", "services/supplier/donated-space"
    )
    assert got.stdout.strip() == "50 GB"


def test_dht_seed_runs_as_bitdust_and_answers_its_api(debian_root: DebianRoot) -> None:
    """As systemd would start it: user bitdust, STATE_DIRECTORY and RUNTIME_DIRECTORY made for
    it, NOTIFY_SOCKET; the chroot shares the host's network, so the REST port is a free one."""
    root = debian_root.path
    uid, gid = debian_root.ids("bitdust")
    for directory, mode in (("var/lib/bitdust/dht-seed", 0o750), ("run/bitdust/dht-seed", 0o750)):
        path = root / directory
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, uid, gid)
        path.chmod(mode)
    notify = NotifySocket(root / "run" / "bitdust-test-notify.sock")
    os.chmod(notify.path, 0o666)  # the node runs as bitdust
    port = free_port()
    env = {
        "PATH": CHROOT_PATH,
        "LANG": "C.UTF-8",
        "STATE_DIRECTORY": "/var/lib/bitdust/dht-seed",
        "RUNTIME_DIRECTORY": "/run/bitdust/dht-seed",
        "NOTIFY_SOCKET": "/run/bitdust-test-notify.sock",
        "WATCHDOG_USEC": "1000000",
    }
    log = root / "tmp" / "dht-seed.log"
    started = time.monotonic()
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [
                "chroot",
                "--userspec=bitdust:bitdust",
                str(root),
                "/usr/bin/bitdust",
                "--instance",
                "dht-seed",
                "run",
                "-o",
                "services/entangled-dht/udp-port=0",
                "-o",
                f"interface/api/rest-http-port={port}",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
        )
    try:
        try:
            ready = notify.wait_for("READY=1", 60, process) - started
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nlog:\n{log.read_text()}") from None
        owner = Path(f"/proc/{process.pid}/status").read_text()
        assert f"Uid:\t{uid}\t" in owner, "the node does not run as user bitdust"
        secret_file = root / "run" / "bitdust" / "dht-seed" / "api.secret"
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o640
        assert secret_file.stat().st_gid == gid
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/network/status/v1?dht=1",
            headers={"Authorization": f"Bearer {secret_file.read_text().strip()}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.load(response)
        assert answer["status"] == "OK", answer
        assert answer["result"]["dht"]["contacts"] == 0
        assert answer["result"]["dht"]["layers"][0]["contacts"] == 0
        notify.wait_for("WATCHDOG=1", 5, process)
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0, log.read_text()
        notify.wait_for("STOPPING=1", 1)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        notify.close()
        notify.path.unlink(missing_ok=True)
    print(f"\ninstall test: dht-seed as user bitdust READY=1 after {ready:.2f} s")


def test_nginx_config_uses_the_installed_template(debian_root: DebianRoot) -> None:
    template = debian_root.path / "usr/share/bitdust/nginx/bitdust-identity.conf"
    if not template.is_file():
        pytest.fail("the package carries no nginx template (packaging/nginx/bitdust-identity.conf)")
    result = debian_root.run(
        "bitdust",
        "--instance",
        "identity-server",
        "identity-server",
        "nginx-config",
        "--server-name",
        "host-a.com",
    )
    assert "server_name host-a.com;" in result.stdout
    assert "server 127.0.0.1:8084;" in result.stdout  # the upstream nginx keeps connections to


@pytest.fixture(scope="module")
def newer_deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same binary packaged as the next Debian revision, from a copy of the packaging files
    whose shipped comments changed (a new line in every settings template), as a later release's
    documentation would."""
    work = tmp_path_factory.mktemp("newer")
    source = work / "source"
    for part in ("debian", "systemd", "packaging", "bitdust/roles"):
        shutil.copytree(REPO / part, source / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "bitdust" / "__init__.py", source / "bitdust" / "__init__.py")
    (source / "dist").mkdir()
    try:
        os.link(REPO / "dist" / "bitdust", source / "dist" / "bitdust")
    except OSError:  # another file system
        shutil.copy2(REPO / "dist" / "bitdust", source / "dist" / "bitdust")
    shutil.copy2(REPO / "dist" / "bitdust.bash-completion", source / "dist")
    for template in (source / "packaging" / "etc").glob("*.conf"):
        with open(template, "a") as text:
            text.write(f"#\n{CHANGED_COMMENT}\n")
    upstream, _, revision = debian_version().rpartition("-")
    newer = f"{upstream}-{int(revision) + 1}"
    built = subprocess.run(
        [str(source / "packaging" / "build-deb.sh"), "--version", newer, "--out", str(work)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-4000:]
    return work / f"bitdust_{newer}_amd64.deb"


CHANGED_COMMENT = "# A comment only the newer package's templates have."


@contextlib.contextmanager
def fake_systemd(root: Path) -> Iterator[Path]:
    """/run/systemd/system (systemd "is running") and recording deb-systemd-invoke and
    systemctl in /usr/bin, where the maintainer scripts find them (dpkg gives them its own
    PATH), so that postinst's restart on upgrade is observable; the real ones come back after."""
    calls = root / "tmp" / "systemd-calls.log"
    (root / "run" / "systemd" / "system").mkdir(parents=True, exist_ok=True)
    saved = {}
    for name in ("deb-systemd-invoke", "systemctl"):
        tool = root / "usr" / "bin" / name
        if tool.exists():
            saved[tool] = tool.with_name(name + ".real")
            tool.rename(saved[tool])
        tool.write_text(f'#!/bin/sh\necho "{name} $*" >> /tmp/systemd-calls.log\n')
        tool.chmod(0o755)
    try:
        yield calls
    finally:
        for name in ("deb-systemd-invoke", "systemctl"):
            (root / "usr" / "bin" / name).unlink(missing_ok=True)
        for tool, real in saved.items():
            real.rename(tool)
        shutil.rmtree(root / "run" / "systemd", ignore_errors=True)


def test_apt_upgrade_with_changed_comments_keeps_settings_asks_nothing_and_restarts(
    debian_root: DebianRoot, deb: Path, newer_deb: Path, tmp_path: Path
) -> None:
    """`apt-get upgrade` from the signed repository to a newer build whose documented comments
    changed: the operator's values survive, and dpkg asks nothing (stdin is /dev/null: a
    conffile prompt would fail it); the new comments reach /usr/share/bitdust/conf. Running
    instances are try-restarted."""
    root = debian_root.path
    debian_root.run("bitdust", "--instance", "default", "set", "logs/level", "debug")
    default_conf = root / "etc" / "bitdust" / "default.conf"
    edited = default_conf.read_bytes()
    assert b"\nlogs/level = debug\n" in edited
    untouched = (root / "etc" / "bitdust" / "dht-seed.conf").read_bytes()
    # The operator publishes the newer build, signed with the same key (`make repo`'s).
    upgraded = tmp_path / "apt"
    built = subprocess.run(
        [
            str(REPO / "packaging" / "build-repo.sh"),
            "--out",
            str(upgraded),
            "--gnupghome",
            str(REPO / "build" / "apt-signing"),
            str(deb),
            str(newer_deb),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    debian_root.publish(upgraded)
    updated = debian_root.apt_update()
    assert updated.returncode == 0, updated.stdout + updated.stderr

    running = root / "run" / "bitdust" / "dht-seed"  # as if bitdust@dht-seed were running
    running.mkdir(parents=True, exist_ok=True)
    with fake_systemd(root) as calls:
        result = debian_root.run("apt-get", "upgrade", "-y", "-q")
        recorded = calls.read_text() if calls.exists() else ""
    assert "Configuration file" not in result.stdout, "dpkg asked about a conffile"
    assert default_conf.read_bytes() == edited
    assert (root / "etc" / "bitdust" / "dht-seed.conf").read_bytes() == untouched
    assert not list((root / "etc" / "bitdust").glob("*.dpkg-*"))
    documented = (root / "usr" / "share" / "bitdust" / "conf" / "default.conf").read_text()
    assert CHANGED_COMMENT in documented
    assert CHANGED_COMMENT.encode() not in edited
    version = debian_root.run("dpkg-query", "-W", "-f=${Version}", "bitdust").stdout
    assert version == newer_deb.name.split("_")[1]
    got = debian_root.run("bitdust", "--instance", "default", "get", "logs/level")
    assert got.stdout.strip() == "debug"
    assert "systemctl --system daemon-reload" in recorded, result.stdout + result.stderr
    assert "deb-systemd-invoke try-restart bitdust@dht-seed.service" in recorded
    assert "start" not in recorded.replace("try-restart", "")


def test_purge_stops_instances_and_keeps_the_keys_unless_told(debian_root: DebianRoot) -> None:
    """A non-interactive purge takes the debconf default, keep: the identity keys, stored data
    and the user bitdust (their owner) stay; configuration, units and program go."""
    root = debian_root.path
    (root / "tmp" / "systemd-calls.log").unlink(missing_ok=True)
    key = root / "var" / "lib" / "bitdust" / "dht-seed" / "identity" / "key.pem"
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_bytes(b"an identity key, a user's only way back to their backups\n")
    debian_root.run("bitdust", "--instance", "home", "set", "logs/level", "warning")
    assert (root / "etc" / "bitdust" / "home.conf").is_file()  # made by `bitdust set`
    enabled = root / "etc/systemd/system/bitdust.service.wants/bitdust@supplier.service"
    if not enabled.is_symlink():  # as test_an_enabled_instance_is_wanted_by_the_parent left it
        enabled.parent.mkdir(exist_ok=True)
        enabled.symlink_to("/lib/systemd/system/bitdust@.service")

    (root / "run" / "bitdust" / "supplier").mkdir(parents=True, exist_ok=True)  # "running"
    with fake_systemd(root) as calls:
        purged = debian_root.run("dpkg", "--purge", "bitdust")
        recorded = calls.read_text() if calls.exists() else ""
    stops = [
        line.split()[2:]
        for line in recorded.splitlines()
        if line.startswith("deb-systemd-invoke stop")
    ]
    assert len(stops) == 1 and {"bitdust@supplier.service", "bitdust.service"} <= set(stops[0])

    assert key.read_bytes() == b"an identity key, a user's only way back to their backups\n"
    assert "kept /var/lib/bitdust" in purged.stderr
    assert debian_root.run("getent", "passwd", "bitdust", check=False).returncode == 0
    assert_purged(debian_root, "etc/bitdust", "etc/systemd/system/bitdust.service.wants")
    selections = debian_root.run("debconf-get-selections", check=False).stdout
    assert "bitdust/" not in selections, "the package's debconf answers outlive it"


def test_purge_deletes_keys_data_and_user_when_told(debian_root: DebianRoot, deb: Path) -> None:
    """Answered yes (preseeded with debconf-set-selections, as an admin's automation would):
    purge leaves nothing of bitdust."""
    root = debian_root.path
    debian_root.apt_install(deb)
    assert (root / "var" / "lib" / "bitdust" / "dht-seed" / "identity" / "key.pem").is_file()
    debian_root.run(
        "sh", "-c", "echo 'bitdust bitdust/purge-data boolean true' | debconf-set-selections"
    )
    debian_root.run("dpkg", "--purge", "bitdust")
    assert_purged(debian_root, "etc/bitdust", "var/lib/bitdust", "run/bitdust")
    assert debian_root.run("getent", "passwd", "bitdust", check=False).returncode == 2
    assert debian_root.run("getent", "group", "bitdust", check=False).returncode == 2


def assert_purged(debian_root: DebianRoot, *paths: str) -> None:
    """The package is gone with its program, units and links, and so are ``paths``."""
    root = debian_root.path
    for path in (
        *paths,
        "usr/bin/bitdust",
        "usr/share/bitdust",
        "lib/systemd/system/bitdust@.service",
        "lib/systemd/system/bitdust.service",
        "etc/systemd/system/multi-user.target.wants/bitdust.service",
        "var/lib/dpkg/info/bitdust.postinst",
    ):
        assert not os.path.lexists(root / path), f"/{path} is left after purge"
    status = debian_root.run("dpkg-query", "-W", "-f=${Status}", "bitdust", check=False)
    assert status.returncode != 0 or "not-installed" in status.stdout
