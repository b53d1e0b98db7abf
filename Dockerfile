# gpuplace service image. Not built on the development machines (they have no Docker engine); the same
# steps (uv sync --frozen from uv.lock, Numba cache warm-up) run in `make test` on every CI run.
FROM python:3.11-slim AS build
ENV UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/opt/gpuplace UV_COMPILE_BYTECODE=1
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY placement_core placement_core
COPY scheduler scheduler
COPY webhook webhook
COPY gpuplace gpuplace
RUN uv sync --frozen --no-dev --no-editable
# Compile every Numba kernel into the image so the first request after start is not a compile.
# Numba's cache key includes the CPU name and features: NUMBA_CPU_NAME=generic here AND at run time,
# or a node with another CPU than the build machine ignores the whole cache and compiles again.
ENV NUMBA_CACHE_DIR=/opt/gpuplace-numba-cache NUMBA_CPU_NAME=generic
RUN /opt/gpuplace/bin/python -c "from placement_core import placer; placer.warmup()"

FROM python:3.11-slim
COPY --from=build /opt/gpuplace /opt/gpuplace
COPY --from=build /opt/gpuplace-numba-cache /opt/gpuplace-numba-cache
RUN useradd --uid 65532 --no-create-home gpuplace
USER 65532
# Read-only root filesystem: Numba skips a cache directory it cannot write, so the kernels baked above
# are copied at start (gpuplace/numba_cache.py, GPUPLACE_NUMBA_BAKED_CACHE) into NUMBA_CACHE_DIR, a
# writable emptyDir in the chart; the image's own copy stays read-only.
ENV PATH=/opt/gpuplace/bin:$PATH PYTHONUNBUFFERED=1 NUMBA_CPU_NAME=generic \
    NUMBA_CACHE_DIR=/var/cache/numba GPUPLACE_NUMBA_BAKED_CACHE=/opt/gpuplace-numba-cache
ENTRYPOINT ["gpuplace"]
CMD ["serve", "--config", "/etc/gpuplace/config.yaml"]
