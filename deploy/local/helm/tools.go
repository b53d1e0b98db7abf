//go:build tools

// Package tools pins the helm command that ../build-tools.sh compiles.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
