#!/usr/bin/env bash
# Builds a real kube-apiserver from the k8s.io/kubernetes Go module (there is no Debian or npm
# package of it) and caches the binary, keyed by version, outside the work tree so a fresh clone on
# the same machine reuses it. Prints the binary's path on stdout.
#
# k8s.io/kubernetes replaces its k8s.io/* staging modules with ./staging paths, which a consumer
# cannot follow: we read those replace lines from its go.mod and point each at the published v0.Y.Z.
set -euo pipefail
VERSION="${KUBE_VERSION:-1.32.4}"
CACHE_DIR="${VIRTWARDEN_CACHE:-$HOME/.cache/virtwarden}"
BIN="$CACHE_DIR/kube-apiserver-v$VERSION"
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi
command -v go >/dev/null || { echo "go toolchain not found: needed to build kube-apiserver" >&2; exit 1; }
mkdir -p "$CACHE_DIR"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
export GOFLAGS=-mod=mod
# The module proxy reachable here does not serve every checksum-database lookup; modules still
# come from the proxy by version.
export GONOSUMDB="${GONOSUMDB:-k8s.io/*,sigs.k8s.io/*}"
go mod init virtwarden.io/kube-apiserver-build >/dev/null 2>&1
GOMOD="$(go mod download -json "k8s.io/kubernetes@v$VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
STAGING_MINOR="0.${VERSION#1.}"
go mod edit -require "k8s.io/kubernetes@v$VERSION"
for m in $(awk '$2 == "=>" && $3 ~ /^\.\/staging/ {print $1}' "$GOMOD"); do
  go mod edit -replace "$m=$m@v$STAGING_MINOR"
done
cat > tools.go <<'GO'
//go:build tools
package tools
GO
echo "building kube-apiserver v$VERSION (first time only; takes several minutes)" >&2
go get "k8s.io/kubernetes/cmd/kube-apiserver@v$VERSION" >&2
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN.tmp" k8s.io/kubernetes/cmd/kube-apiserver >&2
mv "$BIN.tmp" "$BIN"
echo "$BIN"
