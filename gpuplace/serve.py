"""`gpuplace serve --config FILE`: the extender (and, when enabled, the admission webhook) in one process.

Why one process, two listeners: the extender is called by kube-scheduler over plain HTTP or HTTPS on
its port (with /healthz, /readyz and /metrics beside it); the webhook must be HTTPS with a certificate
the API server trusts and is routed by a Service on 443 — separate ports keep their TLS, probes and
network policies independent. Both share one Kubernetes client and one metrics registry.

Replicas: with `leader_election.enabled` the extender campaigns for a Lease (scheduler/leader.py);
followers keep their cache warm but refuse the verbs and report not ready, and a leader that loses its
lease closes every connection and exits (status 1) so it restarts as a follower. A process with only
`webhook_server` enabled is the webhook Deployment: its /healthz, /readyz and /metrics are on the plain
HTTP `webhook_server.ops_port`, ready as soon as it serves its certificate.

Exit codes: 0 after SIGTERM/SIGINT, 2 for an unusable configuration (the field is named on stderr),
1 when the service fails to start (e.g. the kubeconfig cannot be loaded or the port is taken) or the
extender lost its leadership.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from gpuplace import numba_cache
from gpuplace.certctl import CertController
from gpuplace.config import ConfigError, GpuplaceConfig, LoggingSettings, load_config
from gpuplace.registration import Registrar
from scheduler.context import ExtenderContext
from scheduler.gang import KubePlanStore
from scheduler.http import make_extender_app
from scheduler.kubeapi import KubeBinder, KubeSource, make_api_client
from scheduler.leader import LeaderBinder, LeaseRole, Role, Standalone, campaign
from scheduler.metrics import Metrics
from scheduler.service import attach_background

log = logging.getLogger("gpuplace.serve")


class LeadershipLostError(RuntimeError):
    """The extender's lease ran out: stop serving (the process restarts as a follower)."""


def setup_logging(s: LoggingSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if s.json_format:
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(s.level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def _ssl(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


async def _start(app: web.Application, host: str, port: int, tls: ssl.SSLContext | None) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, ssl_context=tls, reuse_address=True).start()
    except BaseException:  # e.g. the port is taken: stop what setup started (the watch tasks)
        await runner.cleanup()
        raise
    log.info("listening on %s://%s:%d", "https" if tls else "http", host, port)
    return runner


async def _webhook_runner(cfg: GpuplaceConfig, api: Any, metrics: Metrics) -> list[web.AppRunner] | None:
    """--- WEBHOOK HOOK --- mounts webhook.http.make_webhook_app on its own HTTPS port.

    Imported lazily so the extender runs without the webhook package; disabled unless
    `webhook_server.enabled`. Certificates follow their files (webhook.tls.ReloadingTLS); with
    `certificates.mode: self-managed` gpuplace/certctl.py keeps those files equal to its Secret first.
    With `registration`, gpuplace/registration.py registers the webhook once it serves (see there).
    With `ops_port`, /healthz /readyz /metrics are served on plain HTTP beside it."""
    ws = cfg.webhook_server
    if not ws.enabled:
        return None
    try:
        from webhook.http import METRICS_KEY, make_webhook_app
        from webhook.owners import KubeOwners
        from webhook.tls import ReloadingTLS, reload_ctx
    except ImportError as e:
        raise RuntimeError(
            f"webhook_server.enabled is set but the webhook package is unavailable: {e}"
        ) from None
    assert ws.cert_file is not None and ws.key_file is not None
    certs: CertController | None = None
    if ws.certificates.mode == "self-managed":
        owner = ws.registration.owner_cluster_role if ws.registration is not None else None
        certs = CertController(
            api, ws.certificates, cert_file=ws.cert_file, key_file=ws.key_file, owner_cluster_role=owner
        )
        await certs.sync()  # the first pair must exist before the TLS site starts
    settings: Any = cfg.webhook
    owners = KubeOwners(
        api_client=api,
        ttl_seconds=settings.owner_cache_ttl_seconds,
        timeout_seconds=settings.owner_lookup_timeout_seconds,
    )
    tls = ReloadingTLS(cert_file=ws.cert_file, key_file=ws.key_file)
    if certs is not None:
        certs.on_files_changed = tls.reload_if_changed
    app = make_webhook_app(settings=settings, owners=owners, registry=metrics.registry)
    reviews = app[METRICS_KEY].reviews  # error series at 0 from the start (alerts: files/alerts.yaml)
    for reason in ("malformed", "too_large", "internal"):
        reviews.labels("error", reason)
    app.cleanup_ctx.append(reload_ctx(tls))
    registrar = Registrar(api, ws.registration) if ws.registration is not None else None
    if certs is not None or registrar is not None:
        app.cleanup_ctx.append(_task_ctx(_keep_certificates(ws, certs, registrar), "webhook-certificates"))
    runners = [await _start(app, ws.host, ws.port, tls.context)]
    if ws.ops_port is not None:
        runners.append(await _start(_ops_app(metrics), ws.host, ws.ops_port, None))
    return runners


def _ops_app(metrics: Metrics) -> web.Application:
    """/healthz, /readyz, /metrics of a webhook-only process. Ready once this process is serving: the TLS
    site starts only after a certificate was loaded, and nothing here waits for informers."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def scrape(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/healthz", ok)
    app.router.add_get("/readyz", ok)
    app.router.add_get("/metrics", scrape)
    return app


async def _keep_certificates(ws: Any, certs: CertController | None, registrar: Registrar | None) -> None:
    """Rotate (self-managed) and keep the registration's caBundle current, forever; errors are logged."""
    while True:
        try:
            bundle = certs.bundle if certs is not None else None
            if certs is not None:
                bundle = (await certs.sync()).bundle
            if registrar is not None:
                if bundle is None:
                    ca_file = ws.registration.ca_file
                    bundle = ca_file.read_bytes() if ca_file is not None else None
                if bundle is None:
                    raise RuntimeError(
                        "registration needs a caBundle: set webhook_server.registration.ca_file"
                    )
                await registrar.ensure(bundle)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning("webhook certificate/registration sync failed (will retry): %s", e)
        periods = [
            x.resync_seconds for x in (ws.certificates if certs else None, ws.registration) if x is not None
        ]
        await asyncio.sleep(min(periods))


def _task_ctx(coro: Any, name: str) -> Any:
    async def ctx(_: web.Application) -> Any:
        task = asyncio.create_task(coro, name=name)
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx


async def serve(cfg: GpuplaceConfig, stop: asyncio.Event | None = None) -> None:
    """Run until `stop` is set (or SIGTERM/SIGINT); raise LeadershipLostError when the lease is lost."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    api = await make_api_client(cfg.kubernetes.kubeconfig, cfg.kubernetes.context)
    runners: list[web.AppRunner] = []
    background: list[asyncio.Task[Any]] = []
    lost = False
    try:
        s = cfg.scheduler
        metrics = Metrics(s.metrics)
        if s.enabled:
            binder: Any = KubeBinder(api, timeout=s.bind_timeout_seconds)
            role: Role
            if cfg.leader_election.enabled:
                lease_role = LeaseRole(cfg.leader_election, registry=metrics.registry)
                role, binder = lease_role, LeaderBinder(binder, lease_role)
            else:
                role = Standalone(registry=metrics.registry)
            store = KubePlanStore(api) if s.gang.store == "configmap" else None
            ctx = ExtenderContext.build(s, binder, metrics=metrics, plan_store=store)
            app = make_extender_app(ctx, role)
            attach_background(app, KubeSource(api))
            tls = _ssl(s.tls.cert_file, s.tls.key_file) if s.tls else None
            extender = await _start(app, s.host, s.port, tls)
            runners.append(extender)
            if cfg.leader_election.enabled:
                background.append(
                    asyncio.create_task(campaign(api, lease_role, ready=lambda: ctx.synced), name="campaign")
                )
        webhook = await _webhook_runner(cfg, api, metrics)
        if webhook is not None:
            runners.extend(webhook)
        if not runners:
            raise RuntimeError(
                "nothing to serve: scheduler.enabled and webhook_server.enabled are both false"
            )
        stopping = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopping, *background], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        lost = any(t.get_name() == "campaign" for t in done)
        if lost:
            _close_connections(runners[0])
        for t in done:
            if t is not stopping and not t.cancelled() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
        log.info("stopping")
    finally:
        for t in background:
            t.cancel()
        for r in reversed(runners):
            await r.cleanup()
        await api.close()
    if lost:
        raise LeadershipLostError("lost the extender lease; exiting to restart as a follower")


def _close_connections(runner: web.AppRunner) -> None:
    """Close every open connection at once, idle keep-alive ones included: kube-scheduler must reconnect
    (through the Service, to the new leader) rather than reuse a connection to this replica."""
    server = runner.server
    for handler in list(server.connections) if server is not None else []:
        handler.force_close()
        if handler.transport is not None:
            handler.transport.close()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="gpuplace serve", description="Run the scheduler extender and webhook.")
    ap.add_argument("--config", type=Path, help="YAML configuration file (see scheduler/README.md)")
    ap.add_argument("--check-config", action="store_true", help="validate, print the effective config, exit")
    ns = ap.parse_args(argv)
    try:
        cfg = load_config(ns.config)
    except ConfigError as e:
        print(f"gpuplace serve: {e}", file=sys.stderr)
        return 2
    if ns.check_config:
        print(yaml.safe_dump(cfg.model_dump(mode="json", by_alias=True), sort_keys=False), end="")
        return 0
    setup_logging(cfg.logging)
    numba_cache.seed()  # before the first kernel runs (warm-up); see gpuplace/numba_cache.py
    try:
        asyncio.run(serve(cfg))
    except KeyboardInterrupt:
        return 0
    except LeadershipLostError as e:
        log.error("%s", e)
        return 1
    except Exception as e:
        log.error("gpuplace serve failed: %s", e, exc_info=log.isEnabledFor(logging.DEBUG))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
