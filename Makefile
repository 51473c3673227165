# killrvideo-reco: `make run` to serve, `make test` to test. `make help` lists every task.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
KV := $(BIN)/kv-reco
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install cassandra-up cassandra-down schema run demo test lint fuzz soak bench bench-recall bench-large latency clean

help: ## List the tasks
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,embed]'
	@touch $@

install: $(STAMP) ## Create .venv and install the project with its dev tools

cassandra-up: $(STAMP) ## Start the local Cassandra 5.0 node (downloads it once), or find it running
	$(KV) cassandra start

cassandra-down: $(STAMP) ## Drain and stop the local node(s) that kv-reco started
	$(KV) cassandra stop

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

test: cassandra-up ## Set up everything and run the whole test suite against a real node
	$(BIN)/pytest

lint: $(STAMP) ## ruff format check, ruff check, mypy --strict
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

fuzz: cassandra-up ## Schemathesis from the OpenAPI document against a real serve: >= 10,000 requests, zero 5xx (about 2 min)
	$(BIN)/python -m tests.fuzzing --requests 10000

soak: cassandra-up $(BENCH_STAMP) ## 10 minutes of ingest at about half of peak; RSS, open fds and p99 at start and end
	$(BIN)/python bench/soak.py

latency: cassandra-up ## Sequential ingest latency over 1,000 fresh vectors: service vs driver alone
	$(BIN)/python bench/ingest_latency.py --requests 1000

BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	@command -v wrk >/dev/null || (apt-get install -y -q wrk >/dev/null || (apt-get update -q && apt-get install -y -q wrk))
	$(BIN)/pip install --quiet -e '.[dev,embed,bench]'
	@touch $@

bench: cassandra-up $(BENCH_STAMP) ## Micro-benchmark, then service vs ceiling vs naive under wrk, and the batch line (about 9.5 min)
	$(BIN)/python bench/micro.py
	$(BIN)/python bench/run.py

bench-recall: cassandra-up $(BENCH_STAMP) ## ANN recall@10 and related-videos latency at 20,000 vectors, each similarity (about 50 min)
	$(BIN)/python bench/recall.py --vectors 20000

bench-large: cassandra-up $(BENCH_STAMP) ## The same at 100,000 vectors (well over an hour: indexing bounds loading)
	$(BIN)/python bench/recall.py --vectors 100000

clean: ## Remove the virtualenv (the node's data and the jar cache stay)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
