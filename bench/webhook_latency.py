"""Webhook latency on loopback HTTPS at a fixed request rate (open loop), GPU and non-GPU pods.

Why open loop: kube-apiserver sends reviews when pods are created, not when the previous answer came
back. Requests are sent on a fixed schedule (i / rate) whatever the answers do, so a server stall shows
up as latency of every request sent during it (no coordinated omission). Latency is measured from the
moment a request is handed to the client; how late the client itself was against the schedule (timer
granularity of a Python event loop, ~1 ms) is reported separately as "send lag", so that the client's
own delay is not counted against the webhook.

Setup: the webhook (webhook.http.make_webhook_app) runs in its own process with a development
certificate (webhook.devcerts); this process is the client (aiohttp, keep-alive pool, verifying the CA),
like kube-apiserver's webhook client. Pods are full apiserver-shaped objects (defaulted fields, projected
service-account volume), ~3 KB of JSON.

Scenarios:
- non-gpu: a CPU pod. With the shipped manifest these never reach the webhook; this is the fast path.
- gpu: a single GPU pod needing requests filled in and the toleration (a 2-operation patch).
- gpu-gang: a Job-owned GPU pod (gang of 8): the owner comes from DictOwners, i.e. the cost of a
  KubeOwners cache hit, not of an API read (the first member of each gang pays one read).

Usage: .venv/bin/python bench/webhook_latency.py [--rate 500] [--duration 10] [--check]
Prints a table (p50 / p99 / max in ms, errors, the client's send lag, and the share of reviews the
server's own latency histogram saw within 1 and 2 ms) and the in-process decision time per scenario.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import ssl
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from webhook.devcerts import make_dev_certs  # noqa: E402
from webhook.engine import evaluate  # noqa: E402
from webhook.owners import DictOwners  # noqa: E402
from webhook.settings import WebhookSettings  # noqa: E402

TARGET_P99_MS = 2.0
NAMESPACE = "team-a"
JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"name": "train", "namespace": NAMESPACE, "uid": "0b6e-job"},
    "spec": {"parallelism": 8, "completions": 8, "completionMode": "Indexed"},
}


def realistic_pod(resources: dict[str, Any], *, job: bool = False) -> dict[str, Any]:
    """A pod as kube-apiserver hands it to webhooks: defaults filled in, token volume projected."""
    metadata: dict[str, Any] = {
        "generateName": "train-",
        "namespace": NAMESPACE,
        "labels": {"app": "train", "team": "a"},
        "annotations": {"kubectl.kubernetes.io/default-container": "main"},
    }
    if job:
        metadata["labels"] |= {
            "batch.kubernetes.io/job-name": "train",
            "job-name": "train",
            "batch.kubernetes.io/job-completion-index": "3",
        }
        metadata["ownerReferences"] = [
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": "train",
                "uid": "0b6e-job",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    main = {
        "name": "main",
        "image": "nvcr.io/nvidia/pytorch:25.01-py3",
        "command": ["torchrun", "--nproc-per-node=8", "train.py"],
        "env": [{"name": f"VAR_{i}", "value": f"value-{i}"} for i in range(8)],
        "resources": resources,
        "volumeMounts": [
            {
                "name": "kube-api-access-abcde",
                "readOnly": True,
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
            }
        ],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    }
    projected = {
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {
                "downwardAPI": {
                    "items": [
                        {
                            "path": "namespace",
                            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                        }
                    ]
                }
            },
        ],
        "defaultMode": 420,
    }
    spec = {
        "volumes": [{"name": "kube-api-access-abcde", "projected": projected}],
        "containers": [main],
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "default",
        "serviceAccount": "default",
        "securityContext": {},
        "schedulerName": "default-scheduler",
        "tolerations": [
            {
                "key": "node.kubernetes.io/not-ready",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            },
            {
                "key": "node.kubernetes.io/unreachable",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            },
        ],
        "priority": 0,
        "enableServiceLinks": True,
        "preemptionPolicy": "PreemptLowerPriority",
    }
    return {"kind": "Pod", "apiVersion": "v1", "metadata": metadata, "spec": spec}


def review(pod: dict[str, Any], uid: str) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": NAMESPACE,
            "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:kube-system:job-controller",
                "uid": "1f2e",
                "groups": [
                    "system:serviceaccounts",
                    "system:serviceaccounts:kube-system",
                    "system:authenticated",
                ],
            },
            "object": pod,
            "oldObject": None,
            "dryRun": False,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    }


SCENARIOS: dict[str, tuple[dict[str, Any], bool]] = {
    # name: (pod, expect a patch)
    "non-gpu": (
        realistic_pod({"limits": {"cpu": "4", "memory": "8Gi"}, "requests": {"cpu": "4", "memory": "8Gi"}}),
        False,
    ),
    "gpu": (realistic_pod({"limits": {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": "8"}}), True),
    "gpu-gang": (
        realistic_pod({"limits": {"nvidia.com/gpu": "8"}, "requests": {"nvidia.com/gpu": "8"}}, job=True),
        True,
    ),
}


def serve(cert: str, key: str, conn: Connection) -> None:
    """The webhook server process: the real app on a real TLS socket."""
    from aiohttp import web
    from prometheus_client import CollectorRegistry, generate_latest

    from webhook.http import make_webhook_app
    from webhook.tls import ReloadingTLS

    async def main() -> None:
        tls = ReloadingTLS(cert_file=cert, key_file=key)
        registry = CollectorRegistry()
        app = make_webhook_app(settings=WebhookSettings(), owners=DictOwners([JOB]), registry=registry)

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(body=generate_latest(registry), content_type="text/plain")

        app.router.add_get("/bench-metrics", metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.context)
        await site.start()
        conn.send(runner.addresses[0][1])
        await asyncio.Event().wait()

    asyncio.run(main())


async def server_buckets(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """Cumulative counts of the webhook's own latency histogram, by upper bound (and "count")."""
    async with session.get(url) as response:
        text = await response.text()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "gpuplace_webhook_review_duration_seconds":
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    counts[sample.labels["le"]] = sample.value
                elif sample.name.endswith("_count"):
                    counts["count"] = sample.value
    return counts


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def load(
    session: aiohttp.ClientSession, url: str, name: str, *, rate: float, duration: float
) -> tuple[list[float], list[float], int]:
    pod, expect_patch = SCENARIOS[name]
    bodies = [orjson.dumps(review(pod, f"{name}-{i}")) for i in range(int(rate * duration))]
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    lags: list[float] = []
    errors = 0

    async def one(body: bytes, due: float) -> None:
        nonlocal errors
        sent = loop.time()
        lags.append(sent - due)
        try:
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
                answer = orjson.loads(await response.read())
            ok = (
                response.status == 200
                and answer["response"]["allowed"]
                and (("patch" in answer["response"]) == expect_patch)
            )
        except (aiohttp.ClientError, orjson.JSONDecodeError, KeyError, TypeError):
            ok = False
        latencies.append(loop.time() - sent)
        errors += not ok

    start = loop.time() + 0.05
    tasks = []
    for i, body in enumerate(bodies):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(body, due)))
    await asyncio.gather(*tasks)
    return latencies, lags, errors


async def decision_times(name: str, count: int = 3000) -> list[float]:
    pod, _ = SCENARIOS[name]
    settings, owners = WebhookSettings(), DictOwners([JOB])
    reviews = [orjson.loads(orjson.dumps(review(pod, str(i)))) for i in range(count)]
    times = []
    for item in reviews:
        started = time.perf_counter()
        await evaluate(item, settings=settings, owners=owners)
        times.append(time.perf_counter() - started)
    return times


async def run(args: argparse.Namespace, port: int, ca_file: Path) -> bool:
    context = ssl.create_default_context(cafile=str(ca_file))
    url, metrics_url = f"https://127.0.0.1:{port}/mutate", f"https://127.0.0.1:{port}/bench-metrics"
    rows = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context, limit=64)) as session:
        for name in args.scenarios:
            await load(
                session, url, name, rate=args.rate, duration=args.warmup
            )  # unmeasured: connections, caches
            before = await server_buckets(session, metrics_url)
            latencies, lags, errors = await load(session, url, name, rate=args.rate, duration=args.duration)
            after = await server_buckets(session, metrics_url)
            served = after["count"] - before["count"]
            within = [100 * (after[le] - before[le]) / served for le in ("0.001", "0.002")]
            ms, lag_ms = [value * 1000 for value in latencies], [value * 1000 for value in lags]
            p50, p99 = statistics.median(ms), percentile(ms, 0.99)
            rows.append((name, len(ms), errors, p50, p99, max(ms), percentile(lag_ms, 0.99), *within))
        engine = {name: await decision_times(name) for name in args.scenarios}

    print(
        f"\nwebhook latency, loopback HTTPS, open loop at {args.rate:g} req/s, {args.duration:g} s per scenario"
    )
    print(
        f"{'scenario':<10} {'requests':>8} {'errors':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'send lag p99':>13} {'server ≤1ms':>12} {'server ≤2ms':>12}"
    )
    for name, count, errors, p50, p99, worst, lag, le1, le2 in rows:
        print(
            f"{name:<10} {count:>8} {errors:>6} {p50:>8.3f} {p99:>8.3f} {worst:>8.3f} "
            f"{lag:>13.3f} {le1:>11.2f}% {le2:>11.2f}%"
        )
    print("(send lag p99: how late this client sent against the schedule, ms; server ≤X ms: share of reviews")
    print(" the webhook's own gpuplace_webhook_review_duration_seconds histogram saw answered within X ms)")
    print("\nin-process decision time (engine.evaluate, no HTTP)")
    print(f"{'scenario':<10} {'p50 µs':>8} {'p99 µs':>8}")
    for name, times in engine.items():
        us = [value * 1e6 for value in times]
        print(f"{name:<10} {statistics.median(us):>8.1f} {percentile(us, 0.99):>8.1f}")
    passed = all(row[2] == 0 and row[4] <= TARGET_P99_MS for row in rows)
    print(f"\ntarget p99 <= {TARGET_P99_MS} ms with no errors: {'met' if passed else 'NOT met'}")
    return passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second (default 500)")
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds measured per scenario (default 10)"
    )
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="seconds of unmeasured load first (default 2)"
    )
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument("--check", action="store_true", help="exit 1 if the p99 target is not met")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="gpuplace-bench-") as tmp:
        certs = make_dev_certs(tmp, sans=["IP:127.0.0.1"])
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        server = context.Process(target=serve, args=(str(certs.cert), str(certs.key), child), daemon=True)
        server.start()
        try:
            if not parent.poll(30):
                raise SystemExit("the webhook server did not start")
            passed = asyncio.run(run(args, parent.recv(), certs.ca_cert))
        finally:
            server.terminate()
            server.join(5)
    return 0 if passed or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
