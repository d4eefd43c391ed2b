# scifolio: `make run` (the main job, offline demo profile) and `make test`.
# Both create .venv and install on first use.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
PROJECT ?= energy

# the venv's tools first (dvc stages call `python`); telemetry off everywhere
export PATH := $(BIN):$(PATH)
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export HF_HUB_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export GRADIO_ANALYTICS_ENABLED := False
export DO_NOT_TRACK := 1

RETRAIN_ARGS ?=

.PHONY: install lock lint test-contract run test test-fast bench-energy bench-literature bench-protein bench-art bench-drift app-medical app-literature app-protein app-art ui monitor retrain replay clean help

help:
	@echo "make run           dvc repro on the profile in params.yaml (offline demo by default)"
	@echo "make test          lint + the test suite"
	@echo "make test-contract every project (and a test project) from pull to register, in seconds each"
	@echo "make lint          ruff check + ruff format --check"
	@echo "make lock          re-resolve requirements.lock from pyproject.toml + constraints.txt"
	@echo "make serve-energy  the energy champion over REST on http://127.0.0.1:5050"
	@echo "make app-medical   the clinician app (medical champion) on http://127.0.0.1:7860"
	@echo "make app-literature  classify, search/recommend, topic trends (literature) on http://127.0.0.1:7860"
	@echo "make app-protein   contact map and folded Cα trace of a pasted sequence on http://127.0.0.1:7860"
	@echo "make monitor PROJECT=energy   drift report of the champion's inference log (monitoring/reports/)"
	@echo "make retrain PROJECT=energy   the retraining loop (RETRAIN_ARGS=--if-drift: only on drift)"
	@echo "make bench-literature  SciCite, CSAbstruct, NICTA, Athar, BioScope beside published numbers (ARGS=...)"
	@echo "make bench-protein  contacts, folding, refinement on cluster-disjoint test chains beside published numbers (ARGS=...)"
	@echo "make bench-art     diffusion and GAN on the shared DSB2018 images: FID/KID vs floor and ceiling, memorisation (ARGS=...)"
	@echo "make app-art       the art studio: generate, sketch to image (SDEdit), style mixing on http://127.0.0.1:7860"
	@echo "make bench-drift   detection power and false alarms over replayed streams (serves the champions)"
	@echo "make ui            MLflow UI on http://127.0.0.1:5000"
	@echo "make bench-energy  ETTh1 benchmark (full profile, CPU, long)"

install: $(STAMP)

# From the lock only: every package pinned with its hashes (torch as its CPU build, found in pip's
# find-links folder on these machines), nothing resolved at install time, so a machine next month gets
# what CI got today. uv installs the lock (15 s from a cold cache here, against 2-2.5 min for pip);
# `make lock` re-resolves pyproject.toml + constraints.txt into requirements.lock (commit the result).
# --compile-bytecode writes the .pyc files at install time: where PYTHONDONTWRITEBYTECODE is set (these
# machines), Python would otherwise re-compile torch, mlflow and GX on every start (measured: import torch 6.3 -> 2.0 s, GX 14.3 -> 5.3 s).
UV_VERSION := $(shell sed -n 's/^uv==\([^ ]*\).*/\1/p' requirements.lock)
FIND_LINKS := $(if $(PIP_FIND_LINKS),--find-links $(PIP_FIND_LINKS),)
$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv==$(UV_VERSION) 2>&1 | { grep -v "is ignored" || true; }
	$(BIN)/uv pip install -q --python $(BIN)/python --require-hashes --no-deps --compile-bytecode $(FIND_LINKS) -r requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	$(BIN)/python -c "import torch, lightning, mlflow, dvc, great_expectations, optuna"
	touch $@

LOCK_FLAGS := --extra test -c constraints.txt --override lock-overrides.txt --generate-hashes \
	--python-version 3.11 --python-platform x86_64-unknown-linux-gnu --custom-compile-command "make lock"

lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml $(LOCK_FLAGS) $(FIND_LINKS) -o requirements.lock -q
	@echo "requirements.lock refreshed: review the diff, run make test, commit it"

# ruff lint + format check: the same hooks run before each commit (pre-commit install)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python .ci/check_lock.py

run: $(STAMP)
	$(BIN)/dvc repro

# pytest's exit code 5 (no test collected) is a failure, never a pass
test: $(STAMP) lint
	$(BIN)/python -m pytest $(PYTEST_ARGS) || { s=$$?; [ $$s -eq 5 ] && echo "no tests collected" >&2; exit $$s; }

# the contract every project must pass first: pull to register in-process, shrunk to seconds
test-contract: $(STAMP)
	$(BIN)/python -m pytest tests/contract tests/pipeline/test_project_lists.py

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

bench-energy: $(STAMP)
	$(BIN)/python benchmarks/energy.py

monitor: $(STAMP)
	$(BIN)/python -m pipelines $(PROJECT) monitor

retrain: $(STAMP)
	$(BIN)/python -m pipelines $(PROJECT) retrain $(RETRAIN_ARGS)

bench-drift: $(STAMP)
	$(BIN)/python benchmarks/drift.py

# the literature tasks beside the published numbers (ARGS="--limit 500 --epochs 2": a reduced protocol)
bench-literature: $(STAMP)
	$(BIN)/python benchmarks/literature.py $(ARGS)

# contacts, folding and refinement on the 195 shared entries (ARGS="--limit 40 --epochs 2 --seeds 0": reduced)
bench-protein: $(STAMP)
	$(BIN)/python benchmarks/protein.py $(ARGS)

# both generators on the 384 shared images at the demo and cpu settings (ARGS="--settings cpu --epochs 2": reduced)
bench-art: $(STAMP)
	$(BIN)/python benchmarks/art.py $(ARGS)

serve-%: $(STAMP)
	$(BIN)/python -m pipelines $* serve

app-medical: $(STAMP)
	$(BIN)/python -m pipelines.medical.serving.app

app-literature: $(STAMP)
	$(BIN)/python -m pipelines literature app

app-protein: $(STAMP)
	$(BIN)/python -m pipelines protein app

app-art: $(STAMP)
	$(BIN)/python -m pipelines art app

ui: $(STAMP)
	$(BIN)/mlflow ui --host 127.0.0.1 --port 5000 --backend-store-uri sqlite:///mlflow.db

clean:
	rm -rf data/*/ mlflow.db mlruns
