#!/bin/sh
# docker/build-offline.sh: builds the Minotaur test image on a machine with no registry.
#
#   docker/build-offline.sh [--tag TAG] [--features F] [--app-version V] [--target-dir D] [-- CARGO_ARGS...]
#
#   --tag TAG          image tag (default minotaur:offline)
#   --features F       cargo features of `minotaur` (e.g. schema-v2 for the upgrade tests' v2)
#   --app-version V    exported as MINOTAUR_APP_VERSION while cargo builds (the binary's version)
#   --target-dir D     cargo target directory (default $CARGO_TARGET_DIR, else <repo>/target);
#                      the static build lands in D/x86_64-unknown-linux-gnu/release/
#   -- CARGO_ARGS      passed to `cargo build` as they are (e.g. --offline)
#
# Steps: builds a statically linked binary (glibc, +crt-static; `--target` is needed so that
# RUSTFLAGS do not reach proc-macros), checks it is static with `file` and `ldd`, assembles a
# root file system in a temporary directory (static busybox + applet links, /etc/passwd, the rel
# scripts, the binary without its debug info, which rel/split-debug.sh leaves beside cargo's as
# D/x86_64-unknown-linux-gnu/release/minotaur.debug), runs `docker build` with
# docker/Dockerfile.offline (FROM scratch: nothing is pulled; no --pull) and prints the image id
# on stdout. Everything else goes to stderr.
#
# Needs: cargo with the x86_64-unknown-linux-gnu target, a static busybox (`apt-get install
# busybox-static`, or BUSYBOX=/path/to/static/busybox), file, ldd, objcopy (binutils), docker.
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
tag=minotaur:offline
features=
app_version=
target_dir=${CARGO_TARGET_DIR:-$repo/target}
triple=x86_64-unknown-linux-gnu

die() {
    echo "build-offline: $*" >&2
    exit 2
}
usage() {
    sed -n '2,/^set -eu/p' "$0" | sed -e '/^set -eu/d' -e 's/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

while [ $# -gt 0 ]; do
    case $1 in
        --tag) [ $# -ge 2 ] || die "--tag needs a value"; tag=$2; shift 2 ;;
        --tag=*) tag=${1#*=}; shift ;;
        --features) [ $# -ge 2 ] || die "--features needs a value"; features=$2; shift 2 ;;
        --features=*) features=${1#*=}; shift ;;
        --app-version) [ $# -ge 2 ] || die "--app-version needs a value"; app_version=$2; shift 2
            [ -n "$app_version" ] || die "--app-version: expected a version, e.g. 2.0.0" ;;
        --app-version=*) app_version=${1#*=}; shift
            [ -n "$app_version" ] || die "--app-version: expected a version, e.g. 2.0.0" ;;
        --target-dir) [ $# -ge 2 ] || die "--target-dir needs a value"; target_dir=$2; shift 2 ;;
        --target-dir=*) target_dir=${1#*=}; shift ;;
        -h | --help) usage 0 ;;
        --) shift; break ;;
        *) die "unknown argument \`$1\` (see --help)" ;;
    esac
done
[ -n "$tag" ] || die "--tag: expected an image tag, e.g. minotaur:v2"

for tool in cargo docker file ldd objcopy; do
    command -v "$tool" >/dev/null 2>&1 || die "\`$tool\` not found"
done
busybox=${BUSYBOX:-/bin/busybox}
[ -x "$busybox" ] || die "no busybox at $busybox: apt-get install -y busybox-static (or set BUSYBOX)"
file -L "$busybox" | grep -q 'statically linked' \
    || die "$busybox is not statically linked: apt-get install -y busybox-static (or set BUSYBOX)"

# The runtime part of both Dockerfiles (user, ENV, ports, signal, health check, entrypoint, command)
# must be the same: only the binary's origin may differ.
runtime_spec() {
    # The last stage, continuation lines joined; comments, FROM, RUN, COPY and ARG dropped.
    awk '
        /^[[:space:]]*#/ { next }
        { line = line $0 }
        /\\[[:space:]]*$/ { sub(/\\[[:space:]]*$/, " ", line); next }
        {
            if (line ~ /^FROM /) out = ""
            else if (line !~ /^(RUN|COPY|ARG) / && line !~ /^[[:space:]]*$/) out = out line "\n"
            line = ""
        }
        END { printf "%s", out }' "$1" | tr -s ' \t' ' '
}
spec_shipped=$(runtime_spec "$repo/docker/Dockerfile")
spec_offline=$(runtime_spec "$repo/docker/Dockerfile.offline")
if [ "$spec_shipped" != "$spec_offline" ]; then
    printf 'docker/Dockerfile:\n%s\ndocker/Dockerfile.offline:\n%s\n' "$spec_shipped" "$spec_offline" >&2
    die "docker/Dockerfile and docker/Dockerfile.offline disagree on the runtime settings above"
fi
[ -n "$spec_shipped" ] || die "cannot read the runtime settings of docker/Dockerfile"

# --- 1. The static binary. ---------------------------------------------------------------------
if [ -n "$app_version" ]; then
    MINOTAUR_APP_VERSION=$app_version
    export MINOTAUR_APP_VERSION
fi
# linux_getrandom: getrandom would otherwise look the syscall up with dlsym, which fails in a
# static binary, and fall back to /dev/urandom.
RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\""
export RUSTFLAGS
echo "build-offline: cargo build --release -p minotaur --target $triple --target-dir $target_dir${features:+ --features $features}${app_version:+ (MINOTAUR_APP_VERSION=$app_version)}" >&2
start=$(date +%s)
(
    cd "$repo"
    # shellcheck disable=SC2086 # the two words of --features, the value quoted
    cargo build --release --locked -p minotaur --target "$triple" --target-dir "$target_dir" \
        ${features:+--features "$features"} "$@"
) >&2
echo "build-offline: cargo took $(($(date +%s) - start)) s" >&2

bin=$target_dir/$triple/release/minotaur
[ -x "$bin" ] || die "no binary at $bin"
desc=$(file -L "$bin")
echo "build-offline: $desc" >&2
case $desc in
    *"statically linked"* | *"static-pie linked"*) ;;
    *) die "$bin is not statically linked (file: $desc)" ;;
esac
# ldd exits non-zero ("not a dynamic executable") or prints "statically linked" for a static
# binary; any "=>" line is a shared library.
if ldd "$bin" 2>&1 | grep -q '=>'; then
    ldd "$bin" >&2 || true
    die "$bin needs shared libraries"
fi
echo "build-offline: ldd: $(ldd "$bin" 2>&1 | head -n 1 | tr -s ' \t' ' ')" >&2

# --- 2. The root file system. ------------------------------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/minotaur-offline.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
root=$tmp/rootfs
mkdir -p "$root/bin" "$root/etc" "$root/app/bin" "$root/app/rel" "$root/tmp" "$root/root" "$tmp/home"
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"

cp "$busybox" "$root/bin/busybox"
chmod 0755 "$root/bin/busybox"
# The applets the scripts use (sh, id), and a few for looking around (`docker exec C sh`).
for applet in sh ash cat tr timeout ip nslookup hostname id env sleep kill ps ls grep sed awk \
    head tail cut wc sort uniq printf echo test [ mkdir rm cp mv ln chmod touch date uname \
    netstat nc wget ping less vi dirname basename readlink true false; do
    ln -s busybox "$root/bin/$applet"
done

cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
minotaur:x:10001:10001:minotaur:/home/minotaur:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
minotaur:x:10001:
nogroup:x:65534:
EOF
# No /etc/hosts, /etc/hostname or /etc/resolv.conf: Docker mounts its own.

# The release profile keeps line tables (file:line in backtraces): the image gets the binary
# without them, and they go beside cargo's binary, as minotaur.debug, not into the image
# (rel/split-debug.sh; the README says how to use it).
debug=$bin.debug
"$repo/rel/split-debug.sh" "$bin" "$root/app/bin/minotaur.bin" "$debug"
install -m 0755 "$repo/rel/entrypoint.sh" "$root/app/bin/entrypoint.sh"
install -m 0755 "$repo/rel/minotaur" "$root/app/bin/minotaur"
install -m 0644 "$repo/rel/env.sh" "$root/app/rel/env.sh"
cp "$repo/docker/Dockerfile.offline" "$tmp/Dockerfile"

# --- 3. The image. -----------------------------------------------------------------------------
docker build --iidfile "$tmp/iid" -t "$tag" -f "$tmp/Dockerfile" "$tmp" >&2
id=$(cat "$tmp/iid")
echo "build-offline: built $tag ($(docker image inspect -f '{{.Size}}' "$id") bytes); debug info in $debug" >&2
echo "$id"
