"""`gpuplace serve --config FILE`: the extender (and, when enabled, the admission webhook) in one process.

Why one process, two listeners: the extender is called by kube-scheduler over plain HTTP or HTTPS on
its port (with /healthz, /readyz and /metrics beside it); the webhook must be HTTPS with a certificate
the API server trusts and is routed by a Service on 443 — separate ports keep their TLS, probes and
network policies independent. Both share one Kubernetes client and one metrics registry.

Exit codes: 0 after SIGTERM/SIGINT, 2 for an unusable configuration (the field is named on stderr),
1 when the service fails to start (e.g. the kubeconfig cannot be loaded or the port is taken).
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

from gpuplace.config import ConfigError, GpuplaceConfig, LoggingSettings, load_config
from scheduler.context import ExtenderContext
from scheduler.gang import KubePlanStore
from scheduler.http import make_extender_app
from scheduler.kubeapi import KubeBinder, KubeSource, make_api_client
from scheduler.metrics import Metrics
from scheduler.service import attach_background

log = logging.getLogger("gpuplace.serve")


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
    await web.TCPSite(runner, host, port, ssl_context=tls, reuse_address=True).start()
    log.info("listening on %s://%s:%d", "https" if tls else "http", host, port)
    return runner


async def _webhook_runner(cfg: GpuplaceConfig, api: Any, metrics: Metrics) -> web.AppRunner | None:
    """--- WEBHOOK HOOK --- mounts webhook.http.make_webhook_app on its own HTTPS port.

    Imported lazily so the extender runs without the webhook package; disabled unless
    `webhook_server.enabled`. Certificates follow their files (webhook.tls.ReloadingTLS)."""
    ws = cfg.webhook_server
    if not ws.enabled:
        return None
    try:
        from webhook.http import make_webhook_app
        from webhook.owners import KubeOwners
        from webhook.tls import ReloadingTLS, reload_ctx
    except ImportError as e:
        raise RuntimeError(
            f"webhook_server.enabled is set but the webhook package is unavailable: {e}"
        ) from None
    assert ws.cert_file is not None and ws.key_file is not None
    settings: Any = cfg.webhook
    owners = KubeOwners(
        api_client=api,
        ttl_seconds=settings.owner_cache_ttl_seconds,
        timeout_seconds=settings.owner_lookup_timeout_seconds,
    )
    tls = ReloadingTLS(cert_file=ws.cert_file, key_file=ws.key_file)
    app = make_webhook_app(settings=settings, owners=owners, registry=metrics.registry)
    app.cleanup_ctx.append(reload_ctx(tls))
    return await _start(app, ws.host, ws.port, tls.context)


async def serve(cfg: GpuplaceConfig, stop: asyncio.Event | None = None) -> None:
    """Run until `stop` is set (or SIGTERM/SIGINT)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    api = await make_api_client(cfg.kubernetes.kubeconfig, cfg.kubernetes.context)
    runners: list[web.AppRunner] = []
    try:
        s = cfg.scheduler
        metrics = Metrics(s.metrics)
        if s.enabled:
            binder = KubeBinder(api, timeout=s.bind_timeout_seconds)
            store = KubePlanStore(api) if s.gang.store == "configmap" else None
            ctx = ExtenderContext.build(s, binder, metrics=metrics, plan_store=store)
            app = make_extender_app(ctx)
            attach_background(app, KubeSource(api))
            tls = _ssl(s.tls.cert_file, s.tls.key_file) if s.tls else None
            runners.append(await _start(app, s.host, s.port, tls))
        webhook = await _webhook_runner(cfg, api, metrics)
        if webhook is not None:
            runners.append(webhook)
        if not runners:
            raise RuntimeError(
                "nothing to serve: scheduler.enabled and webhook_server.enabled are both false"
            )
        await stop.wait()
        log.info("stopping")
    finally:
        for r in reversed(runners):
            await r.cleanup()
        await api.close()


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
    try:
        asyncio.run(serve(cfg))
    except KeyboardInterrupt:
        return 0
    except Exception as e:
        log.error("gpuplace serve failed: %s", e, exc_info=log.isEnabledFor(logging.DEBUG))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
