#!/usr/bin/env bash
# Create the kind cluster of cluster.yaml, give its workers fake GPUs and install gpuplace with the chart.
# UNTESTED HERE (kind cannot run on gpuplace's development machines); needs kind, kubectl, helm, docker.
#
#   make kind-up                      # or: bash deploy/kind/kind-up.sh
#   IMAGE=my/gpuplace:dev make kind-up   # an image you built from the Dockerfile (loaded into the nodes)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
name=gpuplace
image="${IMAGE:-gpuplace:dev}"

kind create cluster --config "$here/cluster.yaml" --name "$name"
if ! docker image inspect "$image" >/dev/null 2>&1; then
  docker build -t "$image" "$root"
fi
kind load docker-image "$image" --name "$name"

# Fake GPUs: capacity on each worker's status (no device plugin), as a device plugin would report it.
kubectl proxy --port=8011 >/dev/null 2>&1 &
proxy=$!
trap 'kill $proxy' EXIT
sleep 1
for node in $(kubectl get nodes -l '!node-role.kubernetes.io/control-plane' -o name | cut -d/ -f2); do
  count="$(kubectl get node "$node" -o jsonpath='{.metadata.labels.nvidia\.com/gpu\.count}')"
  curl -sf -H 'Content-Type: application/json-patch+json' -X PATCH \
    --data "[{\"op\":\"add\",\"path\":\"/status/capacity/nvidia.com~1gpu\",\"value\":\"$count\"}]" \
    "http://127.0.0.1:8011/api/v1/nodes/$node/status" >/dev/null
done

helm install gpuplace "$root/deploy/helm/gpuplace" -n gpuplace-system --create-namespace \
  --set mode=second-scheduler \
  --set image.repository="${image%:*}" --set image.tag="${image##*:}" --set image.pullPolicy=Never \
  --set extender.resources.requests.cpu=100m --set webhook.settings.routing.enabled=true
kubectl -n gpuplace-system rollout status deployment/gpuplace-webhook --timeout=180s
echo "gpuplace is installed; GPU pods go to scheduler gpuplace-scheduler (kubectl get pods -A -o wide)"
