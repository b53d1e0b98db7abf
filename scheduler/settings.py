"""Settings of the scheduler extender: every knob, its default, and its validation, in one model.

Why a plain pydantic model (not BaseSettings): the application layer (gpuplace.config) owns the YAML
file and the environment and embeds this model as its `scheduler:` section, so a test can build one
directly and the same value can come from YAML or `GPUPLACE_SCHEDULER__…` variables. Frozen: the
service precomputes lookups from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from scheduler.policy import DEFAULT_POLICY, POLICIES


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsFiles(_Section):
    """Serve HTTPS (set `enableHTTPS` and `tlsConfig` in the scheduler's extender entry too)."""

    cert_file: Path = Field(description="PEM certificate chain.")
    key_file: Path = Field(description="PEM private key.")


class WatchSettings(_Section):
    timeout_seconds: int = Field(
        default=300, ge=10, le=3600, description="Server-side watch timeout before a re-watch. Default 300."
    )
    backoff_initial_seconds: float = Field(
        default=0.5, gt=0, description="First retry delay after an API error. Default 0.5."
    )
    backoff_max_seconds: float = Field(
        default=30.0, gt=0, description="Retry delay cap (doubling, jittered). Default 30."
    )
    page_size: int = Field(default=2000, ge=50, description="Items per LIST page at (re)list. Default 2000.")


class Shape(_Section):
    """A request shape used to call free GPUs 'stranded' (free, but no common shape fits the node)."""

    count: int = Field(default=1, ge=1, le=64)
    milli: int = Field(default=1000, ge=1, le=1000)
    cpu_milli: int = Field(default=0, ge=0)
    memory_mib: int = Field(default=0, ge=0)
    nvlink_required: bool = False


class MetricsSettings(_Section):
    per_node_max_nodes: int = Field(
        default=500,
        ge=0,
        description="Export per-node GPU gauges only while the cluster has "
        "at most this many GPU nodes (bounds label cardinality). Default 500.",
    )
    refresh_seconds: float = Field(
        default=10.0, gt=0, description="Recompute cluster gauges at most this often. Default 10."
    )
    stranded_shapes: tuple[Shape, ...] = Field(
        default=(Shape(count=1, milli=1000, cpu_milli=1000, memory_mib=4096),),
        description="Request shapes; free GPUs on a node where none fits count as stranded. Default: one GPU "
        "with 1 CPU and 4 GiB.",
    )


DeviceType = Literal["gpu", "mig"]


def _nvidia_classes() -> dict[str, DeviceType]:
    return {"gpu.nvidia.com": "gpu", "mig.nvidia.com": "mig"}


class DraSettings(_Section):
    """DRA mode (scheduler.dra): GPUs published as ResourceSlices and allocated through ResourceClaims."""

    enabled: bool = Field(
        default=True,
        description="Watch ResourceSlices and ResourceClaims (resource.k8s.io/v1) and count, filter and score "
        "DRA GPUs. Needs list/watch on both (deploy/scheduler/rbac.yaml). Default true.",
    )
    drivers: tuple[str, ...] = Field(
        default=("gpu.nvidia.com",),
        min_length=1,
        description="DRA drivers whose node-local devices are GPUs. Default [gpu.nvidia.com] (NVIDIA's driver).",
    )
    device_classes: dict[str, DeviceType] = Field(
        default_factory=_nvidia_classes,
        description="DeviceClass name → the device `type` it selects; claim requests naming another class are "
        "not GPU demand. Default: NVIDIA's chart's classes {gpu.nvidia.com: gpu, mig.nvidia.com: mig}.",
    )


class GangSettings(_Section):
    """All-or-nothing placement of gangs (scheduler.gang)."""

    enabled: bool = Field(default=True, description="Place gangs all or nothing. Default true.")
    label: str = Field(
        default="gpuplace.io/gang",
        description="Pod label with the gang name (what the webhook writes; WebhookSettings.gang_label).",
    )
    min_member_annotation: str = Field(
        default="gpuplace.io/gang-min-member",
        description="Pod annotation with the gang's minimum size (WebhookSettings.gang_min_member_annotation).",
    )
    default_topology: Literal["preferred", "required-clique", "required-rack", "required-zone"] = Field(
        default="preferred",
        description="Topology of gangs without a `gpuplace.io/gang-topology` annotation. Default preferred.",
    )
    plan_ttl_seconds: float = Field(
        default=120.0,
        gt=0,
        description="A plan none of whose members has bound within this long is released. Default 120.",
    )
    backoff_seconds: float = Field(
        default=10.0,
        ge=0,
        description="After a plan expires the gang does not plan again for this long, so that a gang "
        "that cannot complete (a member its own nodeSelector keeps off the planned node) does not hold "
        "capacity back to back. Default 10.",
    )
    barrier_seconds: float = Field(
        default=8.0,
        gt=0,
        description="How long a member's bind waits for the gang's quorum to reach bind. With "
        "bind_timeout_seconds it must stay below the extender httpTimeout (30 s). Default 8.",
    )
    release_after_dropped_attempts: int = Field(
        default=3,
        ge=0,
        description="Release a plan with nothing bound once gpuplace's filter has passed its members again "
        "this many times with no bind call in between (kube-scheduler dropped them after gpuplace's answer: "
        "with the native 1.36 gates, a group whose other member its own filters reject), instead of "
        "holding the GPUs for the TTL; the gang then backs off. 0 = off (set it off, or higher than the "
        "placements per group, with TopologyAwareWorkloadScheduling, which filters each member once per "
        "candidate placement). Default 3.",
    )
    nudge: bool = Field(
        default=True,
        description="Annotate pending members when their gang's plan is made or released, so that "
        "kube-scheduler retries them at once (it does not when a sibling binds). Default true.",
    )
    podgroups: bool = Field(
        default=True,
        description="Watch PodGroup objects (scheduler-plugins, Volcano, scheduling.k8s.io/v1alpha2) for "
        "the minimum and TTL of gangs declared through them (scheduler/gang/podgroups.py). Default true.",
    )
    podgroup_recheck_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How often a PodGroup API that was not served is listed again. Default 60.",
    )
    plugins_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Plan TTL of a scheduler-plugins PodGroup without scheduleTimeoutSeconds "
        "(Coscheduling's DefaultWaitTime). Default 60.",
    )
    native_timeout_seconds: float = Field(
        default=300.0,
        gt=0,
        description="Plan TTL of a scheduling.k8s.io/v1alpha2 PodGroup, which states none (the native "
        "Permit waits a fixed 5 minutes). Default 300.",
    )
    store: Literal["configmap", "memory"] = Field(
        default="configmap",
        description="Where plans are kept: ConfigMaps in the gang's namespace (survive a restart), or "
        "memory (tests). Default configmap.",
    )


class SchedulerSettings(_Section):
    """The `scheduler:` section of the gpuplace config."""

    enabled: bool = Field(default=True, description="Serve the extender. Default true.")
    host: str = Field(default="0.0.0.0", description="Listen address. Default 0.0.0.0.")
    port: int = Field(
        default=8888, ge=1, le=65535, description="Listen port (extender and /metrics). Default 8888."
    )
    tls: TlsFiles | None = Field(
        default=None, description="HTTPS files; plain HTTP when absent. Default none."
    )
    url_prefix: str = Field(
        default="/scheduler",
        description="Path prefix of the verbs (the extender's urlPrefix path). Default /scheduler.",
    )
    policy: str = Field(
        default=DEFAULT_POLICY,
        description=f"Scoring policy, one of {sorted(POLICIES)}. Default {DEFAULT_POLICY}.",
    )
    topology_weight: float = Field(
        default=0.5, ge=0, le=10, description="Weight of the NVLink-island term in scores. Default 0.5."
    )
    decisive: bool = Field(
        default=False,
        description="Filter passes only the offered node the policy scores best, so kube-scheduler skips "
        "prioritize and every in-tree score for GPU pods (scheduler/README.md, Modes). Default false.",
    )
    default_nvlink: Literal["required", "preferred", "none"] = Field(
        default="preferred",
        description="NVLink need of multi-GPU pods without a gpuplace.io/nvlink annotation. "
        "Default preferred.",
    )
    gpu_resource: str = Field(
        default="nvidia.com/gpu", description="Whole-GPU resource. Default nvidia.com/gpu."
    )
    mig_resource_prefix: str = Field(
        default="nvidia.com/mig-",
        description="MIG resource prefix (mixed strategy). Default nvidia.com/mig-.",
    )
    annotation_prefix: str = Field(
        default="gpuplace.io/", description="Prefix of gpuplace's annotations. Default gpuplace.io/."
    )
    zone_label: str = Field(default="topology.kubernetes.io/zone", description="Node label naming the zone.")
    rack_label: str = Field(default="gpuplace.io/rack", description="Node label naming the rack.")
    max_gpus_per_node: int = Field(
        default=16, ge=1, le=64, description="GPUs per node the model holds. Default 16."
    )
    max_body_bytes: int = Field(
        default=64 << 20,
        ge=1 << 20,
        description="Largest request body; full-Nodes mode sends ~7 KB per node. Default 64 MiB.",
    )
    reservation_ttl_seconds: float = Field(
        default=120.0,
        gt=0,
        description="A bind's reservation that the pod watch has "
        "not confirmed after this long is checked against the API and "
        "rolled back if the pod is not bound there. Default 120.",
    )
    bind_timeout_seconds: float = Field(
        default=20.0,
        gt=0,
        description="Budget for the Binding API call (with its re-read on a conflict); keep it "
        "below the extender httpTimeout. The Binding also asks kube-apiserver for this deadline "
        "(`?timeout=`). Default 20.",
    )
    apiserver_request_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description="kube-apiserver's --request-timeout (its default: 60 s). A Binding whose answer was "
        "lost may still commit until the server's deadline, min(this, bind_timeout_seconds), has passed; "
        "until then (plus apiserver_deadline_margin_seconds) its GPUs stay reserved. Default 60.",
    )
    apiserver_deadline_margin_seconds: float = Field(
        default=10.0,
        ge=0,
        description="Added to the server's deadline before a lost Binding counts as never written: an "
        "etcd write proposed just before the deadline can still commit after it (etcd's own request "
        "timeout is 5 s + 2 election timeouts). Default 10.",
    )
    bind_intent: bool = Field(
        default=True,
        description="Write `gpuplace.io/binding` on the pod before each Binding, so a process that "
        "starts or takes over holds exactly the GPUs a Binding its predecessor sent may still claim "
        "(scheduler/inflight.py). False: no write per pod (one API write fewer per bind); instead a "
        "process that starts or takes over while unbound GPU pods exist answers no verb until every "
        "Binding a predecessor may have sent has surely committed or died (bind_timeout_seconds + "
        "apiserver_deadline_margin_seconds after it started leading; scheduler/README.md, 'Modes'). "
        "Default true.",
    )
    watch: WatchSettings = Field(default_factory=WatchSettings)
    gang: GangSettings = Field(default_factory=GangSettings)
    dra: DraSettings = Field(default_factory=DraSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)

    @field_validator("policy")
    @classmethod
    def _known_policy(cls, v: str) -> str:
        if v not in POLICIES:
            raise ValueError(f"unknown policy {v!r}; choose from {', '.join(sorted(POLICIES))}")
        return v

    @field_validator("url_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("url_prefix must start with '/'")
        return v.rstrip("/")

    @field_validator("annotation_prefix")
    @classmethod
    def _annotation_prefix(cls, v: str) -> str:
        if not v.endswith("/"):
            raise ValueError("annotation_prefix must end with '/' (e.g. gpuplace.io/)")
        return v

    @model_validator(mode="after")
    def _files_exist(self) -> SchedulerSettings:
        if self.tls is not None:
            for f in (self.tls.cert_file, self.tls.key_file):
                if not f.is_file():
                    raise ValueError(f"TLS file {f} does not exist")
        return self
