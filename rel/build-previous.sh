#!/usr/bin/env bash
# rel/build-previous.sh: builds an earlier build of Minotaur from its own sources, for the
# tests that run it beside this one.
#
#   rel/build-previous.sh bin             the previous release (rel/previous-release), debug;
#                                         prints the binary's path
#   rel/build-previous.sh image TAG       the previous release's image, by its own
#                                         docker/build-offline.sh (static binary, FROM scratch,
#                                         nothing pulled); prints the image id and keeps the
#                                         static binary (see static-bin)
#   rel/build-previous.sh static-bin      the path of that static binary (built first, with an
#                                         image that is then removed, when missing)
#   rel/build-previous.sh bin-at COMMIT   any earlier commit of main, debug (the door test runs
#                                         367b6ad, a build two weeks older than release 0.1.0);
#                                         its crates are renamed <version>-<commit> so that their
#                                         artifacts never clash with a release's
#   rel/build-previous.sh worktree        prints the path of the previous release's worktree
#   rel/build-previous.sh describe        prints "<commit> <version>" of the previous release
#
# The sources are a git worktree per commit under target/previous/ (made once, reused). The
# debug builds (bin, bin-at) go to $MINOTAUR_EARLIER_TARGET, by default target/previous/target,
# a target directory of their own: a test that builds one on demand must not touch the
# binary the other tests run (target/debug/minotaur). CI builds them before the tests into
# the repository's own target directory (MINOTAUR_EARLIER_TARGET=target), so the
# dependencies the builds share are compiled once; then the binary is copied out to
# target/previous/bin/ and the target's own copy removed at once (cargo does not link this
# repository's `minotaur` again while it is fresh, and puts it back only when the file is
# missing). The image's static build goes to target/static, which the Swarm test's build of
# this repository shares. Needs the commits in this clone's history (a shallow clone: `git
# fetch --unshallow`).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

die() { printf 'build-previous: %s\n' "$*" >&2; exit 2; }

read -r commit version _ <"$repo/rel/previous-release" || die "cannot read rel/previous-release"
[[ "$commit" =~ ^[0-9a-f]{40}$ ]] || die "rel/previous-release: expected '<40-hex commit> <version>', got '$commit $version'"
[ -n "$version" ] || die "rel/previous-release: no version after the commit"

# Every build shares one target directory; cargo tells crates apart by version (an artifact's
# name hashes the crate's name, version and path relative to its workspace), so the previous
# release's version must differ from this one's.
ours=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -n 1)
[ "$ours" != "$version" ] ||
    die "this build's version ($ours, Cargo.toml) is the previous release's: raise it (every release raises it) before building both"

target=${CARGO_TARGET_DIR:-$repo/target}
earlier=${MINOTAUR_EARLIER_TARGET:-$repo/target/previous/target}
work=$repo/target/previous
bin_dir=$work/bin

# worktree COMMIT: a clean worktree of COMMIT at $work/<commit>; prints its path.
worktree() {
    local c=$1 src=$work/$1
    git cat-file -e "$c^{commit}" 2>/dev/null ||
        die "commit $c is not in this clone: fetch it (git fetch --unshallow, or git fetch origin $c)"
    if [ -e "$src/.git" ] && [ "$(git -C "$src" rev-parse HEAD 2>/dev/null)" = "$c" ]; then
        printf '%s\n' "$src"
        return
    fi
    printf 'build-previous: worktree of %s at %s\n' "$c" "$src" >&2
    git worktree prune
    rm -rf "$src"
    mkdir -p "$work"
    git worktree add --force --detach "$src" "$c" >&2
    printf '%s\n' "$src"
}

# debug_build SRC OUT MARK [CARGO_ARGS...]: builds `minotaur` from SRC into the shared target
# and copies it to OUT (unless OUT is already the build MARK names).
debug_build() {
    local src=$1 out=$2 mark=$3
    shift 3
    if [ -x "$out" ] && [ "$(cat "$out.built" 2>/dev/null)" = "$mark" ]; then
        return
    fi
    printf 'build-previous: cargo build -p minotaur in %s (target %s)\n' "$src" "$earlier" >&2
    (cd "$src" && cargo build "$@" -p minotaur --target-dir "$earlier") >&2
    mkdir -p "$bin_dir"
    install -m 0755 "$earlier/debug/minotaur" "$out"
    rm -f "$earlier/debug/minotaur"
    printf '%s\n' "$mark" >"$out.built"
}

case ${1:-} in
    describe)
        printf '%s %s\n' "$commit" "$version"
        ;;
    worktree)
        worktree "$commit"
        ;;
    bin)
        src=$(worktree "$commit")
        out=$bin_dir/minotaur-$version
        debug_build "$src" "$out" "$commit debug" --locked
        printf '%s\n' "$out"
        ;;
    bin-at)
        [ -n "${2:-}" ] || die "bin-at: expected a commit"
        c=$(git rev-parse --verify "${2}^{commit}" 2>/dev/null) || die "bin-at: $2 is not a commit of this clone"
        short=${c:0:7}
        src=$(worktree "$c")
        theirs=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$src/Cargo.toml" | head -n 1)
        label=${theirs%%-*}-$short
        # Renamed in the worktree only (Cargo.lock follows; nothing is committed).
        sed -i "0,/^version = \".*\"$/s//version = \"$label\"/" "$src/Cargo.toml"
        out=$bin_dir/minotaur-$label
        debug_build "$src" "$out" "$c debug $label"
        printf '%s\n' "$out"
        ;;
    image | static-bin)
        out=$bin_dir/minotaur-$version-static
        if [ "$1" = static-bin ] && [ -x "$out" ] && [ "$(cat "$out.built" 2>/dev/null)" = "$commit static" ]; then
            printf '%s\n' "$out"
            exit 0
        fi
        [ "$1" = image ] && [ -z "${2:-}" ] && die "image: expected a tag, e.g. minotaur-previous:$version"
        tag=${2:-minotaur-previous:$version}
        src=$(worktree "$commit")
        static_target=${MINOTAUR_STATIC_TARGET:-$target/static}
        id=$("$src/docker/build-offline.sh" --tag "$tag" --target-dir "$static_target")
        mkdir -p "$bin_dir"
        install -m 0755 "$static_target/x86_64-unknown-linux-gnu/release/minotaur" "$out"
        rm -f "$static_target/x86_64-unknown-linux-gnu/release/minotaur"
        printf '%s static\n' "$commit" >"$out.built"
        if [ "$1" = image ]; then
            printf '%s\n' "$id"
        else
            docker rmi -f "$tag" >/dev/null 2>&1 || true
            printf '%s\n' "$out"
        fi
        ;;
    *)
        sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
