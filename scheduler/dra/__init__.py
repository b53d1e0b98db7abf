"""DRA mode: GPUs published as resource.k8s.io/v1 ResourceSlices and allocated through ResourceClaims.

Reading order: `objects` (the API objects, parsed) → `inventory` (slices → a node's GPUs, and the
precedence against GFD labels and the topology annotation) → `ledger` (allocated claims → devices held,
the invariants) → `demand` (a pod's claims → what it asks for) → `fit` (can a node's free devices serve
it, and how well) → `state` (what the cache holds and feeds into its ClusterState).

Interface for the webhook, the e2e harness and the verbs (kept stable):
- config (`scheduler.dra`, scheduler.settings.DraSettings): `enabled` (default true), `drivers`
  (default `[gpu.nvidia.com]`), `device_classes` (DeviceClass name → NVIDIA device `type` it selects;
  default `{gpu.nvidia.com: gpu, mig.nvidia.com: mig}`).
- `ClusterCache.dra` (a `DraState`): `apply_slice` / `replace_slices`, `apply_claim` / `replace_claims`
  (fed by the "resourceslices" and "resourceclaims" reflectors); `devices(node)` → `NodeDevices` or
  None; `claims_of(pod)` → the pod's ResourceClaims; `problems()` → invariant violations of the ledger.
- `demand.pod_demand(pod, claims, settings)` → `DraDemand` or None (no GPU claim): the GPU requests of
  the pod's claims (pod.spec.resourceClaims, by name or through status.resourceClaimStatuses for
  templates). Extended-resource pods (`nvidia.com/gpu` served by DRA) need nothing new: their demand is
  the resource count, and their claim (status.extendedResourceClaimStatus) is counted by the ledger.
- `demand.is_dra_pod(pod)`: the pod's GPUs come from claims (the cache then counts them by claim only).
"""
