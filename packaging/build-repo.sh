#!/bin/sh
# Build a signed APT repository of bitdust packages, ready to publish as static files.
#
# usage: packaging/build-repo.sh [--out DIR] [--gnupghome DIR] [--key KEYID] DEB...
#   --out        the repository (default: dist/apt); replaced entirely
#   --gnupghome  the GnuPG home holding the signing key (default: build/apt-signing, never
#                published); a key is made there when it holds none and --key is not given
#   --key        the key to sign with (default: the first secret key of --gnupghome)
#
# Layout (what `deb [signed-by=...] URL stable main` reads):
#   pool/main/b/bitdust/bitdust_<version>_amd64.deb
#   dists/stable/main/binary-amd64/Packages{,.gz}
#   dists/stable/{Release,Release.gpg,InRelease}
#   bitdust-archive-keyring.gpg (for /usr/share/keyrings) and .asc: the public key only
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/dist/apt"
gnupghome="$root/build/apt-signing"
key=""
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=$2; shift 2 ;;
        --gnupghome) gnupghome=$2; shift 2 ;;
        --key) key=$2; shift 2 ;;
        --) shift; break ;;
        -*) echo "usage: $0 [--out DIR] [--gnupghome DIR] [--key KEYID] DEB..." >&2; exit 2 ;;
        *) break ;;
    esac
done
if [ $# -eq 0 ]; then
    echo "build-repo.sh: no .deb given; run 'make deb' first" >&2
    exit 2
fi
for deb in "$@"; do
    if [ ! -f "$deb" ]; then
        echo "build-repo.sh: $deb is missing" >&2
        exit 2
    fi
done

gpg() { command gpg --batch --quiet --homedir "$gnupghome" "$@"; }
# The signing key lives outside the repository; its agent is stopped once we are done.
mkdir -p "$gnupghome"
chmod 700 "$gnupghome"
trap 'gpgconf --homedir "$gnupghome" --kill gpg-agent 2>/dev/null || true' EXIT
if [ -z "$key" ]; then
    if ! gpg --list-secret-keys --with-colons 2>/dev/null | grep -q '^sec'; then
        gpg --passphrase '' --quick-gen-key \
            "BitDust APT repository (made by make repo) <packaging@bitdust.invalid>" \
            ed25519 sign never
        echo "build-repo.sh: made a signing key in $gnupghome (keep it: hosts trust only it)"
    fi
    key=$(gpg --list-secret-keys --with-colons | awk -F: '$1 == "fpr" { print $10; exit }')
fi

rm -rf "$out"
mkdir -p "$out"
out=$(cd "$out" && pwd)
pool="$out/pool/main/b/bitdust"
binary="$out/dists/stable/main/binary-amd64"
mkdir -p "$pool" "$binary"
for deb in "$@"; do
    cp "$deb" "$pool/"
done
(
    cd "$out"
    apt-ftparchive packages pool > "$binary/Packages"
    gzip -9n < "$binary/Packages" > "$binary/Packages.gz"
    apt-ftparchive \
        -o APT::FTPArchive::Release::Origin=BitDust \
        -o APT::FTPArchive::Release::Label=BitDust \
        -o APT::FTPArchive::Release::Suite=stable \
        -o APT::FTPArchive::Release::Codename=stable \
        -o APT::FTPArchive::Release::Architectures=amd64 \
        -o APT::FTPArchive::Release::Components=main \
        -o "APT::FTPArchive::Release::Description=BitDust node packages" \
        release dists/stable > "$out/Release.tmp"
)
mv "$out/Release.tmp" "$out/dists/stable/Release"
gpg --local-user "$key" --clearsign -o "$out/dists/stable/InRelease" "$out/dists/stable/Release"
gpg --local-user "$key" --armor --detach-sign -o "$out/dists/stable/Release.gpg" \
    "$out/dists/stable/Release"
gpg --export "$key" > "$out/bitdust-archive-keyring.gpg"
gpg --armor --export "$key" > "$out/bitdust-archive-keyring.asc"
echo "built $out (signed by $key)"
