//go:build tools

// Package tools pins the prometheus server and promtool that ../build-tools.sh compiles.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
