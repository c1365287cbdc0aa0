# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both build .venv from requirements.lock (exact versions) when it is missing or stale.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
UV_VERSION := 0.13.8
STAMP := $(VENV)/.edgeops-installed
BIN := $(VENV)/bin

export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 3
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
# The console shows Prefect's warnings and up; flow runs still log at INFO to the Prefect API/UI.
export PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL ?= WARNING

.PHONY: venv demo test test-fast lint bench repro up up-pg down clean browser

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip sync -q --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

demo: $(STAMP) browser
	$(BIN)/edgeops demo

# The fleet view, the web target and the browser cohort need Debian's Chromium and onnxruntime-web
# (npm, from web/package-lock.json): installed here when missing.
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	@test -f web/node_modules/onnxruntime-web/dist/ort.wasm.min.js || (cd web && npm ci --no-audit --no-fund)

test: $(STAMP) browser
	$(BIN)/python -m pytest -q -ra -n 2 --dist load --maxschedchunk 1

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

repro: $(STAMP)
	test -d data/digits || $(BIN)/edgeops data example data/digits
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

# `make up`: Prefect server + worker and MLflow server on loopback, embedded SQLite and local folders.
# `make up-pg`: the full stack: PostgreSQL for MLflow and Prefect, S3 (a local moto server) for
# MLflow artifacts and the object store. Extra flags for either: make up ARGS="--mlflow-port 5001".
up: $(STAMP)
	$(BIN)/edgeops up $(ARGS)

up-pg: $(STAMP)
	$(BIN)/edgeops up --postgres --prefect-postgres --s3 $(ARGS)

down: $(STAMP)
	$(BIN)/edgeops down

clean:
	rm -rf .edgeops build mlruns
