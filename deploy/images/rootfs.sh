#!/bin/sh
# rootfs.sh BINARY OUT [LINK...]
#
# Lays out OUT as the root filesystem of a FROM-scratch image for BINARY:
#   /usr/local/bin/<name>   the binary (0755)
#   <lib paths>             every shared library `ldd BINARY` resolves (glibc's libc, libm,
#                           the dynamic loader, libgcc_s), copied from the system that built
#                           it, at the same paths, so the loader finds them without ld.so.cache
#   LINK...                 absolute paths made symlinks to the binary (SPIKE's image paths,
#                           e.g. /bootstrap, which SPIKE's charts run by path)
#   /etc/passwd, /etc/group one "nonroot" user and group, 65532
# Used by the Containerfiles' build stage and, for images from host-built binaries, by hand
# (deploy/images/README.md). Needs ldd (Debian: libc-bin), cp, install, ln.
set -eu
[ "$#" -ge 2 ] || { echo "usage: $0 BINARY OUT [LINK...]" >&2; exit 2; }
bin=$1
out=$2
shift 2
name=$(basename "$bin")

rm -rf "$out"
mkdir -p "$out/usr/local/bin" "$out/etc"
install -m 0755 "$bin" "$out/usr/local/bin/$name"

# "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and "/lib64/ld-linux-x86-64.so.2
# (0x...)": every absolute path ldd prints. A static binary prints none (and ldd exits 1).
libs=$(ldd "$bin" 2>/dev/null | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' | sort -u || true)
for lib in $libs; do
  mkdir -p "$out$(dirname "$lib")"
  cp -L "$lib" "$out$lib"
  chmod 0755 "$out$lib"
done

for link in "$@"; do
  mkdir -p "$out$(dirname "$link")"
  ln -sf "/usr/local/bin/$name" "$out$link"
done

printf 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' > "$out/etc/passwd"
printf 'nonroot:x:65532:\n' > "$out/etc/group"
echo "rootfs for $name in $out:"
(cd "$out" && find . ! -type d | sort | sed 's/^\./  /')
