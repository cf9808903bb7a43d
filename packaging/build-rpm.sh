#!/usr/bin/env bash
# Builds the driftless RPM: the release binary, one man page per command,
# bash/zsh/fish completions, then `rpmbuild -bb packaging/driftless.spec`.
# The path of the built RPM is the last line of the output.
#
#   packaging/build-rpm.sh [OUTDIR]        (default: target/rpm)
#   CARGO_TARGET_DIR=/build packaging/build-rpm.sh   (the binary from there)
#   DRIFTLESS_RELEASE=2 packaging/build-rpm.sh   (a higher Release:)
#
# Needs cargo, rpmbuild (Debian: the rpm package) and objdump (binutils).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-target/rpm}")
release=${DRIFTLESS_RELEASE:-1}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
[[ -n $version ]] || { echo "build-rpm.sh: no version in Cargo.toml" >&2; exit 1; }

# The version the binary reports is the package's, so that `driftless
# status` tells an upgraded daemon from the old one.
DRIFTLESS_VERSION="$version-$release" cargo build --release --locked >&2
# Where cargo put it, wherever CARGO_TARGET_DIR (or the config) points: a
# stale ./target/release/driftless must never be what is packaged.
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[[ -n $target_dir ]] || { echo "build-rpm.sh: cargo metadata named no target directory" >&2; exit 1; }
bin=$target_dir/release/driftless
echo "packaging $bin" >&2

# RHEL 9 has glibc 2.34: no symbol of a newer glibc may be referenced.
newest=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n1)
if [[ $(printf '%s\n2.34\n' "$newest" | sort -V | tail -n1) != 2.34 ]]; then
    echo "build-rpm.sh: $bin needs glibc $newest; RHEL 9 has 2.34" >&2
    exit 1
fi
echo "glibc: newest symbol version GLIBC_$newest (RHEL 9: 2.34)" >&2

top=$(mktemp -d "${TMPDIR:-/tmp}/driftless-rpmbuild.XXXXXX")
trap 'rm -rf "$top"' EXIT
src=$top/SOURCES
mkdir -p "$src/doc"
install -m 0755 "$bin" "$src/driftless"
"$bin" assets --man "$src/man" --completions "$src/completions"
cp systemd/driftless.service packaging/agent.toml packaging/driftless-alerts.yml "$src/"
cp README.md docs/*.md "$src/doc/"

rpmbuild -bb --quiet \
    --define "_topdir $top" \
    --define "_sourcedir $src" \
    --define "driftless_version $version" \
    --define "driftless_release $release" \
    packaging/driftless.spec >&2
mkdir -p "$out"
rpm=$(find "$top/RPMS" -name 'driftless-*.rpm' | head -n1)
[[ -n $rpm ]] || { echo "build-rpm.sh: rpmbuild made no RPM" >&2; exit 1; }
cp "$rpm" "$out/"
echo "$out/$(basename "$rpm")"
