# Everything the project needs is installed from here: a pinned uv (from PyPI) builds .venv from uv.lock.
SHELL := bash
PY ?= python3.11
UV_VERSION := 0.13.9
UV := .tools/bin/uv
VENV := .venv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
export NUMBA_CACHE_DIR ?= $(CURDIR)/.numba_cache

.PHONY: venv lint typecheck imports unit test e2e e2e-binaries localcluster demo bench clean

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

typecheck: venv
	$(VENV)/bin/mypy

imports: venv
	$(VENV)/bin/lint-imports

e2e-binaries:
	bash deploy/local/build.sh

## The test command (README and .ci/run call exactly this): lint, types, import contracts, unit + e2e tests.
test: lint typecheck imports e2e-binaries
	$(VENV)/bin/pytest

unit: venv
	$(VENV)/bin/pytest -m "not e2e"

e2e: venv e2e-binaries
	$(VENV)/bin/pytest -m e2e

localcluster: venv e2e-binaries
	$(VENV)/bin/python -m gpuplace.localcluster

demo: venv e2e-binaries
	$(VENV)/bin/gpuplace demo $(DEMO_ARGS)

clean:
	rm -rf $(VENV) .tools .numba_cache .pytest_cache .mypy_cache .ruff_cache
