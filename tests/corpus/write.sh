#!/usr/bin/env bash
# tests/corpus/write.sh RELEASE: writes tests/corpus/RELEASE/ (one file per message kind and
# game state, see tests/corpus/fixtures.rs) with that release's own build.
#   - this release: `MINOTAUR_WRITE_CORPUS=1 cargo test -p minotaur --test corpus`;
#   - the previous release (rel/previous-release): its generator tests/corpus/RELEASE/generate.rs
#     runs as an example of its `minotaur` crate in its worktree (rel/build-previous.sh's),
#     built into this repository's target directory, so the bytes are what that build writes.
# A release's files are never rewritten once it is out: this refuses to overwrite them unless
# MINOTAUR_CORPUS_OVERWRITE=1.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
release=${1:?usage: tests/corpus/write.sh RELEASE}
ours=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
out=$repo/tests/corpus/$release

if [ -n "$(ls -A "$out" 2>/dev/null | grep '\.bin$' || true)" ] && [ -z "${MINOTAUR_CORPUS_OVERWRITE:-}" ]; then
    echo "write.sh: $out already holds a corpus (set MINOTAUR_CORPUS_OVERWRITE=1 to rewrite it)" >&2
    exit 2
fi

if [ "$release" = "$ours" ]; then
    MINOTAUR_WRITE_CORPUS=1 cargo test -q -p minotaur --test corpus >&2
    exit 0
fi

read -r _ previous <<<"$(rel/build-previous.sh describe)"
[ "$release" = "$previous" ] || {
    echo "write.sh: $release is neither this release ($ours) nor the previous one ($previous)" >&2
    exit 2
}
generator=$repo/tests/corpus/$release/generate.rs
[ -f "$generator" ] || { echo "write.sh: no generator at $generator" >&2; exit 2; }
src=$(rel/build-previous.sh worktree)
example=$src/crates/minotaur/examples/corpus.rs
mkdir -p "$(dirname "$example")"
cp "$generator" "$example"
trap 'rm -f "$example"' EXIT
target=${CARGO_TARGET_DIR:-$repo/target}
(cd "$src" && cargo run -q --locked -p minotaur --example corpus --target-dir "$target" -- "$out")
echo "write.sh: wrote $(ls "$out"/*.bin | wc -l) files to $out" >&2
