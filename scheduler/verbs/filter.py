"""filter: which of the offered nodes can take the pod now, and a sentence for each one that cannot.

One placement_core kernel call evaluates every node of the cluster; the offered nodes are picked out by
row. Rejections that no preemption can fix (wrong model, too few GPUs in total, MIG profile absent,
no NVLink island big enough, a share on GPUs without time-slicing) go to `FailedAndUnresolvableNodes`,
so kube-scheduler does not evict pods for nothing; the rest (busy GPUs, busy NVLink islands, busy MIG
instances) go to `FailedNodes`. Every rejected node gets a reason: a node missing from both maps would
leave kube-scheduler guessing. While the outcome of the pod's own Binding is unknown
(scheduler.verbs.bind), only the node holding its GPUs passes.

What filter leaves to kube-scheduler's own plugins, which run first: cordons (NodeUnschedulable,
scheduler.nodeinv), cpu and memory (NodeResourcesFit, scheduler.podreq.pod_request says why), and pods
that ask for no GPU at all (`nvidia.com/gpu: "0"`: every offered node passes). Pods whose GPUs come from
ResourceClaims are judged by their claims' demand against the nodes' free DRA devices
(scheduler.dra.extender).

The result is encoded from byte fragments (scheduler.namelists): one sentence per distinct
(reason, detail) pair, joined with the node names' precomputed JSON — no per-node Python objects beyond
what numpy's object arrays concatenate in C — and kept per (list, request), so the next pod of a shape
re-encodes only the nodes whose reason changed (scheduler.failmaps).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from placement_core import GpuRequest, Reason, explain
from scheduler.context import ExtenderContext
from scheduler.dra.extender import demand_of, filter_rows
from scheduler.gang import GangIdentityError, Verdict
from scheduler.namelists import NameList
from scheduler.nominated import explain_blocked, refilter
from scheduler.podreq import PodRequestError, wants_gpus
from scheduler.wire import ExtenderArgs, ExtenderFilterResult


@dataclass
class FilterOutcome:
    """A filter result as arrays and byte fragments; `encode` is the wire form, `to_wire` the model."""

    names: NameList | None = None
    ok: npt.NDArray[np.bool_] | None = None
    array_json: bytes = b"null"
    failed_json: bytes = b"{}"
    unresolvable_json: bytes = b"{}"
    node_items: list[dict[str, Any]] | None = None
    error: str = ""

    def encode(self) -> bytes:
        if self.node_items is not None and self.ok is not None:
            kept = [n for n, good in zip(self.node_items, self.ok.tolist(), strict=True) if good]
            nodes = orjson.dumps({"items": kept})
            names = b"null"
        else:
            nodes, names = b"null", self.array_json
        return (
            b'{"Nodes":'
            + nodes
            + b',"NodeNames":'
            + names
            + b',"FailedNodes":'
            + self.failed_json
            + b',"FailedAndUnresolvableNodes":'
            + self.unresolvable_json
            + b',"Error":'
            + orjson.dumps(self.error)
            + b"}"
        )

    def to_wire(self) -> ExtenderFilterResult:
        return ExtenderFilterResult.model_validate_json(self.encode())


def _sentence(req: GpuRequest) -> Callable[[int, int], bytes]:
    """(reason, detail) → the map-value fragment `":"<sentence>","` for this request."""
    models = ", ".join(sorted(req.models)) if req.models else "any"

    def sentence(reason: int, detail: int) -> bytes:
        text = explain(
            reason,
            detail,
            what=req.describe(),
            count=req.count,
            milli=req.milli,
            min_memory_mib=req.min_memory_mib,
            mig_profile=req.mig_profile,
            models=models,
        )
        return b'":' + orjson.dumps(text) + b',"'

    return sentence


def _gang_outcome(
    names: NameList, verdict: Verdict, node_items: list[dict[str, Any]] | None
) -> FilterOutcome:
    """A gang member passes on its planned node only; every other node is unresolvable with the gang's
    reason (no preemption: evicting pods cannot make a gang's plan, scheduler.gang)."""
    ok = names.names == verdict.node if verdict.node else np.zeros(len(names), np.bool_)
    ok = np.asarray(ok, np.bool_)
    reason = verdict.reason
    if verdict.node and not ok.any():
        reason += ", which kube-scheduler's own filters excluded for this pod"
    fail = np.nonzero(~ok)[0]
    texts = np.empty(len(fail), object)
    texts[:] = [b'":' + orjson.dumps(reason) + b',"'] * len(fail)
    return FilterOutcome(names, ok, names.json_array(ok), b"{}", names.json_map(fail, texts), node_items)


def filter_nodes(args: ExtenderArgs, ctx: ExtenderContext, *, names: NameList | None = None) -> FilterOutcome:
    """The filter verb. `names` short-cuts NodeNames when the HTTP layer recognised the list already."""
    pod = args.pod
    ctx.recent_pods.put(pod)
    try:
        req = ctx.requests.get(pod)
    except PodRequestError as e:
        ctx.metrics.errors.labels("filter").inc()
        return FilterOutcome(error=f"gpuplace: pod {pod.key}: {e}")
    node_items = None
    if names is None:
        if args.node_names is not None:
            names = ctx.names.for_names(args.node_names)
        elif args.nodes is not None:
            node_items = args.nodes.items
            for item in node_items:  # full-Nodes mode: the Nodes sent are at least as fresh as ours
                ctx.cache.apply_node("MODIFIED", item, from_watch=False)
            names = ctx.names.for_names([str((n.get("metadata") or {}).get("name", "")) for n in node_items])
        else:
            names = NameList.of([])
    cache = ctx.cache
    unknown = cache.outcome_unknown(pod.metadata.uid)
    if unknown is not None:
        return _unknown_outcome(ctx, names, unknown.node, node_items)
    demand = demand_of(ctx, pod)
    if demand is not None:  # GPUs from ResourceClaims (scheduler.dra.extender)
        return _dra_outcome(ctx, names, *filter_rows(ctx, demand, names.names.tolist()), node_items)
    rows = names.resolve(cache.state.index, cache.index_gen)
    if ctx.gangs is not None and wants_gpus(req):
        try:
            verdict = ctx.gangs.filter(pod, req, rows)
        except GangIdentityError as e:
            ctx.metrics.errors.labels("filter").inc()
            return FilterOutcome(error=f"gpuplace: pod {pod.key}: {e}")
        if verdict is not None:
            return _gang_outcome(names, verdict, node_items)
    if wants_gpus(req):
        reason_all, detail_all = ctx.evaluate(req)
        if names.all_known:
            reason, detail = reason_all[rows], detail_all[rows].astype(np.int64)
        else:
            known = rows >= 0
            safe = np.where(known, rows, 0)
            reason = np.where(known, reason_all[safe], np.int8(Reason.UNSCHEDULABLE)).astype(np.int8)
            detail = np.where(known, detail_all[safe], 0).astype(np.int64)
        blocked = refilter(cache, req, pod, rows, reason, detail) if len(cache.nominated) else {}
    else:  # e.g. `nvidia.com/gpu: "0"`: nothing for gpuplace to check, every offered node passes
        reason = np.zeros(len(names), np.int8)
        detail = np.zeros(len(names), np.int64)
        blocked = {}
    ok = reason == 0
    if not ok.all():
        ctx.metrics.count_rejections(reason)
    answer = ctx.answers.update(names, req, reason, detail, _sentence(req))
    failed, unresolvable, array_json = answer.failed_json, answer.unresolvable_json, answer.array_json
    if blocked:  # GPUs freed for a nominated pod are not given away (scheduler.nominated)
        failed = explain_blocked(failed, blocked)
    if ctx.settings.decisive and wants_gpus(req) and int(ok.sum()) > 1:
        ok, failed = _decide(ctx, req, names, rows, ok, failed)
        array_json = names.json_array(ok)
        tail = ctx.names.output_tail(array_json)
    else:
        if not answer.tail:
            answer.tail = ctx.names.output_tail(array_json)
        tail = answer.tail
    if node_items is None:
        ctx.names.register_output(names, ok, tail)
    return FilterOutcome(names, ok, array_json, failed, unresolvable, node_items)


def _decide(
    ctx: ExtenderContext,
    req: GpuRequest,
    names: NameList,
    rows: npt.NDArray[np.int64],
    ok: npt.NDArray[np.bool_],
    failed: bytes,
) -> tuple[npt.NDArray[np.bool_], bytes]:
    """Decisive mode: keep only the feasible node with the best raw score (the first offered one on a
    tie). kube-scheduler, left with one feasible node, takes it without scoring at all
    (pkg/scheduler/schedule_one.go, `schedulePod`: "When only one node after predicate, just use it"),
    so neither prioritize nor any in-tree Score plugin runs for the pod. The others go to FailedNodes
    with a sentence naming the winner."""
    feasible = np.nonzero(ok)[0]
    raw = ctx.scores(req)[rows[feasible]]
    best = int(feasible[int(np.argmax(raw))])
    keep = np.zeros(len(ok), np.bool_)
    keep[best] = True
    others = feasible[feasible != best]
    text = f"gpuplace (decisive mode): node {names.names[best]} fits this pod better"
    values = np.empty(len(others), object)
    values[:] = [b'":' + orjson.dumps(text) + b',"'] * len(others)
    extra = names.json_map(others, values)
    merged = extra if failed == b"{}" else failed[:-1] + b"," + extra[1:]
    return keep, merged


def _dra_outcome(
    ctx: ExtenderContext,
    names: NameList,
    ok: npt.NDArray[np.bool_],
    texts: list[str],
    which: npt.NDArray[np.int64],
    node_items: list[dict[str, Any]] | None,
) -> FilterOutcome:
    """A DRA pod: nodes whose free devices do not fit go to FailedNodes (preempting claim holders can
    free devices) with the sentence why (`texts[which[i]]`, each sentence encoded once)."""
    fail = np.nonzero(~ok)[0]
    encoded = np.array([b'":' + orjson.dumps(t) + b',"' for t in texts] or [b""], dtype=object)
    texts_json = encoded[which[fail]] if len(fail) else np.empty(0, object)
    array_json = names.json_array(ok)
    if node_items is None:
        ctx.names.register_output(names, ok, array_json)
    return FilterOutcome(names, ok, array_json, names.json_map(fail, texts_json), b"{}", node_items)


def _unknown_outcome(
    ctx: ExtenderContext, names: NameList, node: str, node_items: list[dict[str, Any]] | None
) -> FilterOutcome:
    """While the outcome of this pod's Binding to `node` is unknown (scheduler.verbs.bind), only that
    node can take it: its GPUs there are held for it, and a retry there writes the same Binding again."""
    ok = names.names == node
    others = np.nonzero(~ok)[0]
    text = f"gpuplace: the outcome of this pod's bind to {node} is not known yet; its GPUs are held there"
    values = np.empty(len(others), object)
    values[:] = [b'":' + orjson.dumps(text) + b',"'] * len(others)
    array_json = names.json_array(ok)
    if node_items is None:
        ctx.names.register_output(names, ok, ctx.names.output_tail(array_json))
    return FilterOutcome(names, ok, array_json, names.json_map(others, values), b"{}", node_items)
