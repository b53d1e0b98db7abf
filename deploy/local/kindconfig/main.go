// Command kindconfig loads kind cluster configurations with kind's own config API
// (sigs.k8s.io/kind/pkg/apis/config/v1alpha4), strictly (unknown fields are errors, as `kind create
// cluster --config` treats them), applies kind's defaults and prints each result as JSON. gpuplace's
// tests use it on deploy/kind/*.yaml because kind itself cannot run on the development machines.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/yaml"
)

func load(path string) (*v1alpha4.Cluster, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var meta v1alpha4.TypeMeta
	if err := yaml.Unmarshal(raw, &meta); err != nil {
		return nil, err
	}
	if meta.Kind != "Cluster" || meta.APIVersion != "kind.x-k8s.io/v1alpha4" {
		return nil, fmt.Errorf("%s: kind %q apiVersion %q, want Cluster kind.x-k8s.io/v1alpha4", path, meta.Kind, meta.APIVersion)
	}
	cfg := &v1alpha4.Cluster{}
	if err := yaml.UnmarshalStrict(raw, cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	v1alpha4.SetDefaultsCluster(cfg)
	return cfg, nil
}

func main() {
	out := map[string]*v1alpha4.Cluster{}
	for _, path := range os.Args[1:] {
		cfg, err := load(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		out[path] = cfg
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
