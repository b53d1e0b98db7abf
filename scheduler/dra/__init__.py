"""DRA mode: GPUs published as resource.k8s.io/v1 ResourceSlices and allocated through ResourceClaims.

Reading order: `objects` (the API objects, parsed) → `inventory` (slices → a node's GPUs, and the
precedence against GFD labels and the topology annotation) → `ledger` (allocated claims → devices held,
the invariants) → `state` (what the cache holds) → `model` (how it enters the cache's ClusterState) →
`demand` (a pod's claims → what it asks for) → `fit` (can a node's free devices serve it, and how
well: the rules, node by node) → `packed` (every node's devices and usage as placement_core.devicefit
arrays, kept current) → `rows` (`fit` for all offered nodes at once through the kernel) → `extender`
(what filter, prioritize and bind do for DRA pods). User docs: scheduler/README.md,
"DRA mode".

Interface for the webhook, the e2e harness and the verbs (kept stable):
- config (`scheduler.dra`, scheduler.settings.DraSettings): `enabled` (default true), `drivers`
  (default `[gpu.nvidia.com]`), `device_classes` (DeviceClass name → NVIDIA device `type` it selects;
  default `{gpu.nvidia.com: gpu, mig.nvidia.com: mig}`).
- `ClusterCache.apply_slice` / `replace_slices`, `apply_claim` / `replace_claims` (fed by the
  "resourceslices" and "resourceclaims" reflectors, scheduler.service; `synced` and readiness include
  both kinds when DRA is on). `ClusterCache.dra` (a `DraState`, None when off): `devices(node)` →
  `NodeDevices` or None; `claims_of(pod)` → (the pod's ResourceClaims, names not known yet);
  `usage(node)` → `NodeUsage`; `problems()` → ledger invariant violations.
- `extender.demand_of(ctx, pod)` → `DraDemand` or None (not a DRA GPU pod): the GPU requests of the
  pod's claims (pod.spec.resourceClaims by name, or through status.resourceClaimStatuses for templates).
  Pods asking `nvidia.com/gpu` served by DRA need nothing new before PreBind: their demand is the
  resource count against the slice-described GPUs; afterwards their claim
  (status.extendedResourceClaimStatus) is counted by the ledger and the pod counts only cpu/memory.
- `objects.parse_slice` / `parse_claim` (raise `DraObjectError`), `objects.PCIE_ROOT`.
- e2e: `gpuplace.localcluster.audit.AuditLoop(api, dra=True)` also audits claims against slices
  (`gpuplace.localcluster.dra_audit.dra_problems`); the binder's `get_resource_claim` (KubeBinder,
  MemoryBinder.claims) is what bind reads claims with.
"""
