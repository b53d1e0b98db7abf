"""Pod requests as kube-scheduler computes them (v1.36.3 component-helpers `resource.PodRequests`), and the
cache re-reading a bound pod whose requests change (issue 9, item 5).

The expected numbers are worked out by hand from k8s.io/component-helpers@v0.36.3 resource/helpers.go
(`PodRequests`, `AggregateContainerRequests`, `determineEffectiveRequests`) with the options
kube-scheduler v1.36.3 passes for pods in its node cache (pkg/scheduler/framework/types.go,
`PodInfo.CalculateResource`: UseStatusResources and InPlacePodLevelResourcesVerticalScalingEnabled on,
pod-level resources on).
"""

from __future__ import annotations

import copy
from typing import Any

from scheduler.podreq import Rules, pod_request
from scheduler.verbs.filter import filter_nodes
from scheduler.wire import ExtenderArgs, Pod
from tests.scheduler import objects as o
from tests.scheduler.conftest import make_ctx

RULES = Rules()


def _cpu_mem(p: dict[str, Any]) -> tuple[int, int]:
    r = pod_request(Pod.model_validate(p), RULES)
    return r.cpu_milli, r.memory_mib


def _two_containers(cpu: str = "1", memory: str = "1Gi") -> dict[str, Any]:
    p = o.pod("p", gpus=1, cpu=cpu, memory=memory)
    side = copy.deepcopy(p["spec"]["containers"][0])
    side["name"] = "side"
    side["resources"] = {"requests": {"cpu": cpu, "memory": memory}}
    p["spec"]["containers"].append(side)
    return p


def _status(cpu: str, *, allocated: str | None, actuated: str | None, name: str = "main") -> dict[str, Any]:
    cs: dict[str, Any] = {"name": name, "ready": True, "restartCount": 0, "image": "cuda:12", "imageID": ""}
    if allocated is not None:
        cs["allocatedResources"] = {"cpu": allocated, "memory": "1Gi", "nvidia.com/gpu": "1"}
    if actuated is not None:
        cs["resources"] = {"requests": {"cpu": actuated, "memory": "1Gi"}, "limits": {"nvidia.com/gpu": "1"}}
    return cs


def test_pod_level_requests_replace_the_container_sum() -> None:
    """PodLevelResources (beta, on by default since 1.34): spec.resources.requests wins for cpu/memory."""
    p = _two_containers()
    p["spec"]["resources"] = {"requests": {"cpu": "8", "memory": "16Gi"}, "limits": {"cpu": "8"}}
    p["spec"]["overhead"] = {"cpu": "250m"}
    assert _cpu_mem(p) == (8250, 16384)  # pod level (8) + overhead; containers would say 2 and 2Gi
    only_cpu = _two_containers()
    only_cpu["spec"]["resources"] = {"requests": {"cpu": "3"}}
    assert _cpu_mem(only_cpu) == (3000, 2048)  # memory still from the containers


def test_resized_container_counts_the_larger_of_spec_allocated_and_actuated() -> None:
    """In-place resize (GA 1.35): max(spec, status.allocatedResources, status.resources.requests)."""
    shrinking = o.pod("p", gpus=1, cpu="2", node_name="n", phase="Running")
    shrinking["status"]["containerStatuses"] = [_status("4", allocated="4", actuated="4")]
    assert _cpu_mem(shrinking)[0] == 4000  # spec already says 2, the kubelet still holds 4
    growing = o.pod("p", gpus=1, cpu="8", node_name="n", phase="Running")
    growing["status"]["containerStatuses"] = [_status("4", allocated="4", actuated="4")]
    assert _cpu_mem(growing)[0] == 8000
    infeasible = copy.deepcopy(growing)
    infeasible["status"]["conditions"] = [
        {"type": "PodResizePending", "status": "True", "reason": "Infeasible", "message": "no room"}
    ]
    assert _cpu_mem(infeasible)[0] == 4000  # an infeasible resize never reserves the new spec
    no_resources = o.pod("p", gpus=1, cpu="2", node_name="n", phase="Running")
    no_resources["status"]["containerStatuses"] = [_status("4", allocated="4", actuated=None)]
    assert _cpu_mem(no_resources)[0] == 2000  # v1.36.3 reads status only when status.resources is set


def test_resized_pod_level_requests_use_the_pod_status() -> None:
    p = _two_containers()
    p["spec"]["nodeName"] = "n"
    p["spec"]["resources"] = {"requests": {"cpu": "2"}}
    p["status"]["resources"] = {"requests": {"cpu": "6"}}
    p["status"]["allocatedResources"] = {"cpu": "5"}
    assert _cpu_mem(p)[0] == 6000


def test_sidecar_status_counts_but_run_to_completion_init_status_does_not() -> None:
    p = o.pod("p", gpus=1, cpu="1", node_name="n", phase="Running")
    p["spec"]["initContainers"] = [
        {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "1"}}},
        {"name": "init", "resources": {"requests": {"cpu": "1"}}},
    ]
    p["status"]["initContainerStatuses"] = [
        _status("3", allocated="3", actuated="3", name="side"),
        _status("9", allocated="9", actuated="9", name="init"),
    ]
    # containers 1 + sidecar max(1, 3) = 4; the init container ran beside the sidecar: 1 + 3 = 4
    assert _cpu_mem(p)[0] == 4000


def test_cache_rereads_a_bound_pod_whose_requests_change() -> None:
    """The cache fingerprint covers what the requests are computed from: a resize on a bound pod (same
    node, same record) changes what the node has left."""
    node = o.node("n", cpu="16")
    bound = o.pod("p", gpus=1, cpu="2", node_name="n", phase="Running")
    ctx = make_ctx([node], [bound])
    state = ctx.cache.state
    row = state.index["n"]
    assert state.node_cpu_free[row] == 14_000
    resized = copy.deepcopy(bound)
    resized["metadata"]["resourceVersion"] = "999"
    resized["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "10"
    resized["status"]["containerStatuses"] = [_status("10", allocated="10", actuated="10")]
    ctx.cache.apply_pod("MODIFIED", resized)
    assert state.node_cpu_free[row] == 6_000
    pod_level = copy.deepcopy(resized)
    pod_level["spec"]["resources"] = {"requests": {"cpu": "12"}}
    ctx.cache.apply_pod("MODIFIED", pod_level)
    assert state.node_cpu_free[row] == 4_000
    assert not state.check_invariants()


def test_filter_leaves_cpu_and_memory_to_node_resources_fit() -> None:
    """The decision (scheduler/podreq.py, `pod_request`): NodeResourcesFit has already admitted every
    node the extender is offered, by kube-scheduler's own exact accounting; gpuplace counts cpu/memory
    for its policies but never rejects a node for them."""
    ctx = make_ctx([o.node("n", cpu="4", memory="8Gi")], [o.pod("hog", cpu="3", node_name="n")])
    p = o.pod("p", gpus=1, cpu="2", memory="16Gi")
    r = filter_nodes(ExtenderArgs.model_validate(o.extender_args(p, names=["n"])), ctx).to_wire()
    assert r.node_names == ["n"], (r.failed_nodes, r.failed_and_unresolvable_nodes)
