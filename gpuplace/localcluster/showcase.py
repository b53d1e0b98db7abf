"""The live demo's workload and its placement table (used by `gpuplace demo`).

The sample workload, submitted in this order to the 16-node demo cluster (fake_nodes.demo_cluster):
training pods that need one NVLink island (8 and 4 GPUs), a 2-GPU fine-tune, V100 training by
model name, an 80 GB-memory embedding job, an inference Deployment of three L4 replicas, MIG pods
(3g.40gb and 2x 1g.10gb), a CPU-only web pod, a training Job (4 completions, 2 at a time, 1 GPU,
2 s each), and two pods that cannot be placed — 8 whole A100s (the A100 nodes expose 4 whole GPUs,
the rest is MIG) and a job needing a 100 GB GPU — to show the reasons gpuplace gives kube-scheduler.

kube-controller-manager turns the Deployment and the Job into pods and kwok runs them: placed pods
are Running, the Job's pods end Succeeded (their GPUs go back to gpuplace, the second wave takes
them) and the Job Complete; :func:`submit` waits for that before the table is printed.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from kubernetes_asyncio import client
from rich.table import Table

from gpuplace.localcluster import apps, audit
from gpuplace.localcluster.lifecycle import run_for, wait_namespace_usable
from gpuplace.localcluster.waiting import wait_until
from gpuplace.localcluster.workload import pending_reason, pod_manifest
from placement_core.topology import islands

NAMESPACE = "demo"
NVLINK = {"gpuplace.io/nvlink": "required"}


@dataclass(frozen=True)
class Item:
    """One thing to submit: a pod, a Deployment of ``replicas`` pods, or a Job of ``completions`` pods
    (run two at a time) made from ``pod`` as template."""

    name: str
    pod: dict[str, Any]
    replicas: int = 0  # > 0: a Deployment
    completions: int = 0  # > 0: a Job
    note: str = ""

    @property
    def pod_count(self) -> int:
        return self.replicas or self.completions or 1

    def owns(self, pod: Mapping[str, Any]) -> bool:
        """Whether ``pod`` (raw JSON) is this item's pod, or one its controller made."""
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        if self.completions:
            return labels.get("job-name") == self.name
        if self.replicas:
            return labels.get("app") == self.name
        return meta.get("name") == self.name


def _pod(name: str, **kwargs: Any) -> dict[str, Any]:
    return pod_manifest(name, **kwargs)


def sample_workload() -> list[Item]:
    h100 = {"gpuplace.io/gpu-models": "H100-80GB"}
    return [
        Item("train-llm-a", _pod("train-llm-a", gpus=8, cpu="32", memory="256Gi", annotations=NVLINK)),
        Item("train-llm-b", _pod("train-llm-b", gpus=8, cpu="32", memory="256Gi", annotations=NVLINK)),
        Item("train-vision", _pod("train-vision", gpus=4, cpu="16", memory="128Gi", annotations=NVLINK)),
        Item("finetune", _pod("finetune", gpus=2, cpu="8", memory="64Gi")),
        Item("train-v100-a", _pod("train-v100-a", gpus=4, cpu="16", memory="64Gi",
                                  annotations={**NVLINK, "gpuplace.io/gpu-models": "V100-32GB"})),
        Item("train-v100-b", _pod("train-v100-b", gpus=4, cpu="16", memory="64Gi",
                                  annotations={**NVLINK, "gpuplace.io/gpu-models": "V100-32GB"})),
        Item("embed-80gb", _pod("embed-80gb", gpus=1, cpu="4", memory="32Gi",
                                annotations={"gpuplace.io/gpu-memory-mib": "70000"})),
        Item("infer-l4", _pod("infer-l4", gpus=1, cpu="4", memory="16Gi", labels={"app": "infer-l4"},
                              annotations={"gpuplace.io/gpu-models": "L4"}), replicas=3,
             note="Deployment, 3 replicas"),
        Item("mig-3g-a", _pod("mig-3g-a", gpus=1, mig="3g.40gb", cpu="4", memory="32Gi")),
        Item("mig-3g-b", _pod("mig-3g-b", gpus=1, mig="3g.40gb", cpu="4", memory="32Gi")),
        Item("mig-1g-x2", _pod("mig-1g-x2", gpus=2, mig="1g.10gb", cpu="2", memory="8Gi")),
        Item("web-frontend", _pod("web-frontend", cpu="2", memory="4Gi")),
        Item("train-job", _pod("train-job", gpus=1, cpu="4", memory="16Gi", annotations=run_for(2)),
             completions=4, note="Job: 4 completions, 2 at a time"),
        Item("train-llm-c", _pod("train-llm-c", gpus=8, cpu="32", memory="256Gi", annotations={**NVLINK, **h100})),
        Item("train-a100-8", _pod("train-a100-8", gpus=8, cpu="32", memory="256Gi",
                                  annotations={"gpuplace.io/gpu-models": "A100-80GB"}),
             note="no node has 8 whole A100s"),
        Item("embed-100gb", _pod("embed-100gb", gpus=1, cpu="4", memory="32Gi",
                                 annotations={"gpuplace.io/gpu-memory-mib": "100000"}),
             note="no GPU here has 100 GB"),
    ]  # fmt: skip


def deployment_manifest(item: Item) -> dict[str, Any]:
    template = copy.deepcopy(item.pod)
    template["metadata"].pop("name", None)
    labels = template["metadata"].setdefault("labels", {"app": item.name})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": item.name, "labels": dict(labels)},
        "spec": {"replicas": item.replicas, "selector": {"matchLabels": dict(labels)}, "template": template},
    }


def job_manifest(item: Item) -> dict[str, Any]:
    template = copy.deepcopy(item.pod)
    template["metadata"].pop("name", None)
    template["spec"]["restartPolicy"] = "OnFailure"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": item.name},
        "spec": {"completions": item.completions, "parallelism": 2, "template": template},
    }


async def _settled(api: client.ApiClient, namespace: str, item: Item, within: float = 30.0) -> None:
    """Wait until the item's first pods exist and each is bound or has a reason why it is not."""
    expected = item.replicas or min(item.completions, 2) or 1

    async def settled() -> bool:
        pods = [p for p in await audit.list_raw(api, "pods", namespace=namespace) if item.owns(p)]
        if len(pods) < expected:
            return False
        for p in pods:
            name = p["metadata"]["name"]
            if not (p.get("spec") or {}).get("nodeName") and not await pending_reason(api, namespace, name):
                return False
        return True

    with contextlib.suppress(TimeoutError):  # then the table says "waiting for the scheduler"
        await wait_until(settled, within=within, interval=0.1, what=f"{item.name} to be placed or refused")


async def submit(api: client.ApiClient, items: Sequence[Item], namespace: str = NAMESPACE) -> None:
    """Create the namespace and every item in order (each settles before the next); then wait for the Jobs."""
    ns: Any = {"metadata": {"name": namespace}}
    await client.CoreV1Api(api).create_namespace(ns)
    await wait_namespace_usable(api, namespace)
    for item in items:
        if item.replicas:
            await apps.create(api, namespace, deployment_manifest(item))
        elif item.completions:
            await apps.create(api, namespace, job_manifest(item))
        else:
            body: Any = copy.deepcopy(item.pod)
            await client.CoreV1Api(api).create_namespaced_pod(namespace, body)
        await _settled(api, namespace, item)
    for item in items:
        if item.completions:
            await wait_until(lambda name=item.name: apps.job_finished(api, namespace, name),  # type: ignore[misc]
                             within=120, what=f"Job {item.name} to finish")  # fmt: skip


@dataclass
class Row:
    pod: str
    asks: str
    phase: str = ""
    node: str = ""
    gpus: str = ""
    island: str = ""
    reason: str = ""
    note: str = ""


@dataclass
class Snapshot:
    rows: list[Row] = field(default_factory=list)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    pods: list[dict[str, Any]] = field(default_factory=list)


def describe_request(pod: Mapping[str, Any]) -> str:
    demand = audit.gpu_demand(pod)
    notes = (pod.get("metadata") or {}).get("annotations") or {}
    if not demand:
        return "CPU only"
    parts = []
    for resource, n in demand.items():
        parts.append(f"{n}x GPU" if resource == audit.GPU_RESOURCE else f"{n}x MIG {resource[len(audit.MIG_PREFIX):]}")
    for key, label in (("gpuplace.io/nvlink", "nvlink"), ("gpuplace.io/gpu-models", "model"),
                       ("gpuplace.io/gpu-memory-mib", "≥MiB")):  # fmt: skip
        if key in notes:
            parts.append(f"{label}={notes[key]}")
    return ", ".join(parts)


def _island(node: Mapping[str, Any] | None, gpus: tuple[int, ...]) -> str:
    topo = audit.topology_of(node) if node is not None else None
    if len(gpus) < 2 or topo is None or "links" not in topo:
        return "-"
    links = np.asarray(topo["links"], dtype=np.uint8)
    members = np.zeros(len(links), dtype=np.bool_)
    members[list(gpus)] = True
    comps = islands(links, members)
    return "yes" if len(comps) == 1 else f"no ({len(comps)} islands)"


async def snapshot(api: client.ApiClient, items: Sequence[Item], namespace: str = NAMESPACE) -> Snapshot:
    pods = await audit.list_raw(api, "pods", namespace=namespace)
    nodes = await audit.list_raw(api, "nodes")
    node_by_name = {n["metadata"]["name"]: n for n in nodes}
    snap = Snapshot(nodes=nodes, pods=pods)
    for item in items:
        mine = sorted((p for p in pods if item.owns(p)),
                      key=lambda p: (p["metadata"].get("creationTimestamp", ""), p["metadata"]["name"]))  # fmt: skip
        for pod in mine:
            name = pod["metadata"]["name"]
            phase = (pod.get("status") or {}).get("phase", "")
            if (pod["metadata"]).get("deletionTimestamp"):
                phase = "Terminating"
            row = Row(name, describe_request(pod), phase=phase, note=item.note)
            node = (pod.get("spec") or {}).get("nodeName")
            if node:
                row.node = node
                raw = (pod["metadata"].get("annotations") or {}).get(audit.KEYS.gpus)
                if raw:
                    rec = json.loads(raw)
                    if rec.get("mig"):
                        topo = audit.topology_of(node_by_name.get(node, {})) or {}
                        layout = {(g["index"], k): m["profile"] for g in topo.get("gpus", [])
                                  for k, m in enumerate(g.get("mig") or [])}  # fmt: skip
                        row.gpus = ", ".join(f"GPU{g}/slot{k} {layout.get((g, k), '')}".strip()
                                             for g, k in rec["mig"])  # fmt: skip
                        row.island = "-"
                    else:
                        row.gpus = ",".join(map(str, rec["gpus"]))
                        row.island = _island(node_by_name.get(node), tuple(rec["gpus"]))
            else:
                pending = await pending_reason(api, namespace, name)
                row.reason = first_sentence(pending.text) if pending else "waiting for the scheduler"
            snap.rows.append(row)
    return snap


def first_sentence(message: str) -> str:
    """kube-scheduler's "0/16 nodes are available: <reason per node group>." without the preemption part."""
    head, sep, _ = message.partition(". ")
    return head + "." if sep else message


def placement_table(snap: Snapshot, title: str) -> Table:
    table = Table(title=title, show_lines=False)
    for col in ("pod", "asks for", "phase", "node", "GPUs chosen", "NVLink island", "pending reason / note"):
        table.add_column(col, overflow="fold")
    for r in snap.rows:
        phase = {"Running": "[green]Running[/green]", "Pending": "[red]Pending[/red]"}.get(r.phase, r.phase)
        table.add_row(r.pod, r.asks, phase, r.node or "-", r.gpus, r.island, r.reason or f"[dim]{r.note}[/dim]")
    return table


def node_table(snap: Snapshot) -> Table:
    use = audit.usage(snap.pods, snap.nodes)
    table = Table(title="GPU nodes")
    for col in ("node", "product", "GPU devices used", ""):
        table.add_column(col)
    for n in sorted(snap.nodes, key=lambda n: n["metadata"]["name"]):
        name = n["metadata"]["name"]
        if name not in use:
            continue
        used, total = use[name]
        label = (n["metadata"].get("labels") or {}).get("nvidia.com/gpu.product", "")
        state = "full" if used == total else ("partially used" if used else "free")
        table.add_row(name, label, f"{used}/{total}", state)
    return table
