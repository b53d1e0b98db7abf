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
ENV NUMBA_CACHE_DIR=/opt/numba-cache
RUN /opt/gpuplace/bin/python -c "from placement_core import placer; placer.warmup()"

FROM python:3.11-slim
COPY --from=build /opt/gpuplace /opt/gpuplace
COPY --from=build /opt/numba-cache /opt/numba-cache
# The cache dir must stay writable (new specialisations are cached at run time); it is owned by the
# runtime user, and NUMBA_CACHE_DIR can point elsewhere (e.g. an emptyDir) when the root fs is read-only.
RUN useradd --uid 65532 --no-create-home gpuplace && chown -R 65532 /opt/numba-cache
USER 65532
ENV PATH=/opt/gpuplace/bin:$PATH NUMBA_CACHE_DIR=/opt/numba-cache PYTHONUNBUFFERED=1
ENTRYPOINT ["gpuplace"]
CMD ["serve", "--config", "/etc/gpuplace/config.yaml"]
