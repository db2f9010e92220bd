"""Print the glibc version a PyInstaller onefile program needs: the highest GLIBC_x.y symbol
version required by its bootloader or by any shared library bundled in its archive.

dpkg-shlibdeps sees only the bootloader (it asks for glibc 2.14), not the libraries unpacked at
run time (libpython asks for 2.35): debian/rules turns this version into `libc6 (>= X)`, so the
package refuses to install where the program could not start.

usage: python3 libc_requirement.py PROGRAM    (prints e.g. "2.35")

Only the standard library and binutils' objdump: debian/rules runs it with the build's python3.
"""

from __future__ import annotations

import re
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

# PyInstaller's CArchive ("PKG"), appended to the bootloader: a cookie at the end points at a
# table of contents whose entries locate each member (PyInstaller/archive/readers.py).
COOKIE_MAGIC = b"MEI\014\013\012\013\016"
COOKIE = struct.Struct("!8sIIII64s")
TOC_ENTRY = struct.Struct("!IIIIBc")
BINARY = b"b"  # typecode of shared libraries and extension modules
ELF_MAGIC = b"\x7fELF"
GLIBC_VERSION = re.compile(rb"\bGLIBC_(\d+(?:\.\d+)+)\b")


class NotAOnefileProgram(ValueError):
    pass


def bundled_libraries(program: bytes) -> Iterator[tuple[str, bytes]]:
    """(name, contents) of every ELF member of the program's archive, decompressed."""
    cookie_at = program.rfind(COOKIE_MAGIC)
    if cookie_at < 0:
        raise NotAOnefileProgram("no PyInstaller archive cookie found")
    _, length, toc_offset, toc_length, _, _ = COOKIE.unpack_from(program, cookie_at)
    start = cookie_at + COOKIE.size - length
    toc = program[start + toc_offset : start + toc_offset + toc_length]
    position = 0
    while position < len(toc):
        size, offset, stored, _, compressed, typecode = TOC_ENTRY.unpack_from(toc, position)
        name = toc[position + TOC_ENTRY.size : position + size].rstrip(b"\0").decode()
        position += size
        if typecode != BINARY:
            continue
        data = program[start + offset : start + offset + stored]
        data = zlib.decompress(data) if compressed else data
        if data.startswith(ELF_MAGIC):
            yield name, data


def required_glibc(elf: Path) -> tuple[int, ...]:
    """The highest GLIBC_ version in the file's version references (objdump -p), or ()."""
    dump = subprocess.run(["objdump", "-p", str(elf)], capture_output=True, check=True).stdout
    references = dump.partition(b"Version References:")[2]
    versions = [tuple(map(int, m.decode().split("."))) for m in GLIBC_VERSION.findall(references)]
    return max(versions, default=())


def program_glibc(program: Path) -> tuple[int, ...]:
    libraries = list(bundled_libraries(program.read_bytes()))
    needed = required_glibc(program)
    with tempfile.TemporaryDirectory(prefix="libc-requirement-") as temp:
        for index, (_, data) in enumerate(libraries):
            library = Path(temp) / str(index)
            library.write_bytes(data)
            needed = max(needed, required_glibc(library))
    return needed


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: libc_requirement.py PROGRAM", file=sys.stderr)
        return 2
    try:
        needed = program_glibc(Path(argv[1]))
    except (OSError, NotAOnefileProgram, subprocess.CalledProcessError) as exc:
        print(f"libc_requirement.py: {argv[1]}: {exc}", file=sys.stderr)
        return 1
    if not needed:
        print(f"libc_requirement.py: {argv[1]} references no GLIBC_ version", file=sys.stderr)
        return 1
    print(".".join(map(str, needed)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
