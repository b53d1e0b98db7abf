#!/usr/bin/env bash
# Build upstream kube-apiserver, kube-scheduler, kube-controller-manager,
# kubectl, etcd and the kwok controller from the Go module proxy into
# deploy/local/bin/, for gpuplace's local control plane (gpuplace/localcluster)
# and the e2e tests. See README.md in this folder.
#
# Idempotent: bin/.stamp records a hash of everything that determines the
# binaries (go.mod/go.sum of the three wrapper modules, this script, the Go
# version). When the stamp matches and every binary is present it exits at once.
#
# Environment:
#   GO            go command to use (default: go on PATH, else /usr/local/go/bin/go)
#   BUILD_NICE    nice level for the compiler (default 10; the machine is shared)
#   FORCE=1       rebuild even when the stamp matches
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
script="$here/$(basename "${BASH_SOURCE[0]}")"
cd "$here"
bin="$here/bin"

GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
if ! [ -x "$GO" ] && ! command -v "$GO" >/dev/null 2>&1; then
  echo "build.sh: no Go toolchain found (set GO=/path/to/go)" >&2
  exit 2
fi
export GOTOOLCHAIN=local       # never download another toolchain
export GOFLAGS=-mod=readonly   # go.mod/go.sum are committed and tidy; no vendor/
export CGO_ENABLED=0           # static binaries, as upstream releases them
mkdir -p "$bin"

k8s_version="$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' go.mod)"
etcd_version="$(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2}' etcd/go.mod)"
[ -n "$etcd_version" ] || etcd_version="$(awk '$1 == "require" && $2 == "go.etcd.io/etcd/server/v3" {print $3}' etcd/go.mod)"
kwok_version="$(awk '$1 == "require" && $2 == "sigs.k8s.io/kwok" {print $3}' kwok/go.mod)"
if [ -z "$k8s_version" ] || [ -z "$etcd_version" ] || [ -z "$kwok_version" ]; then
  echo "build.sh: could not read versions from go.mod / etcd/go.mod / kwok/go.mod" >&2
  exit 2
fi

binaries=(kube-apiserver kube-scheduler kube-controller-manager kubectl etcd kwok)
stamp="$(
  {
    echo "k8s=$k8s_version etcd=$etcd_version kwok=$kwok_version"
    "$GO" version
    cat go.mod go.sum etcd/go.mod etcd/go.sum kwok/go.mod kwok/go.sum "$script"
  } | sha256sum | cut -d' ' -f1
)"

up_to_date() {
  [ "${FORCE:-0}" != 1 ] || return 1
  [ -f "$bin/.stamp" ] && [ "$(cat "$bin/.stamp")" = "$stamp" ] || return 1
  local b
  for b in "${binaries[@]}"; do [ -x "$bin/$b" ] || return 1; done
}

if up_to_date; then
  echo "deploy/local/bin is up to date (kubernetes $k8s_version, etcd $etcd_version, kwok $kwok_version)"
  exit 0
fi

# One build at a time (parallel pytest sessions, a developer and a test run).
exec 9>"$bin/.lock"
flock 9
if up_to_date; then
  echo "deploy/local/bin is up to date (kubernetes $k8s_version, etcd $etcd_version, kwok $kwok_version)"
  exit 0
fi
rm -f "$bin/.stamp"

# kube version strings: without them the binaries report v0.0.0-master.
k8s_minor="${k8s_version#v*.}"; k8s_minor="${k8s_minor%%.*}"
k8s_major="${k8s_version#v}"; k8s_major="${k8s_major%%.*}"
build_date="1970-01-01T00:00:00Z"  # fixed, so rebuilds are reproducible
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s_version"
  ldflags+=" -X $pkg.gitMajor=$k8s_major"
  ldflags+=" -X $pkg.gitMinor=$k8s_minor"
  ldflags+=" -X $pkg.gitTreeState=clean"
  ldflags+=" -X $pkg.gitCommit="  # unknown: the module zip has no git metadata
  ldflags+=" -X $pkg.buildDate=$build_date"
done

build() {  # build NAME PACKAGE LDFLAGS (in the current module)
  local name="$1" pkg="$2" flags="$3" start
  start=$(date +%s)
  echo "building $name (first build takes minutes)..."
  nice -n "${BUILD_NICE:-10}" "$GO" build -trimpath -ldflags "$flags" -o "$bin/$name.tmp" "$pkg"
  mv -f "$bin/$name.tmp" "$bin/$name"
  echo "  $name done in $(( $(date +%s) - start ))s"
}

total_start=$(date +%s)
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$ldflags"
build kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler "$ldflags"
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$ldflags"
build kubectl k8s.io/kubernetes/cmd/kubectl "$ldflags"
(cd etcd && build etcd go.etcd.io/etcd/server/v3 "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$etcd_version")
# kwok's version is a constant in its released source (sigs.k8s.io/kwok/pkg/consts): no -X needed.
(cd kwok && build kwok sigs.k8s.io/kwok/cmd/kwok "-s -w")

echo "$stamp" > "$bin/.stamp"
echo "built kubernetes $k8s_version, etcd $etcd_version and kwok $kwok_version into deploy/local/bin in $(( $(date +%s) - total_start ))s"
