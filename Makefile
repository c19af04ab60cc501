# Every target sets up what it needs: `make quickstart` and `make test` work on a fresh machine.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# torch is capped at 2.14.1 (see docs/architecture.md). These two are installed first, from where
# the machine's pip configuration (pip.conf, PIP_* variables) says its wheels lie: a wheel folder,
# a local index. uv reads none of pip's configuration, so it is handed pip's indexes and wheel
# folders (PIP_SOURCES): uv installed torch's 5 GB in 11 s here, pip in 36 s. Where uv fails,
# pip installs them as it is configured to. The project's own install then resolves against them.
TORCH  := torch==2.14.1 torchvision==0.29.1
PIP_SOURCES = $(PY) -m pip config list 2>/dev/null | awk -F= '{ key = $$1; sub(/.*\./, "", key); \
	value = substr($$0, length($$1) + 2); gsub(/\047/, "", value); n = split(value, v, " "); \
	for (i = 1; i <= n; i++) if (key ~ /^(index-url|extra-index-url|find-links)$$/) printf "--%s %s ", key, v[i] }'
# uv installs the rest: the same packages as pip, in 11 s instead of 91 s. Neither compiles
# bytecode at install (pip's compiling of every file took a minute of the set-up): Python compiles
# a module the first time a process imports it and keeps the .pyc, so only what runs is compiled,
# once. That needs bytecode writing on, which an environment may have turned off for its own
# reasons; without the cache every process compiles what it imports again (the sweep's modules:
# 14.8 s to import instead of 6.6 s).
UV     := uv>=0.9,<0.14
export PYTHONDONTWRITEBYTECODE :=

.DEFAULT_GOAL := help
.PHONY: help setup browser services quickstart reproduce screenshots test test-quick lint format bench bench-sweep bench-scale bench-servers bench-team bench-gpu cluster-check ui dashboard clean


help: ## list every target
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: $(STAMP) ## create .venv and install the project with its dev tools

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; run make PYTHON=/path/to/python3.11"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-compile '$(UV)'
	$(VENV)/bin/uv pip install --quiet --python $(PY) $$($(PIP_SOURCES)) $(TORCH) \
		|| $(PY) -m pip install --quiet --no-compile $(TORCH)
	$(VENV)/bin/uv pip install --quiet --python $(PY) -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

# Chromium alone, without what Debian recommends beside it (a printer dialog, a notification
# daemon, udev, upower: 107 packages instead of 19); headless, it renders the UI just the same.
browser: ## install headless Chromium from Debian's packages (the UI test drives it)
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

# PostgreSQL's server from Debian's packages, for the tests of a team's services (the tests start
# and stop their own server, as an unprivileged user); no "main" cluster is made or started by
# the install (createcluster.conf): nothing listens until a test starts its own. The S3 server
# the tests use (moto) comes with the dev packages.
services: ## install Debian's PostgreSQL server where missing (the tests start their own)
	@command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { \
		mkdir -p /etc/postgresql-common && \
		echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends postgresql >/dev/null; }

# A new name per run: a study name is never reused, so earlier results stay as they were.
NOW        := $(shell date +%Y%m%d-%H%M%S)
STUDY      ?= quick-$(NOW)
SEED_STUDY ?= seed-$(NOW)
# Where `make ui` and `make dashboard` listen (127.0.0.1).
PORT           ?= 5000
DASHBOARD_PORT ?= 8080
# Full MNIST for `make reproduce`: a folder of the standard IDX files; empty: the shipped mnist-5k.
DATA_DIR   ?=

quickstart: setup ## the main job: a real sweep of search_spaces/quick.yaml on mnist-5k, then where to look
	$(PY) -m study sweep search_spaces/quick.yaml --name $(STUDY)
	@echo ""
	@echo "Stored in:   $${AESTUDY_HOME:-$$HOME/.aestudy} (MLflow store mlflow.db, studies/$(STUDY))"
	@echo "Browse it:   make ui          (MLflow UI on http://127.0.0.1:$(PORT), experiment $(STUDY); make ui PORT=5001 for another port)"
	@echo "Its search:  make dashboard STUDY=$(STUDY)   (optuna-dashboard on http://127.0.0.1:$(DASHBOARD_PORT))"
	@echo "Trials:      $(PY) -m study status $(STUDY)"
	@echo "Winners:     $(PY) -m study best $(STUDY)"
	@echo "Table:       $(PY) -m study table $(STUDY)   (writes reports/$(STUDY)/table.md and plots)"
	@echo "Export best: $(PY) -m study export $(STUDY) --out exports/$(STUDY) --per-model"

reproduce: setup ## redo the seed report's experiments (search_spaces/seed.yaml), regenerate docs/RESULTS.md
	$(PY) -m study sweep search_spaces/seed.yaml --name $(SEED_STUDY) \
		$(if $(DATA_DIR),--dataset mnist --data-dir $(DATA_DIR),--dataset mnist-5k)
	$(PY) -m analysis.table $(SEED_STUDY) --by activation --by recon_loss
	$(PY) -m analysis.results $(SEED_STUDY) --out docs/RESULTS.md

# An existing study to photograph instead of a new quickstart: make screenshots SHOTS_OF=quick-…
SHOTS_OF ?=

screenshots: setup browser ## retake docs/*.png in headless Chromium from a new quickstart (or SHOTS_OF=study)
ifeq ($(SHOTS_OF),)
	$(PY) -m study sweep search_spaces/quick.yaml --name $(STUDY)
	$(PY) -m study export $(STUDY) --out exports/$(STUDY) --per-model
endif
	$(PY) -m analysis.screenshots $(or $(SHOTS_OF),$(STUDY)) --out docs

cluster-check: setup ## validate cluster.yaml, cluster-efs.yaml and cluster-onprem.yaml offline against Ray's schema

	$(PY) -m study cluster-check cluster.yaml cluster-efs.yaml cluster-onprem.yaml

ui: setup ## the MLflow UI for the default store (~/.aestudy/mlflow.db) on 127.0.0.1:5000 (PORT=5001 for another)
	$(PY) -m study ui --port $(PORT)

dashboard: setup ## optuna-dashboard on a study's search: make dashboard STUDY=NAME [DASHBOARD_PORT=8080]
	$(PY) -m study dashboard $(STUDY) --port $(DASHBOARD_PORT)

# More pytest options for `make test` / `make test-quick`, e.g. PYTEST_ARGS=--reverse
PYTEST_ARGS ?=
# Tests run side by side in WORKERS processes (pytest-xdist): much of a test's time is spent
# waiting on the processes it started. A test file runs on one worker, which builds the file's
# finished studies once (pytest-xdist's loadgroup would group finer, but it does not work with
# pytest 9: it renames tests by an attribute pytest 9 no longer reads). Files are handed out in
# the order tests/conftest.py sorts them (the heaviest first), not by their number of tests
# (xdist's default). WORKERS=0: one process.
WORKERS ?= 2
PYTEST := $(PY) -m pytest $(if $(filter 0,$(WORKERS)),,-n $(WORKERS) --dist loadfile --no-loadscope-reorder)

test: setup browser services ## the whole suite, slow tests included (what CI runs); PYTEST_ARGS=--reverse
	$(PYTEST) $(PYTEST_ARGS)

test-quick: setup services ## the tests that start no Ray and no sweep (not marked slow or ray); PYTEST_ARGS as for test
	$(PYTEST) -m "not slow and not ray" $(PYTEST_ARGS)

lint: setup ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: setup ## print the data-loading throughput benchmark
	$(PY) benchmarks/loader_throughput.py

bench-sweep: setup ## print where a small sweep's time goes (evaluation share, lanes busy, overhead)
	$(PY) benchmarks/sweep_overhead.py

# Trials for `make bench-scale` (N=10000 for the long run) and the size of its synthetic study.
N         ?= 1000
SYNTHETIC ?= 10000

bench-scale: setup ## print the orchestrator's own cost per trial: N cheap trials, and per-save, prune and line costs at SYNTHETIC
	$(PY) benchmarks/scale.py --trials $(N) --synthetic $(SYNTHETIC)

bench-servers: setup ## print what starting an MLflow server costs: MLflow's defaults against the tool's
	$(PY) benchmarks/server_start.py

bench-team: setup services ## print a quick.yaml sweep's wall time on PostgreSQL + S3 (moto) beside the embedded default
	$(PY) benchmarks/team_services.py

bench-gpu: ## on a GPU machine: the trainer's tests on the card, loader throughput, a packed quick.yaml sweep
	bash benchmarks/gpu_check.sh

clean: ## remove the virtual environment and caches (studies and the MLflow store live in ~/.aestudy: untouched)
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
