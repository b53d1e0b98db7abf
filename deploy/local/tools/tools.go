//go:build tools

// Package tools pins the commands ../build-tools.sh compiles from this module: helm, the
// Prometheus server and promtool.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
	_ "helm.sh/helm/v3/cmd/helm"
)
