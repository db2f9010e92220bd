#!/bin/sh
# Build dist/bitdust_<version>_amd64.deb from a clean copy of the packaging files, reusing the
# onefile binary dist/bitdust (debian/rules would run PyInstaller only if it were missing) and
# its bash completion dist/bitdust.bash-completion (written by `make deb` with shtab).
#
# usage: packaging/build-deb.sh [--version DEBIAN_VERSION] [--out DIR]
#   --version  build with a changelog entry for this version on top (the upgrade test uses it)
#   --out      where the .deb goes (default: dist/)
#
# Building from a copy under build/deb keeps the tree clean: dpkg-buildpackage writes debian/bitdust,
# debian/.debhelper and the .buildinfo/.changes next to the source directory.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
version=""
out="$root/dist"
while [ $# -gt 0 ]; do
    case "$1" in
        --version) version=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        *) echo "usage: $0 [--version DEBIAN_VERSION] [--out DIR]" >&2; exit 2 ;;
    esac
done

binary="$root/dist/bitdust"
if [ ! -x "$binary" ]; then
    echo "build-deb.sh: $binary is missing; run 'make binary' first" >&2
    exit 1
fi
completion="$root/dist/bitdust.bash-completion"
if [ ! -f "$completion" ]; then
    echo "build-deb.sh: $completion is missing; run 'make deb' (it writes it with shtab)" >&2
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/bitdust-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
src="$work/bitdust"
mkdir -p "$src/dist" "$src/bitdust"
cp -a "$root/debian" "$root/systemd" "$root/packaging" "$src/"
cp -a "$root/bitdust/roles" "$root/bitdust/__init__.py" "$src/bitdust/"
rm -rf "$src/debian/bitdust" "$src/debian/.debhelper" "$src/debian/generated" \
    "$src/debian/files" "$src/debian/"*.substvars "$src/debian/"*.debhelper.log \
    "$src/debian/debhelper-build-stamp"
# A hard link when possible (same file system), else a copy: never a symlink, which dh would copy
# as a link.
ln "$binary" "$src/dist/bitdust" 2>/dev/null || cp -p "$binary" "$src/dist/bitdust"
cp -p "$completion" "$src/dist/"

if [ -n "$version" ]; then
    changelog="$src/debian/changelog"
    {
        printf 'bitdust (%s) unstable; urgency=medium\n\n' "$version"
        printf '  * Rebuild of the same binary with a higher version.\n\n'
        printf ' -- %s  %s\n\n' "$(sed -n 's/^ -- \(.*>\)  .*/\1/p' "$changelog" | head -n1)" \
            "$(date -R)"
        cat "$changelog"
    } > "$changelog.new"
    mv "$changelog.new" "$changelog"
fi

(cd "$src" && dpkg-buildpackage -b -us -uc >"$work/build.log" 2>&1) || {
    cat "$work/build.log" >&2
    echo "build-deb.sh: dpkg-buildpackage failed" >&2
    exit 1
}
mkdir -p "$out"
for deb in "$src"/dist/*.deb; do
    mv -f "$deb" "$out/"
    echo "built $out/$(basename "$deb")"
done
