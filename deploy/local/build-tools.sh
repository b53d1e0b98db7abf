#!/usr/bin/env bash
# Build the tools the deploy tests use — helm, prometheus, promtool, kindconfig — from the Go module
# proxy into deploy/local/bin/.
#
#   bash deploy/local/build-tools.sh [TOOL...]    # default: all of them
#
# helm, prometheus and promtool come from ONE wrapper module (tools/) and are compiled by ONE
# `go build -o DIR/ PKG...`: helm v3.22 and prometheus v0.316 both sit on the k8s.io v0.37 client
# libraries, so one module graph compiles k8s.io/api, client-go, apimachinery, x/net, protobuf… once
# for all three (635 of the 1,614 packages are shared), and the Go scheduler keeps both cores busy
# through each link. kindconfig (kindconfig/) loads kind configs with kind's v1alpha4 API.
#
# Idempotent like build.sh: bin/.stamp-<tool> records a hash of what determines the binary (its
# module's go.mod/go.sum, its build flags, this script, the Go version); when it matches and the
# binary exists the tool is skipped. Only the requested, out-of-date tools of a module are compiled;
# one build per module at a time (flock bin/.lock-<module>). Kept apart from build.sh so that the
# Kubernetes binaries (and GPUPLACE_LOCAL_BIN builds of them) are not rebuilt when a tool changes.
# Both scripts use the same GOCACHE (go's default unless set) and the same tags and flags, so the
# standard library and every package they share at the same version is compiled once.
#
# Environment: GO, BUILD_NICE (default 10), FORCE=1 — as in build.sh.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
script="$here/$(basename "${BASH_SOURCE[0]}")"
bin="$here/bin"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
if ! [ -x "$GO" ] && ! command -v "$GO" >/dev/null 2>&1; then
  echo "build-tools.sh: no Go toolchain found (set GO=/path/to/go)" >&2
  exit 2
fi
# -p (parallel compiles) is go's default, GOMAXPROCS = the number of cores.
export GOTOOLCHAIN=local GOFLAGS=-mod=readonly CGO_ENABLED=0
mkdir -p "$bin"

version_of() {  # version_of MODULE_DIR MODULE_PATH
  awk -v m="$2" '($1 == "require" && $2 == m) {print $3} ($1 == m) {print $2}' "$here/$1/go.mod" | head -1
}

module_of() {  # module_of TOOL -> wrapper module folder
  case "$1" in
    helm|prometheus|promtool) echo tools ;;
    kindconfig) echo kindconfig ;;
    *) echo "build-tools.sh: unknown tool $1 (helm, prometheus, promtool, kindconfig)" >&2; return 2 ;;
  esac
}

package_of() {  # package_of TOOL
  case "$1" in
    helm) echo helm.sh/helm/v3/cmd/helm ;;
    prometheus|promtool) echo "github.com/prometheus/prometheus/cmd/$1" ;;
    kindconfig) echo . ;;  # main.go in kindconfig/
  esac
}

flags_of() {  # flags_of MODULE -> "tags ldflags": one set for every command of the module
  case "$1" in
    tools)
      # helm, as helm's Makefile: its version, and the Kubernetes version `helm template`/`lint`
      # assume by default (.Capabilities.KubeVersion), from the client-go it is built with
      # (v0.37 -> 1.37). Prometheus: github.com/prometheus/common/version is what
      # `prometheus --version` prints (module v0.316.0 is Prometheus 3.16.0). A -X of a symbol a
      # binary does not link is ignored, so the two sets can be given to the one invocation.
      # remove_all_sd (plugins/plugin_*.go, the tag upstream's build honours) drops every service
      # discovery but static, file and http from the server; the tests scrape static targets on
      # loopback. promtool imports the Kubernetes SD itself (config checks), no tag drops that.
      # No netgo: with CGO_ENABLED=0 the resolver is pure Go anyway, and the tag would give `net`
      # (and everything above it) other cache keys than build.sh's.
      local hv kv pv minor x="-X=helm.sh/helm/v3"
      hv="$(version_of tools helm.sh/helm/v3)"
      kv="$(version_of tools k8s.io/client-go)"; kv="${kv#v0.}"; kv="${kv%%.*}"
      pv="$(version_of tools github.com/prometheus/prometheus)"; minor="${pv#v0.}"; minor="${minor%%.*}"
      echo "remove_all_sd -s -w $x/internal/version.version=$hv $x/internal/version.gitTreeState=clean" \
        "$x/pkg/lint/rules.k8sVersionMajor=1 $x/pkg/lint/rules.k8sVersionMinor=$kv" \
        "$x/pkg/chartutil.k8sVersionMajor=1 $x/pkg/chartutil.k8sVersionMinor=$kv" \
        "-X=github.com/prometheus/common/version.Version=3.$((minor - 300)).${pv##*.}" \
        "-X=github.com/prometheus/common/version.Branch=HEAD" ;;
    kindconfig) echo "- -s -w" ;;
  esac
}

stamp_of() {  # stamp_of TOOL
  local dir; dir="$(module_of "$1")"
  { echo "$1 $(package_of "$1")"; flags_of "$dir"; "$GO" version; cat "$here/$dir/go.mod" "$here/$dir/go.sum" "$script"; } |
    sha256sum | cut -d' ' -f1
}

up_to_date() {  # up_to_date TOOL
  [ "${FORCE:-0}" != 1 ] && [ -x "$bin/$1" ] && [ -f "$bin/.stamp-$1" ] && [ "$(cat "$bin/.stamp-$1")" = "$(stamp_of "$1")" ]
}

build_module() {  # build_module MODULE TOOL... : one go build for the tools of MODULE still out of date
  local dir="$1" tool todo=() pkgs=() tags flags out start
  shift
  exec 9>"$bin/.lock-$dir"  # one build per module at a time; the other module is not held up
  flock 9
  for tool in "$@"; do
    if up_to_date "$tool"; then echo "deploy/local/bin/$tool is up to date"; else todo+=("$tool"); fi
  done
  if [ ${#todo[@]} -eq 0 ]; then exec 9>&-; return 0; fi
  for tool in "${todo[@]}"; do pkgs+=("$(package_of "$tool")"); rm -f "$bin/.stamp-$tool"; done
  read -r tags flags <<<"$(flags_of "$dir")"
  [ "$tags" != "-" ] || tags=""
  out="$bin/.build-$dir"
  rm -rf "$out"; mkdir -p "$out"
  start=$(date +%s)
  echo "building ${todo[*]} in one go build of $dir/ (first build takes minutes)..."
  (cd "$here/$dir" && nice -n "${BUILD_NICE:-10}" "$GO" build -trimpath -tags "$tags" -ldflags "$flags" -o "$out/" "${pkgs[@]}")
  for tool in "${todo[@]}"; do
    mv -f "$out/$tool" "$bin/$tool"
    stamp_of "$tool" > "$bin/.stamp-$tool"
  done
  rm -rf "$out"
  echo "  ${todo[*]} done in $(( $(date +%s) - start ))s"
  exec 9>&-
}

tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=(helm promtool prometheus kindconfig)
for tool in "${tools[@]}"; do module_of "$tool" >/dev/null; done
for module in tools kindconfig; do
  wanted=()
  for tool in "${tools[@]}"; do
    [ "$(module_of "$tool")" != "$module" ] || wanted+=("$tool")
  done
  [ ${#wanted[@]} -eq 0 ] || build_module "$module" "${wanted[@]}"
done
