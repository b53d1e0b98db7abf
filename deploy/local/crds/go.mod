// The operators whose CustomResourceDefinitions the chart's objects are dry-run against
// (tests/e2e/test_operator_crds.py): cert-manager (Issuer, Certificate) and the Prometheus Operator
// (ServiceMonitor, PodMonitor, PrometheusRule). Nothing is compiled: gpuplace/localcluster/crds.py
// runs `go mod download` for these exact versions (checked against the Go checksum database) and reads
// the CRD YAML shipped in the module zips (deploy/crds/, example/prometheus-operator-crd/).
module gpuplace.io/deploy/local/crds

go 1.26.0

require (
	github.com/cert-manager/cert-manager v1.21.2
	github.com/prometheus-operator/prometheus-operator v0.85.0
)
