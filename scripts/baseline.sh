#!/usr/bin/env bash
# Builds `rafka-node` as of the upgrade baseline and prints the binary's path. The rolling-upgrade
# test (broker/tests/upgrade.rs) starts a cluster of it and upgrades it node by node to this build.
#
# The baseline is named here and nowhere else: the oldest release a cluster upgrades from, whose
# encodings are pinned as feature level 0 (broker/src/metadata/raft/fixtures/level0.hex). To move
# it forward, set BASELINE_COMMIT, regenerate the fixtures on that commit (see the fixtures file's
# module docs), and drop the level-0 code paths the new baseline no longer needs.
#
# Cost: the sources come from `git archive` (a clean clone has the history); the build shares this
# workspace's target dir, and selects packages as `cargo build --workspace --bins` does, so
# dependency features unify the same way and the registry dependencies are compiled once for both
# (with `-p rafka-broker` alone, 26 of them were compiled a second time). Only the baseline's own
# crates are compiled, without debug info: that profile setting gives them their own artifact
# names, so they never overwrite this build's. Measured in docs/benchmarks.md ("CI"): about a
# minute on a loaded 2-core machine. The binary is kept as target/baseline/rafka-node-<commit>;
# later runs reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."

BASELINE_COMMIT=5631420c3848a2c355db5d734941ce7a958f14e1

target=${CARGO_TARGET_DIR:-$PWD/target}
binary="$target/baseline/rafka-node-$BASELINE_COMMIT"
if [ -x "$binary" ]; then
    echo "$binary"
    exit 0
fi
if ! git cat-file -e "$BASELINE_COMMIT^{commit}" 2>/dev/null; then
    echo "baseline commit $BASELINE_COMMIT is not in this repository (a shallow clone?)" >&2
    exit 1
fi

src="$target/baseline/src-$BASELINE_COMMIT"
rm -rf "$src"
mkdir -p "$src"
git archive "$BASELINE_COMMIT" | tar -x -C "$src"

# Cargo copies the binary it builds to $target/debug/rafka-node, replacing this build's: keep
# that one aside (a hard link to the same file) and put it back afterwards.
current="$target/debug/rafka-node"
aside="$target/baseline/rafka-node.current"
rm -f "$aside"
if [ -e "$current" ]; then ln "$current" "$aside"; fi

salt=()
for crate in rafka-store rafka-mesh rafka-broker; do
    salt+=(--config "profile.dev.package.$crate.debug=false")
done
started=$(date +%s)
CARGO_INCREMENTAL=0 CARGO_TARGET_DIR="$target" \
    cargo build --manifest-path "$src/Cargo.toml" --workspace --bin rafka-node "${salt[@]}" >&2
cp "$current" "$binary.tmp"
mv "$binary.tmp" "$binary"
if [ -e "$aside" ]; then mv -f "$aside" "$current"; else rm -f "$current"; fi
rm -rf "$src"
echo "baseline rafka-node built in $(($(date +%s) - started)) s" >&2
echo "$binary"
