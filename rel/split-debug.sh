#!/bin/sh
# rel/split-debug.sh: splits a release build's debug info out of the binary that ships.
#
#   rel/split-debug.sh BINARY SHIPPED DEBUG
#
# The release profile keeps line tables (file:line in backtraces), about four fifths of the
# binary. DEBUG gets them (`objcopy --only-keep-debug`, compressed); SHIPPED is BINARY without
# them (`--strip-debug`: the symbols stay, so a backtrace still names every function) and with a
# `.gnu_debuglink` naming DEBUG's file name and checksum. Put DEBUG beside SHIPPED (or in
# /usr/lib/debug) and a backtrace gains file:line again; gdb and addr2line read it too.
# docker/Dockerfile and docker/build-offline.sh ship SHIPPED and leave DEBUG out of the image.
#
# Needs objcopy (binutils). POSIX sh: runs in the build images as they are.
set -eu

die() {
    echo "split-debug: $*" >&2
    exit 2
}

[ $# -eq 3 ] || die "usage: rel/split-debug.sh BINARY SHIPPED DEBUG"
binary=$1
shipped=$2
debug=$3
[ -f "$binary" ] || die "no binary at $binary"
command -v objcopy >/dev/null 2>&1 || die "\`objcopy\` not found: apt-get install -y binutils"
[ "$shipped" != "$binary" ] || die "SHIPPED must differ from BINARY (cargo's output stays whole)"

mkdir -p "$(dirname "$shipped")" "$(dirname "$debug")"
tmp="$shipped.tmp.$$"
trap 'rm -f "$tmp"' EXIT
trap 'exit 130' INT TERM
# The debug file first: the link records its checksum.
objcopy --only-keep-debug --compress-debug-sections=zlib "$binary" "$debug"
objcopy --strip-debug --add-gnu-debuglink="$debug" "$binary" "$tmp"
chmod 0755 "$tmp"
mv "$tmp" "$shipped"
chmod 0644 "$debug"
echo "split-debug: $shipped $(wc -c <"$shipped") bytes, $debug $(wc -c <"$debug") bytes (from $(wc -c <"$binary"))" >&2
