"""The webhook's HTTP face: `POST /mutate` decodes, asks the engine, encodes. Nothing else.

Why so thin: every decision lives in `engine.evaluate`, which knows no HTTP; this module maps its
exceptions to status codes and counts outcomes. The contract with kube-apiserver:
- 200 with an AdmissionReview for every review it can answer, including denials and version refusals;
- 400 with a plain-text message for bodies that are not an AdmissionReview, 413 past the size limit;
- 500 with a short message for a bug (logged with its traceback); the process keeps serving.
With `failurePolicy: Fail` a non-200 rejects the pod, which is the intended fail-closed behaviour for
GPU pods only (see deploy/webhook/README.md).

Metrics (prometheus_client, into the registry passed in so tests can use a fresh one):
- `gpuplace_webhook_reviews_total{outcome, reason}`: outcome patched | unchanged | denied | error;
  reason is set for denied (requests_limits_conflict, gang_conflict, invalid_gang_annotation,
  unsupported_version) and error (malformed, too_large, internal);
- `gpuplace_webhook_review_duration_seconds`: time from request start to response, all outcomes.
"""

from __future__ import annotations

import logging
import time

import orjson
from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from webhook.engine import Verdict, evaluate
from webhook.errors import ReviewError
from webhook.owners import Owners
from webhook.settings import WebhookSettings

log = logging.getLogger(__name__)

MUTATE_PATH = "/mutate"
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class WebhookMetrics:
    """The webhook's Prometheus metrics, registered in `registry`."""

    def __init__(self, *, registry: CollectorRegistry) -> None:
        self.reviews = Counter(
            "gpuplace_webhook_reviews",
            "AdmissionReviews answered, by outcome (patched, unchanged, denied, error) and reason.",
            ["outcome", "reason"],
            registry=registry,
        )
        self.duration = Histogram(
            "gpuplace_webhook_review_duration_seconds",
            "Time to answer one AdmissionReview, from request start to response.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


SETTINGS_KEY = web.AppKey("gpuplace_webhook_settings", WebhookSettings)
OWNERS_KEY: web.AppKey[Owners] = web.AppKey("gpuplace_webhook_owners")
METRICS_KEY = web.AppKey("gpuplace_webhook_metrics", WebhookMetrics)


def make_webhook_app(
    *, settings: WebhookSettings, owners: Owners, registry: CollectorRegistry = REGISTRY
) -> web.Application:
    """The webhook as an aiohttp application: `POST /mutate` and `GET /healthz`.

    Serve it on its own HTTPS site (see webhook.tls); the metrics go into `registry`, which the app
    layer exposes on its /metrics endpoint.
    """
    app = web.Application(client_max_size=settings.max_review_bytes)
    app[SETTINGS_KEY] = settings
    app[OWNERS_KEY] = owners
    app[METRICS_KEY] = WebhookMetrics(registry=registry)
    app.router.add_post(MUTATE_PATH, handle_mutate)
    app.router.add_get("/healthz", handle_healthz)
    return app


async def handle_mutate(request: web.Request) -> web.Response:
    started = time.perf_counter()
    metrics = request.app[METRICS_KEY]
    try:
        response = await _answer(request, metrics)
    finally:
        metrics.duration.observe(time.perf_counter() - started)
    return response


async def _answer(request: web.Request, metrics: WebhookMetrics) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _error(
            metrics, 413, "too_large", f"AdmissionReview larger than {settings.max_review_bytes} bytes"
        )
    try:
        review = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return _error(metrics, 400, "malformed", f"body is not JSON: {exc}")
    owners = request.app[OWNERS_KEY]
    try:
        verdict: Verdict = await evaluate(review, settings=settings, owners=owners)
    except ReviewError as exc:
        return _error(metrics, 400, "malformed", f"not a valid AdmissionReview: {exc}")
    except Exception:
        log.exception("gpuplace webhook failed on a review")
        return _error(metrics, 500, "internal", "internal error in the gpuplace webhook; see its log")
    metrics.reviews.labels(verdict.outcome, verdict.reason).inc()
    if verdict.outcome == "denied":
        log.info("denied a pod: %s", verdict.response["response"]["status"]["message"])
    return web.Response(body=orjson.dumps(verdict.response), content_type="application/json")


def _error(metrics: WebhookMetrics, status: int, reason: str, message: str) -> web.Response:
    metrics.reviews.labels("error", reason).inc()
    return web.Response(status=status, text=message)


async def handle_healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")
