"""gpuplace's kube-scheduler extender: filter / prioritize / bind / preempt over HTTP, fed by a live cache.

Reading order (each module's docstring says why it is shaped that way):
- `wire` — extender/v1 types (PascalCase keys); `http` — decode → verb → encode, ops endpoints;
- `verbs/filter|prioritize|bind|preempt` — one plain function `(args, ctx) -> result` each;
- `context` — what a verb may use: the cache, the binder, the policy (`policy`), memos, `metrics`;
- `cache` — Nodes and Pods applied to placement_core's ClusterState; `watch` — list+watch reflectors;
- `nominated` — pending pods holding their nominated node's GPUs; `disruption` — PDBs and victim order;
- `nodeinv` + `topology_doc` — Node JSON → NodeSpec; `podreq` + `quantity` — Pod JSON → GpuRequest;
- `contract` — the pod annotations gpuplace reads and writes; `binder` / `kubeapi` — the API calls;
- `namelists` — the byte-level fast path for repeated NodeNames lists; `service` — background wiring.
The annotation contract and the topology schema are documented in scheduler/README.md.
Layering: this package imports placement_core and libraries only, never webhook/ or gpuplace/.
"""
