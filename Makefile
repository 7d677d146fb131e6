# rnnlab: `make help` lists the targets. Everything runs inside .venv, created on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# a CPU build of torch; pin it so pip never pulls a multi-GB CUDA build by accident
TORCH ?= torch==2.13.0
ARGS ?=
# make server: its address and folder (default .server/); SERVER_HOST=<a private
# address> lets other machines (a SLURM array) log to it
SERVER_HOST ?= 127.0.0.1
SERVER_DIR ?=
# make ui / server / serve: PORT= picks the port; their defaults (5000 / 5001 / 5002, set
# on each target) let all three run side by side. A port in use is refused before starting.
# make serve reads models:/ URIs from MLFLOW_TRACKING_URI, else the project's mlflow.db
STORE := $(or $(MLFLOW_TRACKING_URI),sqlite:///$(CURDIR)/mlflow.db)

.DEFAULT_GOAL := help
.PHONY: help install upgrade train tiny test test-slow test-all lint format ui server serve server-stop sweep compare headline bench bench-long clean

help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

EXTRAS := dev,sweeps,server
# the versions the test suite last passed with (make upgrade refreshes them); torch is
# pinned by TORCH above instead, since its build (CPU or CUDA) depends on the machine
CONSTRAINTS ?= constraints.txt

$(BIN)/.installed: pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) -e ".[$(EXTRAS)]"
	touch $@

install: $(BIN)/.installed ## create .venv and install rnnlab at the pinned versions of constraints.txt

upgrade: ## newest allowed versions of every dependency, then rewrite constraints.txt (run make test after)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q --upgrade --upgrade-strategy eager -e ".[$(EXTRAS)]"
	{ echo "# Versions the test suite passed with; written by make upgrade, used by make install."; \
	  echo "# torch is pinned by the Makefile's TORCH instead (its build depends on the machine)."; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v -i -E '^(torch|rnnlab)=='; } > $(CONSTRAINTS)
	touch $(BIN)/.installed

train: install ## train the default experiment (task=sentiment model=lstm); ARGS="model=gru ..."
	$(BIN)/python train.py $(ARGS)

tiny: install ## a seconds-long run on real data: make tiny ARGS="model=gru"
	$(BIN)/python train.py experiment=sentiment_tiny $(ARGS)

# test processes (pytest-xdist): the tests pin torch to one thread each, so one process per
# core; a test file stays in one process (servers, stores and folders are per file)
JOBS ?= auto

test: install ## the fast test suite on every core (what CI runs first): make test JOBS=1 runs it in one process
	$(BIN)/python -m pytest -m "not slow" -n $(JOBS) --dist loadfile $(ARGS)

test-slow: install ## the slow tests: real corpora, longer training
	$(BIN)/python -m pytest -m slow $(ARGS); rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

test-all: test test-slow ## both suites

lint: install ## ruff, and the layers contract (every import points down; see pyproject.toml)
	$(BIN)/ruff check src tests bench train.py compare.py
	$(BIN)/lint-imports

format: install ## ruff format and import sorting
	$(BIN)/ruff check --fix src tests bench train.py compare.py

ui: PORT ?= 5000
ui: install ## MLflow UI on http://127.0.0.1:PORT (default 5000) over the default store; prints each experiment's training-view link
	@$(BIN)/python -m rnnlab.ops.server port-check --port $(PORT)
	@$(BIN)/python -m rnnlab.ops.ui --tracking-uri sqlite:///$(CURDIR)/mlflow.db --url http://127.0.0.1:$(PORT)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port $(PORT)

server: PORT ?= 5001
server: install ## shared MLflow server on PostgreSQL at 127.0.0.1:PORT (default 5001), files in .server/; prints the URI to export
	$(BIN)/python -m rnnlab.ops.server start --host $(SERVER_HOST) --port $(PORT) $(if $(SERVER_DIR),--dir $(SERVER_DIR))
	@$(BIN)/python -m rnnlab.ops.ui --tracking-uri http://$(SERVER_HOST):$(PORT) --url http://$(SERVER_HOST):$(PORT)

# uvicorn, which mlflow models serve starts, must be on PATH: the venv's bin goes first
serve: PORT ?= 5002
serve: install ## serve a model on 127.0.0.1:PORT (default 5002): make serve MODEL=models:/rnnlab-sentiment@champion
	@test -n "$(MODEL)" || { echo "error: make serve needs MODEL=, a models:/ URI (e.g. models:/rnnlab-sentiment@champion, or the models:/m-... a run printed)." >&2; exit 2; }
	@$(BIN)/python -m rnnlab.ops.server port-check --port $(PORT)
	PATH="$(CURDIR)/$(BIN):$$PATH" MLFLOW_TRACKING_URI="$(STORE)" $(BIN)/mlflow models serve -m "$(MODEL)" --env-manager local --host 127.0.0.1 --port $(PORT)

server-stop: ## stop the server of make server and its PostgreSQL
	$(BIN)/python -m rnnlab.ops.server stop $(if $(SERVER_DIR),--dir $(SERVER_DIR))

sweep: install ## every model in conf/model on sentiment (misfits skipped): make sweep ARGS="task=ner"
	$(BIN)/python train.py -m 'model=glob(*)' $(ARGS)

compare: install ## cross-task report from the MLflow store (reports/)
	$(BIN)/python compare.py $(ARGS)

headline: install ## every cell x every task x 3 seeds, 15 s each, two jobs at a time (~1 h)
	OMP_NUM_THREADS=1 $(BIN)/python train.py experiment=headline hydra/launcher=joblib \
		hydra.launcher.n_jobs=2 $(ARGS)

# the fast benchmarks (minutes); the quality ones train for a fixed wall time each
BENCH_FAST := bench/cells.py bench/charlm_vs_plain_loop.py bench/packed_vs_padded.py
bench: install ## fast benchmarks (minutes): cell speed, pipeline vs plain loop, packed vs padded
	for f in $(BENCH_FAST); do $(BIN)/python $$f || exit 1; done
	@echo "quality at equal wall time (about 100 minutes): make bench-long (python bench/cells.py --part quality; python bench/charlm_budget.py)"

bench-long: install ## quality benchmarks (about 100 minutes): cells at equal wall time, charlm recipe vs plain loop
	$(BIN)/python bench/cells.py --part quality
	$(BIN)/python bench/charlm_budget.py

clean: ## remove outputs and caches (keeps data/ and mlflow.db)
	rm -rf outputs multiruns .pytest_cache .ruff_cache
