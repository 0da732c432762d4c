# kinfer's entry points. Everything installs into .venv/ and ~/.cache/kinfer/ (test-bed binaries, by version).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PYTEST_ARGS ?=
# KINFER_REAL_NODE=1: the test bed also runs a real node (containerd + kubelet; tests/testbed/README.md).
KINFER_REAL_NODE ?=
REAL_NODE := $(filter 1,$(KINFER_REAL_NODE))

.PHONY: help install lint format test unit testbed-build testbed-up testbed-down flake-check demo demo-cluster bench crds models images clean

help:
	@echo "make demo     run the fraud pipeline on a local Kafka broker with live progress"
	@echo "make test     install everything, build and start the test bed, run the whole suite"
	@echo "make lint     ruff, mypy and the import contracts (lint-imports)"
	@echo "make bench    throughput, latency, cold start and memory benchmarks (.bench/results.json)"
	@echo "make testbed-up / testbed-down   start or stop the local Kafka + Kubernetes test bed"
	@echo "make testbed-up KINFER_REAL_NODE=1   ... with a real node running pods (needs make images)"
	@echo "make images   kinfer's container images (Docker, or buildah without it: images/build.sh)"
	@echo "make demo-cluster   helm install + a pipeline on a real node, scaling out and back on a backlog"
	@echo "make flake-check   bed start/stop cycles and timing-sensitive tests, repeated (not in CI)"

$(VENV)/.installed: pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip==25.3
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	# The TF Serving gRPC stubs: --no-deps, see pyproject.toml.
	$(PIP) install -q --no-deps tensorflow-serving-api==2.21.0
	touch $@

install: $(VENV)/.installed

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

testbed-build: install
	bash tests/testbed/build.sh all $(if $(REAL_NODE),node)

testbed-up: install testbed-build
	$(PY) -m tests.testbed up $(if $(REAL_NODE),--real-node)

testbed-down: install
	$(PY) -m tests.testbed down

# Not in CI (hours): 20 bed start/stop cycles and 10 runs of each test marked `timing`, failures per test.
flake-check: install testbed-build
	$(PY) -m tests.flake_check $(FLAKE_ARGS)

# The whole suite. The session fixtures reuse a running `make testbed-up` bed, or start (and stop) their own.
# KINFER_REAL_NODE=1: also the tests on the real node (tests/cluster/), after building the node and the images.
test: install testbed-build $(if $(REAL_NODE),images)
	bash tests/helm/install-prometheus.sh
	KINFER_REAL_NODE=$(REAL_NODE) $(PY) -m pytest $(PYTEST_ARGS)

unit: install
	$(PY) -m pytest -m "not testbed" $(PYTEST_ARGS)

# The CRD is generated from the spec model; the chart ships a byte-for-byte copy (tests fail on drift).
crds: install
	.venv/bin/kinfer crdgen --write
	.venv/bin/kinfer crdgen --write --file charts/kinfer-operator/files/crds/kinfer.io_inferencepipelines.yaml

models: install
	$(PY) models/train.py

# DEMO_SECONDS=20 make demo: a shorter run (CI runs it so).
demo: install
	$(PY) -m kinfer_runtime.tools.demo

# The operator and real pods on a real node of the test bed: helm install, a pipeline, a backlog scaled out and in.
demo-cluster: install
	bash tests/testbed/build.sh all node
	$(MAKE) images
	$(PY) -m tests.cluster.demo

bench: install
	bash tests/testbed/build.sh kafka
	$(PY) -m tests.bench

# Without a Docker engine: buildah + mmdebstrap (images/build.sh), cached by content in ~/.cache/kinfer, then
# checked by running them (verify); the test bed's real node imports them from there.
images:
	@if docker info >/dev/null 2>&1; then \
	  docker build -f images/runtime.Dockerfile -t kinfer/runtime:0.1.0 . && \
	  docker build -f images/operator.Dockerfile -t kinfer/operator:0.1.0 . ; \
	else bash images/build.sh all verify; fi

clean:
	rm -rf .testbed .bench .pytest_cache .mypy_cache .ruff_cache
