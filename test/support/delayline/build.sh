#!/usr/bin/env bash
# Builds the delay line (main.go, Go standard library only) from its Go module
# and caches the binary outside the work tree, keyed by a hash of its sources, so that a fresh
# clone on the same machine reuses it and a changed source builds anew. Prints the binary's path.
# Like ../gitops-health/build.sh: a missing Go toolchain or a failed build is an error (exit 1).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE_DIR="${VIRTWARDEN_CACHE:-$HOME/.cache/virtwarden}"
command -v go >/dev/null || { echo "go toolchain not found: needed to build the delayline harness" >&2; exit 1; }
HASH="$(cat "$HERE/go.mod" "$HERE/main.go" | sha256sum | cut -c1-16)"
BIN="$CACHE_DIR/delayline-$HASH"
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi
mkdir -p "$CACHE_DIR"
echo "building the delayline harness (first time only)" >&2
(cd "$HERE" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -o "$BIN.tmp.$$" .) >&2
mv "$BIN.tmp.$$" "$BIN"
echo "$BIN"
