#!/usr/bin/env bash
# Build the tools the deploy tests use — helm, prometheus, promtool, kindconfig — from the Go module
# proxy into deploy/local/bin/, each from its own wrapper module (helm/, prometheus/, kindconfig/).
#
#   bash deploy/local/build-tools.sh [TOOL...]    # default: all of them
#
# Idempotent like build.sh: bin/.stamp-<tool> records a hash of what determines the binary (its
# wrapper go.mod/go.sum, this script, the Go version); when it matches and the binary exists the
# tool is skipped. One build of a tool at a time (flock bin/.lock-<tool>). Kept apart from build.sh so that the
# Kubernetes binaries (and GPUPLACE_LOCAL_BIN builds of them) are not rebuilt when a tool changes.
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
export GOTOOLCHAIN=local GOFLAGS=-mod=readonly CGO_ENABLED=0
mkdir -p "$bin"

version_of() {  # version_of MODULE_DIR MODULE_PATH
  awk -v m="$2" '($1 == "require" && $2 == m) {print $3} ($1 == m) {print $2}' "$here/$1/go.mod" | head -1
}

# Prometheus: only static_configs and file_sd are used (the tests scrape gpuplace processes on
# loopback); remove_all_sd drops every other service discovery (plugins/plugin_*.go build tags),
# the same tag upstream's `make build` honours. promtool does not import the SD plugins.
prom_tags="remove_all_sd,netgo"

spec() {  # spec TOOL -> "module_dir package tags ldflags"
  case "$1" in
    helm)
      # As helm's Makefile: the version, and the Kubernetes version `helm template`/`lint` assume by
      # default (.Capabilities.KubeVersion), from the client-go it is built with (v0.37 -> 1.37).
      local v kv; v="$(version_of helm helm.sh/helm/v3)"; kv="$(version_of helm k8s.io/client-go)"; kv="${kv#v0.}"; kv="${kv%%.*}"
      local x="-X=helm.sh/helm/v3"
      echo "helm helm.sh/helm/v3/cmd/helm - -s -w $x/internal/version.version=$v $x/internal/version.gitTreeState=clean $x/pkg/lint/rules.k8sVersionMajor=1 $x/pkg/lint/rules.k8sVersionMinor=$kv $x/pkg/chartutil.k8sVersionMajor=1 $x/pkg/chartutil.k8sVersionMinor=$kv" ;;
    prometheus|promtool)
      local v minor; v="$(version_of prometheus github.com/prometheus/prometheus)"
      minor="${v#v0.}"; minor="${minor%%.*}"  # module v0.316.0 is Prometheus 3.16.0
      # github.com/prometheus/common/version: what `prometheus --version` prints.
      echo "prometheus github.com/prometheus/prometheus/cmd/$1 $prom_tags -s -w -X=github.com/prometheus/common/version.Version=3.$((minor - 300)).${v##*.} -X=github.com/prometheus/common/version.Branch=HEAD" ;;
    kindconfig)  # main.go in kindconfig/: loads kind configs with kind's v1alpha4 API
      echo "kindconfig . - -s -w" ;;
    *) echo "build-tools.sh: unknown tool $1 (helm, prometheus, promtool, kindconfig)" >&2; return 2 ;;
  esac
}

stamp_of() {  # stamp_of TOOL
  local dir; read -r dir _ <<<"$(spec "$1")"
  { echo "$1"; spec "$1"; "$GO" version; cat "$here/$dir/go.mod" "$here/$dir/go.sum" "$script"; } | sha256sum | cut -d' ' -f1
}

up_to_date() {  # up_to_date TOOL
  [ "${FORCE:-0}" != 1 ] && [ -x "$bin/$1" ] && [ -f "$bin/.stamp-$1" ] && [ "$(cat "$bin/.stamp-$1")" = "$(stamp_of "$1")" ]
}

tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=(helm promtool prometheus kindconfig)
for tool in "${tools[@]}"; do
  spec "$tool" >/dev/null
  if up_to_date "$tool"; then
    echo "deploy/local/bin/$tool is up to date"
    continue
  fi
  exec 9>"$bin/.lock-$tool"  # one build of a tool at a time; other tools are not held up
  flock 9
  if up_to_date "$tool"; then
    echo "deploy/local/bin/$tool is up to date"
    continue
  fi
  read -r dir pkg tags flags <<<"$(spec "$tool")"
  [ "$tags" != "-" ] || tags=""
  start=$(date +%s)
  echo "building $tool from $pkg (first build takes minutes)..."
  rm -f "$bin/.stamp-$tool"
  (cd "$here/$dir" && nice -n "${BUILD_NICE:-10}" "$GO" build -trimpath -tags "$tags" -ldflags "$flags" -o "$bin/$tool.tmp" "$pkg")
  mv -f "$bin/$tool.tmp" "$bin/$tool"
  stamp_of "$tool" > "$bin/.stamp-$tool"
  echo "  $tool done in $(( $(date +%s) - start ))s"
done
