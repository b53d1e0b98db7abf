"""Feature gates and extra served API versions for a local control plane.

A feature gate is cluster-wide in spirit but per-process in fact: kube-apiserver, kube-controller-manager
and kube-scheduler each parse their own ``--feature-gates``, and an alpha API group version is served
only when kube-apiserver's ``--runtime-config`` names it. :class:`Features` keeps the three in step:
``ControlPlane(features=...)`` passes :meth:`Features.apiserver_args` to kube-apiserver and
:meth:`Features.component_args` to kube-controller-manager and to every kube-scheduler it starts.

:data:`NATIVE_GANG` is Kubernetes 1.36's native gang scheduling (KEP-4671): ``GenericWorkload`` (the
pod's ``spec.schedulingGroup`` and the pod-group scheduling cycle) and ``GangScheduling`` (the
GangScheduling plugin's PreEnqueue and Permit), with ``scheduling.k8s.io/v1alpha2`` served (PodGroup,
Workload). All three are alpha and off by default in v1.36.3 (pkg/features/kube_features.go).
``WorkloadWithJob`` (the Job controller creating Workloads and PodGroups for Jobs) stays off.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


def _joined(values: Mapping[str, bool]) -> str:
    return ",".join(f"{k}={'true' if v else 'false'}" for k, v in sorted(values.items()))


@dataclass(frozen=True)
class Features:
    """``gates``: feature gate → on/off for every component; ``apis``: group/version → served (kube-apiserver)."""

    gates: Mapping[str, bool] = field(default_factory=dict)
    apis: Mapping[str, bool] = field(default_factory=dict)

    def component_args(self) -> list[str]:
        """``--feature-gates=...`` (nothing when no gate is set)."""
        return [f"--feature-gates={_joined(self.gates)}"] if self.gates else []

    def apiserver_args(self) -> list[str]:
        """The feature gates and ``--runtime-config=...``."""
        return self.component_args() + ([f"--runtime-config={_joined(self.apis)}"] if self.apis else [])


NATIVE_GANG = Features(
    gates={"GenericWorkload": True, "GangScheduling": True},
    apis={"scheduling.k8s.io/v1alpha2": True},
)
