"""The Debian package as built: lintian, its contents, its settings templates and their comments.

The templates (/usr/share/bitdust/conf, copied once to /etc/bitdust by postinst: no conffiles)
list every setting commented out with the value the role preset gives it, so the preset applies
as shipped and `bitdust set` has a line to write beneath; these tests keep those comments true to
the option registry and the presets.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import bitdust
from bitdust.config import OPTIONS, ROLES, network_json_settings, read_conffile
from tests.packaging.conftest import REPO, debian_version, require_tool

pytestmark = pytest.mark.packaging

TEMPLATES = [f"/usr/share/bitdust/conf/{role}.conf" for role in ROLES] + [
    "/usr/share/bitdust/conf/network.json"
]
SHIPPED = REPO / "packaging" / "etc"
COMMENTED_KEY = re.compile(r"^# ([a-z0-9/-]+) = ?(.*)$")


@pytest.fixture(scope="module")
def contents(deb: Path) -> dict[str, str]:
    """Path → ``ls -l``-style mode and owner of every entry in the package."""
    listing = subprocess.run(
        ["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True
    ).stdout
    entries = {}
    for line in listing.splitlines():
        fields = line.split()
        entries[fields[5].removeprefix(".").rstrip("/") or "/"] = f"{fields[0]} {fields[1]}"
    return entries


def control_file(deb: Path, name: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "--info", str(deb), name], capture_output=True, text=True, check=True
    ).stdout


def field(deb: Path, name: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_lintian_reports_no_errors(deb: Path) -> None:
    require_tool("lintian")
    result = subprocess.run(
        ["lintian", "--pedantic", "--display-info", "--no-tag-display-limit", str(deb)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    tags = [line for line in result.stdout.splitlines() if line[:2] in ("E:", "W:", "I:", "P:")]
    print("\nlintian: " + ("\n  ".join(["", *tags]) if tags else "clean"))
    overrides = (REPO / "debian" / "bitdust.lintian-overrides").read_text()
    print("overridden: " + ", ".join(re.findall(r"^bitdust: (\S+)", overrides, re.M)))
    assert not [line for line in tags if line.startswith("E:")], result.stdout
    assert result.returncode in (0, 1), result.stderr  # 1: some warnings were printed


def test_package_fields(deb: Path) -> None:
    assert debian_version() == f"{bitdust.__version__}-1" or debian_version().startswith(
        f"{bitdust.__version__}-"
    ), "debian/changelog and bitdust.__version__ disagree"
    assert field(deb, "Package") == "bitdust"
    assert field(deb, "Version") == debian_version()
    assert field(deb, "Architecture") == "amd64"
    depends = [item.split()[0] for item in field(deb, "Depends").split(", ")]
    assert depends[0] == "adduser"
    assert set(depends) <= {"adduser", "debconf", "libc6", "zlib1g"}, depends
    assert field(deb, "Suggests") == "nginx"


def glibc_needed_by(elf: Path) -> tuple[int, ...]:
    """Highest GLIBC_ version among the dynamic symbols the file imports (objdump -T)."""
    dump = subprocess.run(
        ["objdump", "-T", str(elf)], capture_output=True, text=True, check=True
    ).stdout
    versions = re.findall(r"\bGLIBC_(\d+(?:\.\d+)+)\b", dump)
    return max((tuple(map(int, v.split("."))) for v in versions), default=())


def test_libc_dependency_is_what_the_bundled_libraries_need(
    deb: Path, binary: Path, tmp_path: Path
) -> None:
    """Depends names the glibc of the most demanding library in the onefile archive, found here
    with PyInstaller's own archive reader and objdump -T (the build uses its own reader and
    objdump -p): installing on an older release must be refused, not fail at run time."""
    from PyInstaller.archive.readers import CArchiveReader

    require_tool("objdump")
    archive = CArchiveReader(str(binary))
    needed = {"(bootloader)": glibc_needed_by(binary)}
    for name, entry in archive.toc.items():
        if entry[-1] != "b":
            continue
        extracted = tmp_path / name.replace("/", "_")
        extracted.write_bytes(archive.extract(name))
        needed[name] = glibc_needed_by(extracted)
    highest = max(needed.values())
    print(f"\nglibc needed: {highest} by {[n for n, v in needed.items() if v == highest]}")
    assert highest >= (2, 34), "libpython/libcrypto of this build need at least 2.34"
    libc = [item for item in field(deb, "Depends").split(", ") if item.split()[0] == "libc6"]
    assert libc == [f"libc6 (>= {'.'.join(map(str, highest))})"]


def test_package_contents(deb: Path, contents: dict[str, str], binary: Path) -> None:
    assert contents["/usr/bin/bitdust"].startswith("-rwxr-xr-x root/root")
    for unit in ("bitdust@.service", "bitdust.service"):
        assert contents[f"/lib/systemd/system/{unit}"].startswith("-rw-r--r--")
    for role in ROLES:
        assert f"/usr/share/bitdust/roles/{role}.conf" in contents
    for template in TEMPLATES:
        assert contents[template].startswith("-rw-r--r-- root/root"), template
    assert "/usr/share/man/man1/bitdust.1.gz" in contents
    assert "/usr/share/doc/bitdust/copyright" in contents
    if (REPO / "packaging" / "nginx" / "bitdust-identity.conf").is_file():
        assert "/usr/share/bitdust/nginx/bitdust-identity.conf" in contents
    assert not [path for path in contents if path.startswith(("/var", "/run", "/tmp", "/etc"))]
    # The packaged binary is dist/bitdust byte for byte: never stripped, never rebuilt.
    with subprocess.Popen(
        ["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE
    ) as tar_stream:
        packaged = subprocess.run(
            ["tar", "-xOf", "-", "./usr/bin/bitdust"],
            stdin=tar_stream.stdout,
            capture_output=True,
            check=True,
        ).stdout
    assert packaged == binary.read_bytes(), "the .deb does not carry dist/bitdust as built"


def test_bash_completion_is_shtabs_of_the_current_parser(
    deb: Path, contents: dict[str, str]
) -> None:
    """The package's completion is what packaging/completion.py writes from the CLI's parser
    now: a command added since the last build would be missing from it."""
    path = "/usr/share/bash-completion/completions/bitdust"
    assert contents[path].startswith("-rw-r--r-- root/root")
    with subprocess.Popen(
        ["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE
    ) as tar_stream:
        shipped = subprocess.run(
            ["tar", "-xOf", "-", f".{path}"],
            stdin=tar_stream.stdout,
            capture_output=True,
            check=True,
        ).stdout.decode()
    current = subprocess.run(
        [sys.executable, str(REPO / "packaging" / "completion.py"), "bash"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert shipped == current, "the packaged completion is stale: run 'make deb'"


def test_no_conffiles_so_no_upgrade_can_prompt(deb: Path) -> None:
    """`bitdust set` edits /etc/bitdust/*.conf; were they conffiles, the first release whose
    comments changed would make dpkg prompt on every host where someone ran it (issue 16.3)."""
    members = subprocess.run(
        ["dpkg-deb", "--info", str(deb)], capture_output=True, text=True, check=True
    ).stdout
    assert not [line for line in members.splitlines() if line.split()[-1:] == ["conffiles"]]
    postinst = control_file(deb, "postinst")
    copy = postinst.index("for template in /usr/share/bitdust/conf/*; do")
    assert '[ ! -e "$target" ] && [ ! -L "$target" ]' in postinst[copy:]


def test_maintainer_scripts(deb: Path) -> None:
    postinst = control_file(deb, "postinst")
    user = postinst.index("adduser --system --group --home /var/lib/bitdust --no-create-home")
    assert "--disabled-password --shell /usr/sbin/nologin" in postinst
    assert user < postinst.index("# Automatically added by dh_installsystemd")
    assert "deb-systemd-invoke try-restart" in postinst
    assert "[ -d /run/systemd/system ]" in postinst
    # The template is never enabled or started; the parent is enabled, not started.
    generated = re.findall(
        r"# Automatically added by dh_installsystemd.*?# End automatically added section",
        postinst,
        re.S,
    )
    assert generated and not [part for part in generated if "bitdust@" in part]
    assert "deb-systemd-helper enable 'bitdust.service'" in generated[0]
    assert "deb-systemd-invoke start" not in postinst
    prerm = control_file(deb, "prerm")
    assert 'if [ "$1" = "remove" ] && [ -d /run/systemd/system ]; then' in prerm
    assert "deb-systemd-invoke stop $units bitdust.service" in prerm
    postrm = control_file(deb, "postrm")
    purge = postrm[postrm.index('if [ "$1" = "purge" ]; then\n    # /etc/bitdust') :]
    assert "rm -rf /etc/bitdust /run/bitdust" in purge
    # Keys, data and their owner go only when the admin answered yes (debconf, default keep),
    # asked before debhelper's part purges the debconf answers.
    delete = purge[purge.index('if [ "$delete_data" != "true" ]') :]
    assert "rm -rf /var/lib/bitdust" not in purge.replace(delete, "")
    answered_yes = delete[delete.index("    else\n        rm -rf /var/lib/bitdust\n") :]
    assert "deluser --system --quiet bitdust" in answered_yes
    assert "deluser" not in delete.replace(answered_yes, "").replace("deluser --system bitdust", "")
    asked = postrm.index("db_get bitdust/purge-data")
    assert asked < postrm.index("db_purge") < postrm.index("rm -rf /etc/bitdust")
    templates = control_file(deb, "templates")
    assert "Template: bitdust/purge-data\nType: boolean\nDefault: false\n" in templates


@pytest.mark.parametrize("role", ROLES)
def test_conffile_comments_show_each_roles_values(role: str) -> None:
    """Commented out entirely; every `# key = value` names a real setting and, where the value
    is not an example, the one the role preset (or the registry default) gives it."""
    path = SHIPPED / f"{role}.conf"
    assert read_conffile(path) == {}, f"{path} sets something; the preset must apply as shipped"
    preset = read_conffile(REPO / "bitdust" / "roles" / f"{role}.conf")
    text = path.read_text()
    seen = set()
    for line in text.splitlines():
        match = COMMENTED_KEY.match(line)
        if not match or match.group(1) not in OPTIONS:
            assert not (match and "/" in match.group(1)), f"{role}.conf: unknown key in {line!r}"
            continue
        key, raw = match.groups()
        assert key not in seen, f"{role}.conf lists {key} twice"
        seen.add(key)
        option = OPTIONS[key]
        expected = preset.get(key, option.default)
        if raw.strip() and option.format(expected) != "":
            assert option.parse(raw) == expected, f"{role}.conf: {line!r} is not the value in use"
        elif raw.strip():
            option.parse(raw)  # an example for an empty default must at least be valid
    for service_enabled in (key for key in OPTIONS if key.endswith("/enabled")):
        assert service_enabled in seen, f"{role}.conf does not list {service_enabled}"
    preset_text = (REPO / "bitdust" / "roles" / f"{role}.conf").read_text()
    for port in re.findall(r"^([a-z0-9/-]+port) = ", preset_text, re.M):
        assert port in seen, f"{role}.conf does not list its port {port}"
    assert max(map(len, text.splitlines())) <= 100


def test_network_json_is_bitdusts_shape_with_empty_lists() -> None:
    data = json.loads((SHIPPED / "network.json").read_text())
    assert data["service_entangled_dht"]["known_nodes"] == []
    assert data["service_identity_propagate"]["known_servers"] == []
    values = network_json_settings(data, "network.json")
    assert values["services/entangled-dht/known-nodes"] == ()
    assert values["services/identity-propagate/known-servers"] == ()
    for key, value in values.items():
        assert value == OPTIONS[key].default, f"network.json changes {key} from its default"
