"""Start-to-ready of `gpuplace serve` (the extender) with the image's settings, with and without the
baked Numba cache (gpuplace/numba_cache.py). Prints a table.

Each run: an in-process fake API server with one node, then `python -m gpuplace.cli serve` in a fresh
process with NUMBA_CPU_NAME=generic and an empty NUMBA_CACHE_DIR, timed from spawn to the first 200 on
/readyz (informers listed and kernels warm). "baked": GPUPLACE_NUMBA_BAKED_CACHE points at kernels
compiled beforehand (what the Dockerfile does); "cold": nothing to copy, every kernel compiles.

    .venv/bin/python bench/start_to_ready.py [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.scheduler import objects as o
from tests.scheduler.fake_apiserver import FakeApiServer, write_kubeconfig


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def once(tmp: Path, baked: Path | None, kubeconfig: Path) -> float:
    port = _port()
    cfg = tmp / f"c{port}.yaml"
    cfg.write_text(
        f"kubernetes: {{kubeconfig: {kubeconfig}}}\nscheduler: {{host: 127.0.0.1, port: {port}}}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUPLACE_", "NUMBA_"))}
    env |= {"NUMBA_CACHE_DIR": str(tmp / f"run{port}"), "NUMBA_CPU_NAME": "generic"}
    if baked is not None:
        env["GPUPLACE_NUMBA_BAKED_CACHE"] = str(baked)
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gpuplace.cli", "serve", "--config", str(cfg), env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                        if r.status == 200:
                            return time.perf_counter() - t0
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
    finally:
        proc.terminate()
        await proc.wait()


async def main(runs: int) -> None:
    api = FakeApiServer()
    api.put("nodes", o.node("n1"))
    runner = web.AppRunner(api.app())
    await runner.setup()
    port = _port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        kubeconfig = write_kubeconfig(tmp / "kc", f"http://127.0.0.1:{port}")
        baked = tmp / "baked"
        env = {**os.environ, "NUMBA_CACHE_DIR": str(baked), "NUMBA_CPU_NAME": "generic"}
        warmup = [sys.executable, "-c", "from placement_core import placer; placer.warmup()"]
        await asyncio.to_thread(subprocess.run, warmup, env=env, check=True)
        rows = []
        for label, cache in (("baked cache (image)", baked), ("cold (no cache)", None)):
            times = [await once(tmp, cache, kubeconfig) for _ in range(runs)]
            rows.append((label, min(times), sorted(times)[len(times) // 2], max(times)))
    await runner.cleanup()
    print(f"| start-to-ready of gpuplace serve ({runs} runs) | min | median | max |\n|---|---|---|---|")
    for label, lo, med, hi in rows:
        print(f"| {label} | {lo:.2f} s | {med:.2f} s | {hi:.2f} s |")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    asyncio.run(main(ap.parse_args().runs))
