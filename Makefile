# Developer shortcuts; each one matches a tox env or a README command.
PY ?= .venv/bin/python

.PHONY: help venv run worker test unit local lint format manifests image bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

venv: ## create .venv with every extra installed
	python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'

run: ## run the API on :8080
	$(PY) -m service

worker: ## run one job worker
	$(PY) -m service.worker

test: ## the README's test command: unit tests and local acceptance
	$(PY) -m tox -e py

unit: ## unit and HTTP tests only
	$(PY) -m pytest tests

local: ## acceptance features on the local target
	$(PY) -m pytest features --target local

lint: ## ruff and mypy
	$(PY) -m ruff check . && $(PY) -m mypy

format: ## ruff format
	$(PY) -m ruff format .

manifests: ## render and validate every overlay
	$(PY) -m tox -e manifests

image: ## build the image and prove it serves
	$(PY) -m tox -e image

bench: ## benchmarks; results go to bench/results and the README
	$(PY) bench/service_bench.py

clean: ## remove build and test leftovers
	rm -rf .tox .pytest_cache .mypy_cache .ruff_cache artifacts build *.egg-info
