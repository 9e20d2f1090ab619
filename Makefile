# Developer shortcuts; each one matches a tox env or a README command.
PY ?= .venv/bin/python
# The cluster targets: the platform profile (milestone1, milestone2, milestone3, full, scale-to-zero), an
# existing cluster's kubeconfig context instead of a new kind cluster, and the size of a load run.
PROFILE ?= full
KUBE_CONTEXT ?=
USERS ?= 8
SECONDS ?= 60
# make bench RECORD=1 writes the committed results (bench/results) instead of artifacts/bench.
RECORD ?=
# make mutate FAST=1 runs only the mutations CI runs on every change.
FAST ?=
CONTEXT_ARG = $(if $(KUBE_CONTEXT),--kube-context $(KUBE_CONTEXT))

.PHONY: help venv lock mutate mutmut ci run worker test unit local lint format manifests image bench clean \
	cluster-up cluster-down kserve-install deploy-ocr load-test status plan milestone1 milestone2 milestone3

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

venv: ## create .venv from uv.lock (the dev extra: everything the tests and the harness use)
	uv sync --locked --extra dev

lock: ## update every lock to the newest allowed versions: uv.lock, then the compiled requirements
	uv lock --upgrade
	$(PY) -m harness lock export --upgrade

mutate: ## the whole mutation catalogue (FAST=1: the fast set CI runs); results in artifacts/mutate
	$(PY) -m harness mutate run $(if $(FAST),--fast)

mutmut: ## mutmut over the pure modules, held to its floor; results in artifacts/mutmut
	$(PY) -m harness mutscore

ci: ## every CI step, as .ci/run and the GitHub workflow run them (python -m harness ci list)
	$(PY) -m harness ci run

run: ## run the API on :8080
	$(PY) -m service

worker: ## run one job worker
	$(PY) -m service.jobs.worker

test: ## the README's test command: unit and HTTP tests (both cores), then local acceptance (CI's tests step)
	$(PY) -m harness ci run tests

unit: ## unit and HTTP tests only
	$(PY) -m pytest tests

local: ## acceptance features on the local target
	$(PY) -m pytest features --target local

lint: ## ruff, ruff format --check and mypy
	$(PY) -m ruff check . && $(PY) -m ruff format --check . && $(PY) -m mypy

format: ## ruff format
	$(PY) -m ruff format .

manifests: ## render and validate every overlay
	$(PY) -m tox -e manifests

image: ## build the image and prove it serves
	$(PY) -m tox -e image

bench: ## benchmarks (throughput grid and KServe peer, then the service); results in artifacts/bench, RECORD=1: bench/results
	test -x .venv-peer/bin/python || (uv venv --python $(PY) .venv-peer && uv pip install -q --python .venv-peer/bin/python --require-hashes -r bench/peer_requirements.txt)
	$(PY) bench/throughput_bench.py $(if $(RECORD),--record)
	$(PY) bench/service_bench.py $(if $(RECORD),--record)

cluster-up: ## the platform and the OCR service for PROFILE (default full) on kind, or on KUBE_CONTEXT
	$(PY) -m harness up --profile $(PROFILE) $(CONTEXT_ARG)

cluster-down: ## export the cluster's logs and delete the kind cluster
	$(PY) -m harness down

kserve-install: ## the cluster add-ons only (metrics-server, cert-manager, Istio, Prometheus, KEDA, KServe)
	$(PY) -m harness up --profile $(PROFILE) --only platform $(CONTEXT_ARG)

deploy-ocr: ## build and load the image, deploy the OCR overlay onto a cluster that has the platform
	$(PY) -m harness up --profile $(PROFILE) --only app $(CONTEXT_ARG)

load-test: ## locust against the deployed service (USERS=8, SECONDS=60)
	$(PY) -m harness load --users $(USERS) --seconds $(SECONDS)

status: ## what is running on the cluster
	$(PY) -m harness status

plan: ## print every provisioning command for PROFILE (dry run)
	$(PY) -m harness plan --profile $(PROFILE)

milestone1: ## milestone 1 features on kind
	$(PY) -m tox -e milestone1

milestone2: ## milestone 2 features on kind
	$(PY) -m tox -e milestone2

milestone3: ## milestone 3 features on kind
	$(PY) -m tox -e milestone3

clean: ## remove build and test leftovers
	rm -rf .tox .pytest_cache .mypy_cache .ruff_cache artifacts build *.egg-info
