"""Settings of the mutating admission webhook.

Why a plain pydantic model and not a BaseSettings: the application layer owns the configuration file and
the environment (one `gpuplace` config for extender and webhook); it embeds `WebhookSettings` as a field,
so the same value can be written in YAML, set from environment variables, or built in a test.

Every field says its default. The model is frozen: the engine precomputes a few lookups from it, and a
settings object that changed under a running webhook would make those stale.
"""

from __future__ import annotations

import functools
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Keys other tools own. gpuplace reads them as gang declarations and never writes them: scheduler-plugins'
#: Coscheduling denies a pod whose pod-group label names no PodGroup object, Kueue manages its own groups.
PLUGINS_POD_GROUP_LABEL = "scheduling.x-k8s.io/pod-group"
KUEUE_POD_GROUP_LABEL = "kueue.x-k8s.io/pod-group-name"
FOREIGN_GANG_ANNOTATIONS = ("kueue.x-k8s.io/pod-group-total-count", "scheduling.k8s.io/group-name")


class GpuToleration(BaseModel):
    """The toleration added to GPU pods (Kubernetes `core/v1.Toleration`, snake_case field names).

    Default: `{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}`, the taint NVIDIA's GPU
    Operator documentation and most GPU clusters put on GPU nodes.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(default="nvidia.com/gpu", description="Taint key to tolerate. Default `nvidia.com/gpu`.")
    operator: Literal["Exists", "Equal"] = Field(
        default="Exists", description="`Exists` (any value) or `Equal` (exactly `value`). Default `Exists`."
    )
    value: str = Field(
        default="", description="Taint value; only meaningful with operator Equal. Default empty."
    )
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = Field(
        default="NoSchedule",
        description="Taint effect to tolerate; empty tolerates every effect. Default `NoSchedule`.",
    )
    toleration_seconds: int | None = Field(
        default=None,
        ge=0,
        description="Only for effect NoExecute: how long the pod stays after the taint. Default none.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> GpuToleration:
        if self.operator == "Exists" and self.value:
            raise ValueError("a toleration with operator Exists must not have a value")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("toleration_seconds is only valid with effect NoExecute")
        return self

    def as_kubernetes(self) -> dict[str, object]:
        """The toleration as it appears in a pod spec (camelCase, empty fields omitted)."""
        out: dict[str, object] = {"key": self.key, "operator": self.operator}
        if self.value:
            out["value"] = self.value
        if self.effect:
            out["effect"] = self.effect
        if self.toleration_seconds is not None:
            out["tolerationSeconds"] = self.toleration_seconds
        return out


class SchedulerRouting(BaseModel):
    """Send GPU pods to gpuplace's own kube-scheduler profile.

    For the deployment mode where gpuplace runs beside a second kube-scheduler instead of being an
    extender of the default one. Off by default: routing is a cluster-wide decision an operator takes.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=False, description="Set `spec.schedulerName` on GPU pods. Default off.")
    scheduler_name: str = Field(
        default="gpuplace-scheduler",
        min_length=1,
        description="The profile GPU pods are routed to. Default `gpuplace-scheduler`.",
    )
    replace: tuple[str, ...] = Field(
        default=("", "default-scheduler"),
        description="schedulerName values treated as 'left at the default' and replaced; any other value was "
        "chosen by someone and is kept. Default: empty and `default-scheduler`.",
    )


#: kube-scheduler v1.36's implicit extended resource name of a DeviceClass (k8s.io/api/resource/v1,
#: `ResourceDeviceClassPrefix`): a pod may request `deviceclass.resource.kubernetes.io/gpu.nvidia.com: 1`.
IMPLICIT_EXTENDED_RESOURCE_PREFIX = "deviceclass.resource.kubernetes.io/"


class DraSettings(BaseModel):
    """Which pods get their GPUs through Dynamic Resource Allocation (resource.k8s.io/v1), and how they reach
    gpuplace's extender. See webhook/dra.py for the resolution and deploy/webhook/README.md for why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        default=True,
        description="Treat pods whose `spec.resourceClaims` ask for a GPU device class as GPU pods. Default on.",
    )
    device_classes: tuple[str, ...] = Field(
        default=("gpu.nvidia.com", "mig.nvidia.com"),
        description="DeviceClass names that are GPU classes without reading them: NVIDIA's DRA driver ships "
        "`gpu.nvidia.com` and `mig.nvidia.com`. Default those two.",
    )
    drivers: tuple[str, ...] = Field(
        default=("gpu.nvidia.com",),
        description="DRA driver names whose devices are GPUs: any other DeviceClass is read once (cached) and "
        "counts as a GPU class when one of its CEL selectors tests `device.driver == '<driver>'`. "
        "Default `gpu.nvidia.com`.",
    )
    lookup_budget_seconds: float = Field(
        default=1.0,
        gt=0,
        description="Time budget for all the reads deciding whether one pod's claims ask for GPUs (its claims "
        "or templates, then unknown DeviceClasses). With the gang budget it must stay inside the webhook's "
        "timeoutSeconds. Default 1 s.",
    )
    marker_resource: str | None = Field(
        default="gpuplace.io/dra-gpu",
        description="Extended resource added (limit = request = 1, first container) to pods whose GPUs come "
        "from claims only, so that kube-scheduler calls gpuplace for them: kube-scheduler calls an extender "
        "only for pods naming one of its managedResources. Register it there with `ignoredByScheduler: true` "
        "(deploy/scheduler). null: claim-only pods are left to kube-scheduler alone. Default "
        "`gpuplace.io/dra-gpu`.",
    )

    marker_schedulers: tuple[str, ...] = Field(
        default=("default-scheduler",),
        description="schedulerName values of the kube-scheduler profiles that have gpuplace as their extender "
        "(with routing on, its scheduler_name counts too). Only their pods get the marker: any other scheduler "
        "(Volcano, KAI, a profile without gpuplace) would find no node offering it and leave the pod Pending. "
        "Default `default-scheduler`.",
    )

    @property
    def implicit_resources(self) -> frozenset[str]:
        """The extended resource names kube-scheduler v1.36 gives every DeviceClass
        (`deviceclass.resource.kubernetes.io/<class>`, DRAExtendedResource), for the GPU classes."""
        return frozenset(f"{IMPLICIT_EXTENDED_RESOURCE_PREFIX}{name}" for name in self.device_classes)


class WebhookSettings(BaseModel):
    """Everything the admission webhook decides by. Embedded by the app layer in the top-level config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpu_resource: str = Field(
        default="nvidia.com/gpu", description="Whole-GPU resource name. Default `nvidia.com/gpu`."
    )
    mig_resource_prefix: str = Field(
        default="nvidia.com/mig-",
        description="Prefix of MIG resources under the mixed strategy (`nvidia.com/mig-1g.10gb`, ...). "
        "Empty disables. Default `nvidia.com/mig-`.",
    )
    extra_resources: tuple[str, ...] = Field(
        default=(),
        description="Further resource names that make a pod a GPU pod (e.g. `nvidia.com/gpu.shared`). "
        "Add them to the MutatingWebhookConfiguration's matchConditions too. Default none.",
    )
    toleration: GpuToleration | None = Field(
        default=GpuToleration(),
        description="Toleration added to GPU pods lacking an equivalent one; null disables the rule. "
        "Default `nvidia.com/gpu` Exists NoSchedule.",
    )
    dra: DraSettings = Field(
        default=DraSettings(),
        description="GPUs from ResourceClaims (resource.k8s.io/v1). Default on, NVIDIA's classes.",
    )
    routing: SchedulerRouting = Field(
        default=SchedulerRouting(), description="Scheduler routing. Default off."
    )
    annotation_prefix: str = Field(
        default="gpuplace.io/",
        description="Prefix of gpuplace's own annotations (`<prefix>gang-name`). Default `gpuplace.io/`.",
    )
    gang_label: str = Field(
        default="gpuplace.io/gang",
        description="Label gpuplace writes with the gang name it resolved (what gpuplace's scheduler reads). Must "
        "be gpuplace's own key: other tools' keys (scheduling.x-k8s.io/pod-group, Kueue's) stay the user's. "
        "Default `gpuplace.io/gang`.",
    )
    gang_min_member_annotation: str = Field(
        default="gpuplace.io/gang-min-member",
        description="Annotation gpuplace writes with the gang size it resolved: how many GPU pods must be placed "
        "together. Default `gpuplace.io/gang-min-member`.",
    )
    gang_size_annotation: str = Field(
        default="gpuplace.io/gang-size",
        description="Annotation a user sets to declare the gang's size (with `<prefix>gang-name`); read, never "
        "written. Default `gpuplace.io/gang-size`.",
    )
    owner_cache_ttl_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How long a looked-up owner object (Job, JobSet, ...) is reused for pods that show nothing "
        "newer (webhook/owners.py). A gang's pods are created in one burst; 5 s serves the burst from one "
        "read and bounds how long a shrunk owner's old size can be served. Default 5 s.",
    )
    owner_lookup_timeout_seconds: float = Field(
        default=1.5,
        gt=0,
        description="Timeout of one API read (owner or PodGroup). Default 1.5 s.",
    )
    gang_lookup_budget_seconds: float = Field(
        default=2.0,
        gt=0,
        description="Time budget for all the reads one pod's gang needs (they run concurrently); when it is "
        "spent the pod is admitted without gang labels and with a warning. Keep it well inside the webhook's "
        "timeoutSeconds (5 in deploy/webhook). Default 2 s.",
    )
    max_review_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=64 * 1024,
        description="Largest AdmissionReview body accepted; a pod is at most ~1.5 MiB in etcd. Default 4 MiB.",
    )

    @model_validator(mode="after")
    def _own_output_keys(self) -> WebhookSettings:
        foreign_labels = {PLUGINS_POD_GROUP_LABEL, KUEUE_POD_GROUP_LABEL}
        foreign_annotations = {
            self.gang_name_annotation,
            self.gang_size_annotation,
            *FOREIGN_GANG_ANNOTATIONS,
        }
        for field, key, foreign in (
            ("gang_label", self.gang_label, foreign_labels),
            ("gang_min_member_annotation", self.gang_min_member_annotation, foreign_annotations),
        ):
            if key in foreign:
                raise ValueError(
                    f"{field}={key!r} is a key users or other tools set; gpuplace writes only keys of its own"
                )
        return self

    @property
    def gang_name_annotation(self) -> str:
        """`<annotation_prefix>gang-name`: an explicit gang name set by the user."""
        return f"{self.annotation_prefix}gang-name"

    @functools.cached_property
    def managed_names(self) -> frozenset[str]:
        """Exact managed resource names (the prefix is checked separately): the GPU resource, the extra
        ones, and with DRA the marker and the GPU classes' implicit extended resource names."""
        names = {self.gpu_resource, *self.extra_resources}
        if self.dra.enabled:
            names |= self.dra.implicit_resources
            if self.dra.marker_resource:
                names.add(self.dra.marker_resource)
        return frozenset(names)

    def is_managed(self, resource: str) -> bool:
        """Whether a resource name makes a pod a GPU pod."""
        if resource in self.managed_names:
            return True
        prefix = self.mig_resource_prefix
        return bool(prefix) and resource.startswith(prefix)
