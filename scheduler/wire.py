"""The kube-scheduler extender wire format (k8s.io/kube-scheduler/extender/v1), as pydantic models.

Why the aliases look odd: the Go types carry no json tags, so the keys on the wire are the Go field
names — PascalCase, with Go's initialisms kept (`PodUID`, `UID`, `NumPDBViolations`); `to_pascal`
covers the rest. Go decodes keys case-insensitively, so kube-scheduler would accept other spellings from
us, but we must accept exactly what it sends, and we send exactly what it would.

The embedded Pod (and victim Pods) is ordinary camelCase Kubernetes JSON. gpuplace reads only what
placement needs (`scheduler.podreq.Pod`); everything else in it is ignored, never rejected, so a newer
kube-scheduler with new Pod fields keeps working. Node objects (full-Nodes mode) stay plain dicts: they
are re-sent verbatim in the filter result, and `scheduler.nodeinv` reads them defensively.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel, to_pascal


class Wire(BaseModel):
    """Base of the extender/v1 types: PascalCase keys, unknown keys ignored."""

    model_config = ConfigDict(alias_generator=to_pascal, populate_by_name=True, extra="ignore")


class Kube(BaseModel):
    """Base of the (partial) Kubernetes object models: camelCase keys, unknown keys ignored."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _null_is_default(cls, data: Any) -> Any:
        """Kubernetes JSON writes absent maps/lists as null at times; treat null as 'not set'."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data


# ---- the parts of v1.Pod that placement reads ---------------------------------------------------------
Quantity = str | int | float


class ObjectMeta(Kube):
    name: str = ""
    namespace: str = "default"
    uid: str = ""
    resource_version: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    deletion_timestamp: str | None = None
    creation_timestamp: str = ""


class ResourceRequirements(Kube):
    requests: dict[str, Quantity] = Field(default_factory=dict)
    limits: dict[str, Quantity] = Field(default_factory=dict)


class Container(Kube):
    name: str = ""
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)
    restart_policy: str | None = None  # "Always" on an init container = a sidecar


class SchedulingGroup(Kube):
    """core/v1 PodSchedulingGroup (1.36, gate GenericWorkload): the pod's PodGroup."""

    pod_group_name: str = ""


class PodResourceClaim(Kube):
    """core/v1 PodResourceClaim: a claim by name, or one generated from a template."""

    name: str = ""
    resource_claim_name: str | None = None
    resource_claim_template_name: str | None = None


class PodResourceClaimStatus(Kube):
    name: str = ""
    resource_claim_name: str | None = None  # the claim kube-controller-manager created from the template


class PodExtendedResourceClaimStatus(Kube):
    """The claim kube-scheduler created for extended resources served by DRA (DRAExtendedResource)."""

    resource_claim_name: str = ""


class PodSpec(Kube):
    containers: list[Container] = Field(default_factory=list)
    init_containers: list[Container] = Field(default_factory=list)
    node_name: str = ""
    node_selector: dict[str, str] = Field(default_factory=dict)
    priority: int = 0  # null (no PriorityClass admission) reads as 0, the Kubernetes default
    overhead: dict[str, Quantity] = Field(default_factory=dict)
    scheduler_name: str = ""
    resources: ResourceRequirements | None = None  # pod-level resources (PodLevelResources)
    scheduling_group: SchedulingGroup | None = None
    resource_claims: list[PodResourceClaim] = Field(default_factory=list)


class ContainerStatus(Kube):
    """The resize-relevant part of v1.ContainerStatus (scheduler.podresources); None = not reported."""

    name: str = ""
    allocated_resources: dict[str, Quantity] | None = None
    resources: ResourceRequirements | None = None


class PodCondition(Kube):
    type: str = ""
    reason: str = ""


class PodStatus(Kube):
    phase: str = ""
    start_time: str | None = None  # preemption orders victims by it (scheduler.disruption)
    conditions: list[PodCondition] = Field(default_factory=list)
    container_statuses: list[ContainerStatus] = Field(default_factory=list)
    init_container_statuses: list[ContainerStatus] = Field(default_factory=list)
    resources: ResourceRequirements | None = None  # pod-level, actuated
    allocated_resources: dict[str, Quantity] | None = None  # pod-level
    resource_claim_statuses: list[PodResourceClaimStatus] = Field(default_factory=list)
    extended_resource_claim_status: PodExtendedResourceClaimStatus | None = None


class Pod(Kube):
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: PodSpec = Field(default_factory=PodSpec)
    status: PodStatus = Field(default_factory=PodStatus)

    @property
    def key(self) -> str:
        return f"{self.metadata.namespace}/{self.metadata.name}"


class NodeList(Kube):
    """v1.NodeList; items stay raw dicts (see module docstring)."""

    items: list[dict[str, Any]] = Field(default_factory=list)


# ---- extender/v1 ---------------------------------------------------------------------------------------
class ExtenderArgs(Wire):
    pod: Pod
    nodes: NodeList | None = None  # nodeCacheCapable: false
    node_names: list[str] | None = None  # nodeCacheCapable: true


class ExtenderFilterResult(Wire):
    nodes: NodeList | None = None
    node_names: list[str] | None = None
    failed_nodes: dict[str, str] = Field(default_factory=dict)
    failed_and_unresolvable_nodes: dict[str, str] = Field(default_factory=dict)
    error: str = ""


class HostPriority(Wire):
    host: str
    score: int


class ExtenderBindingArgs(Wire):
    pod_name: str
    pod_namespace: str
    pod_uid: str = Field(alias="PodUID")
    node: str


class ExtenderBindingResult(Wire):
    error: str = ""


class MetaPod(Wire):
    uid: str = Field(alias="UID")


class MetaVictims(Wire):
    pods: list[MetaPod] = Field(default_factory=list)
    num_pdb_violations: int = Field(0, alias="NumPDBViolations")


class Victims(Wire):
    pods: list[Pod] = Field(default_factory=list)
    num_pdb_violations: int = Field(0, alias="NumPDBViolations")


class ExtenderPreemptionArgs(Wire):
    pod: Pod
    node_name_to_victims: dict[str, Victims] | None = None  # nodeCacheCapable: false
    node_name_to_meta_victims: dict[str, MetaVictims] | None = None  # nodeCacheCapable: true


class ExtenderPreemptionResult(Wire):
    node_name_to_meta_victims: dict[str, MetaVictims] = Field(default_factory=dict)


def dump(model: BaseModel) -> dict[str, Any]:
    """The wire form of a result model (Go field names)."""
    return model.model_dump(by_alias=True)
