# Everything the project needs is installed from here: a pinned uv (from PyPI) builds .venv from uv.lock.
SHELL := bash
PY ?= python3.11
UV_VERSION := 0.13.9
UV := .tools/bin/uv
VENV := .venv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Numba's cache does not notice when a kernel's callee in another module changes; keying the cache dir on
# the kernel sources makes a stale compiled kernel impossible.
export NUMBA_CACHE_DIR ?= $(CURDIR)/.numba_cache/$(shell cat placement_core/*.py placement_core/*/*.py gpuplace/simulate/*.py 2>/dev/null | sha1sum | cut -c1-12)

.PHONY: venv lint typecheck imports warm unit test e2e e2e-binaries deploy-tools kind-up localcluster demo bench clean

$(UV):
	$(PY) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --all-extras --python $(PY)
	touch $@

venv: $(VENV)/.synced

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check placement_core
	$(VENV)/bin/hadolint Dockerfile

typecheck: venv
	$(VENV)/bin/mypy

imports: venv
	$(VENV)/bin/lint-imports

e2e-binaries:
	bash deploy/local/build.sh

## helm, prometheus, promtool (one go build of deploy/local/tools) and kindconfig for the deploy tests
## (deploy/local/build-tools.sh; stamped per tool).
deploy-tools:
	bash deploy/local/build-tools.sh helm promtool prometheus kindconfig

## Compile (or load) every kernel the tests reach into NUMBA_CACHE_DIR once: the extender's (as the image
## build does: every gpuplace the tests start warms up from the cache in seconds instead of compiling) and the
## simulator's replay loop (minutes to compile on a loaded machine; tests/simulate and bench/upper_bound run it).
## pytest's summary names any kernel compiled during the tests anyway (tests/conftest.py).
warm: venv
	$(VENV)/bin/python -c "from placement_core import placer; placer.warmup()"
	$(VENV)/bin/python -c "from gpuplace.simulate import warmup; warmup.warmup()"

## The test command (README and .ci/run call exactly this): lint, types, import contracts, unit + e2e tests.
test: lint typecheck imports e2e-binaries deploy-tools warm
	$(VENV)/bin/pytest

unit: venv
	$(VENV)/bin/pytest -m "not e2e"

e2e: venv e2e-binaries deploy-tools warm
	$(VENV)/bin/pytest -m e2e

## A kind cluster with fake GPUs and gpuplace installed by the chart (UNTESTED here: no Docker engine).
kind-up:
	bash deploy/kind/kind-up.sh

localcluster: venv e2e-binaries warm
	$(VENV)/bin/python -m gpuplace.localcluster

demo: venv e2e-binaries warm
	$(VENV)/bin/gpuplace demo $(DEMO_ARGS)

## Benchmarks (each prints a table; see the issue notes for the figures): placement_core kernels,
## extender HTTP load, trace replay (all policies, all traces), webhook latency, scheduler throughput.
bench: venv e2e-binaries
	$(VENV)/bin/python bench/core_bench.py
	$(VENV)/bin/python bench/extender_load.py
	$(VENV)/bin/python bench/simulate.py --all
	$(VENV)/bin/python bench/webhook_latency.py
	$(VENV)/bin/python bench/scheduler_throughput.py

clean:
	rm -rf $(VENV) .tools .numba_cache .pytest_cache .mypy_cache .ruff_cache
