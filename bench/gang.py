"""Gang placement, issue 11's bench: gpuplace beside an all-or-nothing planner without topology and
beside kube-scheduler alone, in the simulator (this file) and on the real control plane (`--real`,
bench/gang_real.py).

Cluster: 64 HGX H100 nodes (8 GPUs each) in 8 NVLink cliques of 8 nodes; racks of 2 cliques; one zone.
Workload (one seeded sequence per seed, the same for every arm): gangs of 2-16 members x 8 GPUs and
single pods of 1, 2, 4 or 8 GPUs, arriving as a Poisson process at an offered load of `--load` times
the cluster's GPUs, each running for an exponential time once it is placed (a gang only once every
member is placed), then leaving. Pending work is retried, in arrival order, whenever something leaves
(kube-scheduler requeues pods on an assigned pod's deletion); nothing blocks the queue's head.

Arms (each sees the same arrivals):
- gpuplace: placement_core.gangplan.plan_gang (what scheduler.gang plans with: all or nothing, the
  smallest topology domain that fits, best fit, `preferred` topology); single pods on the node
  gpuplace's default policy scores best (scheduler.policy).
- all-or-nothing, no topology: the same planner and single-pod scoring on the same nodes with their
  clique, rack and zone labels removed (and added in shuffled order, so row ties carry no locality),
  so the whole cluster is the one domain it knows. It isolates
  what topology adds to all-or-nothing (it is not scheduler-plugins' Coscheduling).
- kube-scheduler alone: every pod on its own, as soon as it fits, on the feasible node that
  NodeResourcesFit's default LeastAllocated strategy scores best (most free GPUs after placing; ties
  broken at random, as selectHost does), members of a gang included. Placed members of an incomplete
  gang hold their GPUs idle until the last one is placed. A model of the binary (the real one is in
  `--real`).

Per seed and arm, measured up to the last arrival: gangs fully placed; of those, the share in their
smallest feasible domain (one clique for up to 8 members, one rack beyond); GPU allocation (time
average of allocated GPUs over all GPUs) and the part of it doing work (idle partial members excluded);
partial gangs (ever, and still partial at the end) and the GPU-hours they held idle; wait from a gang's
arrival to its full placement (p50 / max, simulated hours); planner time per planning call.

    .venv/bin/python bench/gang.py [--seeds 5] [--arrivals 300] [--load 1.2] [--out bench/results/gang_sim.md]
    GPUPLACE_LOCAL_BIN=deploy/local/bin .venv/bin/python bench/gang.py --real [--seeds 2] [--items 40] [--load 2.5]
    .venv/bin/python bench/gang.py --scale    # the planner's cost at 64, 1,000 and 5,000 nodes

Results and their commands: bench/results/gang_*.md; discussion in scheduler/gang/README.md.
"""

from __future__ import annotations

import argparse
import heapq
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from placement_core import MODELS, ClusterState, GpuRequest, GpuSpec, NodeSpec, placer
from placement_core.gangplan import Level, Member, plan_gang
from scheduler.policy import DEFAULT_POLICY, scoring_function

H100 = MODELS["H100-80GB"]
CLIQUES, PER_CLIQUE, CLIQUES_PER_RACK, GPUS_PER_NODE = 8, 8, 2, 8
GANG_SIZES, GANG_P = (2, 3, 4, 6, 8, 12, 16), (0.2, 0.1, 0.2, 0.12, 0.18, 0.08, 0.12)
SINGLE_GPUS, SINGLE_P = (1, 2, 4, 8), (0.4, 0.25, 0.2, 0.15)
GANG_SHARE = 0.3
GPUPLACE, REQUIRED, NO_TOPOLOGY, KSCHED = (
    "gpuplace",
    "gpuplace, required topology",
    "all-or-nothing, no topology",
    "kube-scheduler alone",
)
ARMS = (GPUPLACE, REQUIRED, NO_TOPOLOGY, KSCHED)


def node_name(clique: int, i: int) -> str:
    return f"c{clique}n{i}"


def clique_of(node: str) -> int:
    return int(node[1 : node.index("n")])


def smallest_domain(nodes: Iterable[str], members: int) -> bool:
    """In one clique for up to PER_CLIQUE members, else in one rack (the smallest domain that can hold it)."""
    cl = {clique_of(n) for n in nodes}
    return len(cl) == 1 if members <= PER_CLIQUE else len({c // CLIQUES_PER_RACK for c in cl}) == 1


def level_used(nodes: Iterable[str]) -> int:
    """0 = one clique, 1 = one rack, 2 = wider."""
    cl = {clique_of(n) for n in nodes}
    return 0 if len(cl) == 1 else 1 if len({c // CLIQUES_PER_RACK for c in cl}) == 1 else 2


def tightest_level(s: ClusterState, members: int) -> int:
    """The tightest level (0 clique, 1 rack, 2 wider) with one domain holding `members` whole free 8-GPU
    nodes right now, read from node names (so it works on the unlabelled cluster too); 3 = none."""
    n = s.n_rows
    whole = (s.gpu_free_milli[:n] >= 1000).all(axis=1)
    per_clique = np.zeros(CLIQUES, np.int64)
    for r in np.flatnonzero(whole).tolist():
        per_clique[clique_of(s.names[r])] += 1
    per_rack = per_clique.reshape(-1, CLIQUES_PER_RACK).sum(axis=1)
    for level, cap in enumerate((per_clique.max(), per_rack.max(), per_clique.sum())):
        if cap >= members:
            return level
    return 3


def cluster(*, topology: bool = True) -> ClusterState:
    """The 64 nodes. Without `topology` they carry no clique, rack or zone, and are added in a shuffled
    (fixed) order: the planner breaks ties by row, and rows in clique order would hand a topology-blind
    baseline NVLink locality by accident."""
    s = ClusterState(max_gpus=GPUS_PER_NODE, capacity=CLIQUES * PER_CLIQUE)
    nodes = [(c, i) for c in range(CLIQUES) for i in range(PER_CLIQUE)]
    if not topology:
        np.random.default_rng(64).shuffle(nodes)
    for c, i in nodes:
        where = {"clique": f"cl{c}", "rack": f"r{c // CLIQUES_PER_RACK}", "zone": "z"} if topology else {}
        gpus = [GpuSpec(g, H100.memory_mib) for g in range(GPUS_PER_NODE)]
        s.upsert_node(NodeSpec(node_name(c, i), H100, gpus, cpu_milli=224000, memory_mib=2_000_000, **where))
    return s


@dataclass(frozen=True)
class Item:
    name: str
    members: int  # 1 for a single pod
    gpus: int  # per member
    arrival: float
    duration: float
    gang: bool

    @property
    def total_gpus(self) -> int:
        return self.members * self.gpus


def workload(seed: int, n: int, *, load: float, gang_hours: float = 4.0, single_hours: float = 2.0,
             gpus: int = CLIQUES * PER_CLIQUE * GPUS_PER_NODE) -> list[Item]:  # fmt: skip
    """`n` arrivals; the arrival span is set so that the offered work is `load` x the cluster's GPUs."""
    rng = np.random.default_rng(seed)
    raw = []
    for k in range(n):
        if rng.random() < GANG_SHARE:
            raw.append(
                (f"g{k:03d}", int(rng.choice(GANG_SIZES, p=GANG_P)), 8, rng.exponential(gang_hours), True)
            )
        else:
            raw.append(
                (
                    f"s{k:03d}",
                    1,
                    int(rng.choice(SINGLE_GPUS, p=SINGLE_P)),
                    rng.exponential(single_hours),
                    False,
                )
            )
    work = sum(m * g * d for _, m, g, d, _ in raw)
    span = work / (load * gpus)
    arrivals = np.sort(rng.uniform(0, span, n))
    return [Item(name, m, g, float(t), float(d), gang)
            for (name, m, g, d, gang), t in zip(raw, arrivals, strict=True)]  # fmt: skip


@dataclass
class SimResult:
    arm: str
    seed: int
    gangs: int = 0
    placed: int = 0
    smallest: int = 0
    tightest: int = 0
    alloc: float = 0.0
    busy: float = 0.0
    partial_ever: int = 0
    partial_end: int = 0
    idle_gpu_hours: float = 0.0
    waits: list[float] = field(default_factory=list)
    plan_ms: list[float] = field(default_factory=list)
    singles: int = 0
    singles_placed: int = 0


class Sim:
    """One arm over one arrival sequence (event-driven: arrivals and departures)."""

    def __init__(self, arm: str, seed: int, items: list[Item]) -> None:
        self.arm, self.items = arm, items
        self.s = cluster(topology=arm != NO_TOPOLOGY)
        self.r = SimResult(arm, seed)
        self.rng = np.random.default_rng(1000 + seed)
        self.score = scoring_function(DEFAULT_POLICY, 0.5)
        self.placed: dict[str, dict[int, float]] = {}  # item → member → time placed (ksched alone)
        self.failed_at: dict[str, int] = {}  # item → releases seen when it last failed
        self.releases = 0
        self.partial: set[str] = set()
        self.idle = 0  # GPUs held by members of incomplete gangs

    def run(self) -> SimResult:
        events: list[tuple[float, int, str, str]] = [(it.arrival, 1, "arrive", it.name) for it in self.items]
        heapq.heapify(events)
        by_name = {it.name: it for it in self.items}
        pending: list[Item] = []
        end, now, used = self.items[-1].arrival, 0.0, 0
        total = self.s.n_rows * GPUS_PER_NODE
        while events and events[0][0] <= end:
            t = events[0][0]
            self.r.alloc += used * (t - now)
            self.r.busy += (used - self.idle) * (t - now)
            now = t
            while events and events[0][0] == t:
                _, _, what, name = heapq.heappop(events)
                it = by_name[name]
                if what == "arrive":
                    pending.append(it)
                    self.r.gangs += it.gang
                    self.r.singles += not it.gang
                else:
                    for m in range(it.members):
                        self.s.release(f"{name}/{m}")
                    self.releases += 1
            still = []
            for it in pending:
                if self.try_place(it, now):
                    heapq.heappush(events, (now + it.duration, 0, "leave", it.name))
                else:
                    still.append(it)
            pending = still
            used = total - int(self.s.gpu_free_milli[: self.s.n_rows].sum()) // 1000
        for it in pending:  # still incomplete at the end
            got = self.placed.get(it.name, {})
            if it.gang and got:
                self.r.partial_end += 1
                self.r.idle_gpu_hours += sum(end - t0 for t0 in got.values()) * it.gpus
        self.r.alloc /= total * end
        self.r.busy /= total * end
        return self.r

    def try_place(self, it: Item, now: float) -> bool:
        if self.failed_at.get(it.name) == self.releases:
            return False  # only allocations since it last failed: it cannot fit now either
        ok = self.place_ksched(it, now) if self.arm == KSCHED else self.place_planned(it, now)
        if not ok:
            self.failed_at[it.name] = self.releases
        return ok

    def place_planned(self, it: Item, now: float) -> bool:
        req = GpuRequest(count=it.gpus)
        if not it.gang:
            reason, _ = placer.evaluate(self.s, req)
            if not (reason == 0).any():
                return False
            scores = self.score(self.s, req, reason)
            p = placer.choose(self.s, self.s.names[int(np.argmax(scores))], req)
            assert p is not None
            self.s.allocate(f"{it.name}/0", p)
            self.r.singles_placed += 1
            return True
        members = [Member(f"{it.name}/{m}", req) for m in range(it.members)]
        t0 = time.perf_counter()
        widest = (
            Level.CLUSTER
            if self.arm != REQUIRED
            else Level.CLIQUE
            if it.members <= PER_CLIQUE
            else Level.RACK
        )
        out = plan_gang(self.s, members, need=it.members, rows=np.arange(self.s.n_rows), max_level=widest)
        self.r.plan_ms.append((time.perf_counter() - t0) * 1000)
        if out.assignments is None:
            return False
        nodes = [p.node for p in out.assignments.values()]
        self.r.tightest += level_used(nodes) <= tightest_level(self.s, it.members)
        for uid, p in out.assignments.items():
            self.s.allocate(uid, p)
        self.gang_done(it, now, nodes)
        return True

    def place_ksched(self, it: Item, now: float) -> bool:
        req = GpuRequest(count=it.gpus)
        got = self.placed.setdefault(it.name, {})
        held_before = len(got)
        for m in range(it.members):
            if m in got:
                continue
            reason, _ = placer.evaluate(self.s, req)
            ok = np.flatnonzero(reason == 0)
            if not len(ok):
                break
            free = self.s.gpu_free_milli[ok].sum(axis=1)
            best = ok[free == free.max()]
            p = placer.choose(self.s, self.s.names[int(self.rng.choice(best))], req)
            assert p is not None
            self.s.allocate(f"{it.name}/{m}", p)
            got[m] = now
            if it.gang:
                self.idle += it.gpus
        if len(got) < it.members:
            if it.gang and got:
                self.partial_seen(it)
            return False
        if not it.gang:
            self.r.singles_placed += 1
            return True
        if held_before:
            self.partial_seen(it)
        self.idle -= it.total_gpus
        self.r.idle_gpu_hours += sum(now - t0 for t0 in got.values()) * it.gpus
        nodes = [self.s.allocations[f"{it.name}/{m}"].node for m in range(it.members)]
        self.gang_done(it, now, nodes)
        return True

    def partial_seen(self, it: Item) -> None:
        if it.name not in self.partial:
            self.partial.add(it.name)
            self.r.partial_ever += 1

    def gang_done(self, it: Item, now: float, nodes: list[str]) -> None:
        self.r.placed += 1
        self.r.smallest += smallest_domain(nodes, it.members)
        self.r.waits.append(now - it.arrival)


def _pct(a: float, b: float) -> str:
    return f"{a / b:.0%}" if b else "-"


COLUMNS = ("arm", "seed", "gangs placed", "in smallest domain", "in tightest domain with room", "GPU allocation", "of it doing work",
           "single pods placed", "partial gangs (ever / at end)", "idle GPU-h in partial gangs",
           "wait to full placement p50 / max (h)", "plan ms p50")  # fmt: skip


def row(arm: str, seed: str, rs: list[SimResult]) -> list[str]:
    waits = [w for r in rs for w in r.waits]
    ms = [m for r in rs for m in r.plan_ms]
    n = len(rs)
    return [
        arm,
        seed,
        f"{sum(r.placed for r in rs) / n:.1f}/{sum(r.gangs for r in rs) / n:.1f}" if n > 1
        else f"{rs[0].placed}/{rs[0].gangs}",
        _pct(sum(r.smallest for r in rs), sum(r.placed for r in rs)),
        _pct(sum(r.tightest for r in rs), sum(r.placed for r in rs)) if arm != KSCHED else "-",
        f"{statistics.mean(r.alloc for r in rs):.1%}",
        f"{statistics.mean(r.busy for r in rs):.1%}",
        _pct(sum(r.singles_placed for r in rs), sum(r.singles for r in rs)),
        f"{sum(r.partial_ever for r in rs) / n:g} / {sum(r.partial_end for r in rs) / n:g}",
        f"{statistics.mean(r.idle_gpu_hours for r in rs):.1f}",
        f"{statistics.median(waits):.2f} / {max(waits):.1f}" if waits else "-",
        f"{statistics.median(ms):.1f}" if ms else "-",
    ]  # fmt: skip


def markdown(title: str, columns: Iterable[str], rows: list[list[str]]) -> str:
    cols = list(columns)
    lines = [f"### {title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def sim_main(a: argparse.Namespace) -> None:
    plan_gang(cluster(), [Member("w", GpuRequest(count=8))], need=1, rows=np.arange(4))  # compile / load
    results = {arm: [Sim(arm, seed, workload(seed, a.arrivals, load=a.load)).run() for seed in range(a.seeds)]
               for arm in ARMS}  # fmt: skip
    title = (f"gang placement (simulator): {CLIQUES * PER_CLIQUE} nodes x 8 GPUs in {CLIQUES} cliques of "
             f"{PER_CLIQUE}, racks of {CLIQUES_PER_RACK} cliques; {a.arrivals} arrivals per seed "
             f"({GANG_SHARE:.0%} gangs of {min(GANG_SIZES)}-{max(GANG_SIZES)} x 8 GPUs, the rest single pods of "
             f"1-8 GPUs), offered load {a.load:g}x")  # fmt: skip
    per_seed = [row(arm, str(r.seed), [r]) for arm in ARMS for r in results[arm]]
    means = [row(arm, f"mean of {a.seeds}", results[arm]) for arm in ARMS]
    console = Console(width=240)
    for caption, rows in (("per seed", per_seed), (f"mean over seeds 0-{a.seeds - 1}", means)):
        table = Table(title=f"{title}: {caption}")
        for col in COLUMNS:
            table.add_column(col, justify="right")
        for r in rows:
            table.add_row(*r)
        console.print(table)
    if a.out:
        cmd = f".venv/bin/python bench/gang.py --seeds {a.seeds} --arrivals {a.arrivals} --load {a.load:g}"
        text = f"`{cmd}`\n\n" + markdown(f"{title}: mean", COLUMNS, means) + "\n"
        text += markdown("per seed", COLUMNS, per_seed)
        Path(a.out).write_text(text)


def scale_main(a: argparse.Namespace) -> None:
    """Planner cost as the cluster grows: one 8 x 8-GPU gang planned on n HGX H100 nodes (cliques of 8,
    racks of 16), half of them running four 1-GPU pods; the scratch copy's share of it, beside what
    copy.deepcopy (the planner's copy before ClusterState.scratch) costs on the same state."""
    import copy

    table = Table(title="gang planner cost (placement_core.gangplan.plan_gang, median of 5)")
    for col in ("nodes", "allocations", "plan_gang ms", "of it: scratch copy ms", "copy.deepcopy ms"):
        table.add_column(col, justify="right")
    rows = []
    for n in (64, 1000, 5000):
        s = ClusterState(max_gpus=GPUS_PER_NODE, capacity=n)
        for i in range(n):
            gpus = [GpuSpec(g, H100.memory_mib) for g in range(GPUS_PER_NODE)]
            s.upsert_node(NodeSpec(f"n{i}", H100, gpus, cpu_milli=224000, memory_mib=2_000_000,
                                   clique=f"c{i // 8}", rack=f"r{i // 16}", zone="z"))  # fmt: skip
        for i in range(0, n, 2):
            for k in range(4):
                p = placer.choose(s, f"n{i}", GpuRequest(count=1))
                assert p is not None
                s.allocate(f"p{i}/{k}", p)
        members = [Member(f"m{j}", GpuRequest(count=8)) for j in range(8)]

        def ms(fn: object) -> float:
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                fn()  # type: ignore[operator]
                times.append((time.perf_counter() - t0) * 1000)
            return statistics.median(times)

        plan = ms(lambda: plan_gang(s, members, need=8, rows=np.arange(s.n_rows)))  # noqa: B023
        rows.append([str(n), str(len(s.allocations)), f"{plan:.0f}", f"{ms(s.scratch):.1f}",
                     f"{ms(lambda: copy.deepcopy(s)):.0f}"])  # noqa: B023  # fmt: skip
    for r in rows:
        table.add_row(*r)
    Console(width=160).print(table)
    if a.out:
        cols = ("nodes", "allocations", "plan_gang ms", "of it: scratch copy ms", "copy.deepcopy ms")
        Path(a.out).write_text(
            "`.venv/bin/python bench/gang.py --scale`\n\n" + markdown(table.title or "", cols, rows)
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--arrivals", type=int, default=300)
    ap.add_argument("--load", type=float, default=1.2, help="offered GPU work / cluster GPUs")
    ap.add_argument("--out", help="also write the tables as markdown here")
    ap.add_argument(
        "--scale", action="store_true", help="print the planner's cost at 64, 1000 and 5000 nodes"
    )
    ap.add_argument("--real", action="store_true", help="run on the local control plane (bench/gang_real.py)")
    ap.add_argument("--items", type=int, default=36, help="--real: arrivals per seed")
    ap.add_argument("--span", type=float, default=50.0, help="--real: seconds over which they arrive")
    ap.add_argument(
        "--tail", type=float, default=25.0, help="--real: seconds measured after the last arrival"
    )
    ap.add_argument(
        "--arms", help=f"--real: comma-separated arms (default: {GPUPLACE}, {NO_TOPOLOGY}, {KSCHED})"
    )
    a = ap.parse_args()
    if a.scale:
        scale_main(a)
    elif a.real:
        from gang_real import real_main

        real_main(a)
    else:
        sim_main(a)


if __name__ == "__main__":
    main()
