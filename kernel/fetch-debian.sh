#!/usr/bin/env bash
# fetch-debian.sh OUTDIR: puts Debian's generic amd64 kernel (linux-image-amd64) under OUTDIR:
#   OUTDIR/bzImage                 the kernel
#   OUTDIR/modules/<release>/...   its modules (lib/modules/<release> of the package)
#   OUTDIR/release                 the release string, e.g. 6.1.0-56-amd64
# The package is fetched with `apt-get download` and unpacked with `dpkg-deb -x`:
# nothing is installed on the host and no maintainer script runs.
set -euo pipefail
out=${1:?usage: fetch-debian.sh OUTDIR}
pkg=${KEEPNET_KERNEL_PACKAGE:-linux-image-amd64}

for tool in apt-get apt-cache dpkg-deb; do
	command -v "$tool" >/dev/null || { echo "fetch-debian.sh: $tool not found; on a non-Debian host build a kernel with kernel/keepnet.config and use KERNEL=... MODULES=..." >&2; exit 1; }
done

# linux-image-amd64 is a metapackage: follow it to the versioned image package.
real=$(apt-cache depends "$pkg" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [ -z "$real" ]; then
	if [ "$(id -u)" = 0 ]; then
		echo "fetch-debian.sh: refreshing the package lists (apt-get update)" >&2
		apt-get update -qq >&2
		real=$(apt-cache depends "$pkg" | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
	fi
fi
[ -n "$real" ] || { echo "fetch-debian.sh: cannot resolve $pkg (run 'apt-get update' as root)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetch-debian.sh: downloading $real" >&2
(cd "$tmp" && apt-get download -qq "$real" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true)
deb=$(ls "$tmp"/*.deb 2>/dev/null | head -n1)
[ -n "$deb" ] || { echo "fetch-debian.sh: apt-get download $real produced no package" >&2; exit 1; }
dpkg-deb -x "$deb" "$tmp/x"

release=$(ls "$tmp/x/lib/modules" | head -n1)
rm -rf "$out.new"
mkdir -p "$out.new/modules"
cp "$tmp/x/boot/vmlinuz-$release" "$out.new/bzImage"
cp "$tmp/x/boot/config-$release" "$out.new/config"
mv "$tmp/x/lib/modules/$release" "$out.new/modules/$release"
echo "$release" >"$out.new/release"
rm -rf "$out"
mv "$out.new" "$out"
echo "fetch-debian.sh: $real -> $out (release $release)" >&2
