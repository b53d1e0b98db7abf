"""Seed Numba's cache directory from the kernels compiled into the image, at process start.

Why: with a read-only root filesystem the image's cache cannot be NUMBA_CACHE_DIR itself: Numba skips
a cache directory it cannot write (numba/core/caching.py, `_CacheLocator.ensure_cache_path` fails and
the next locator is tried), so every start would compile every kernel again (seconds to a minute,
during which the extender is not ready). The Dockerfile therefore bakes the cache into
GPUPLACE_NUMBA_BAKED_CACHE and `seed()` copies it into the writable NUMBA_CACHE_DIR (an emptyDir) before
the first kernel runs. Numba's cache key includes the CPU name and features, so NUMBA_CPU_NAME=generic
is set at build and at run time (Dockerfile) — otherwise a node whose CPU differs from the build
machine's would not match a single entry.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger("gpuplace.numba_cache")
BAKED_ENV = "GPUPLACE_NUMBA_BAKED_CACHE"


def seed(environ: dict[str, str] | None = None) -> int:
    """Copy the baked cache's files that NUMBA_CACHE_DIR lacks; returns how many were copied."""
    env = os.environ if environ is None else environ
    baked, target = env.get(BAKED_ENV), env.get("NUMBA_CACHE_DIR")
    if not baked or not target or Path(baked).resolve() == Path(target).resolve() or not Path(baked).is_dir():
        return 0
    copied = 0
    for src in Path(baked).rglob("*"):
        dst = Path(target) / src.relative_to(baked)
        if src.is_dir():
            dst.mkdir(parents=True, exist_ok=True)
        elif not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)  # contents only: the copies must be writable by this user
            copied += 1
    log.info("seeded %s with %d compiled kernels from %s", target, copied, baked)
    return copied
