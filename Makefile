# Everyday commands. Each bootstraps what it needs: a pinned uv in .tools/, then the locked env in .venv/.
UV_VERSION := 0.13.8
UV := .tools/bin/uv
export UV_PROJECT_ENVIRONMENT := .venv

.PHONY: help setup run demo-distributed test test-fast lint format ui clean bench

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(UV):
	python3 -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)

# Bytecode is compiled once here: with PYTHONDONTWRITEBYTECODE set (as on CI), every process would recompile Dagster (~1.5 s a start).
setup: $(UV)  ## install the locked dependencies into .venv, bytecode compiled
	$(UV) sync --frozen --compile-bytecode

run: setup  ## the demo: generate sample data into ./demo-lakehouse and run everything
	$(UV) run --frozen lakehouse demo

demo-distributed: setup  ## the demo off one machine's disk: S3 server, PostgreSQL instance, Redis, two Celery workers (docs/deployment.md)
	$(UV) run --frozen python deploy/demo_distributed.py

# Two workers, each test file on one (module fixtures stay shared): most of the suite's time is e2e tests waiting on Dagster.
test: setup  ## the whole test suite, on two workers
	$(UV) run --frozen pytest -n 2 --dist loadfile

test-fast: setup  ## unit, engine, property and in-process Dagster tests (every folder but e2e/ and benchmarks/)
	$(UV) run --frozen pytest -m "not e2e and not bench"

lint: setup  ## ruff lint and format check, mypy, the import contracts (pyproject.toml [tool.importlinter])
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy
	$(UV) run --frozen lint-imports --no-cache

format: setup  ## apply ruff's fixes and formatting
	$(UV) run --frozen ruff check --fix .
	$(UV) run --frozen ruff format .

BENCH_SIZE ?= full
bench: setup  ## the benchmark suite (BENCH_SIZE=full|medium|smoke); results in benchmarks/results/
	$(UV) run --frozen python -m benchmarks --size $(BENCH_SIZE)

LAKEHOUSE_ROOT ?= demo-lakehouse
ui: setup  ## the Dagster UI and daemon on $LAKEHOUSE_ROOT (default: the demo), loopback only; Ctrl-C stops both
	$(UV) run --frozen lakehouse ui --root "$(LAKEHOUSE_ROOT)"

clean:  ## remove environments and demo data
	rm -rf .tools .venv demo-lakehouse .lakehouse
