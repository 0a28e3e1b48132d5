# The README's two commands: `make demo` and `make test`. Everything installs into .venv.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TORCH   := torch==2.13.0
# Every other package at the version the suite last passed with; `make lock` regenerates it.
LOCK    := requirements/constraints.txt

.PHONY: install lock demo test test-e2e test-docker test-all lint bench reproduce serve clean

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and exactly pinned: a looser spec pulls gigabytes of CUDA wheels.
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -c $(LOCK) -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lock:  # UPGRADE="pkg ..." (or all) lifts those pins; everything else stays as locked
	VENV=$(VENV) UPGRADE="$(UPGRADE)" bash scripts/lock.sh

demo: install
	$(BIN)/ablate demo

test: install  # everything but the end-to-end suite (~8 min on 2 cores)
	bash scripts/test-setup.sh
	$(BIN)/python -m pytest -q -ra --durations=15 -m "not slow and not docker"

test-e2e: install  # the real stack end to end: Ray Jobs + Tune, MLflow, uvicorn, two nodes (~16.5 min)
	bash scripts/test-setup.sh
	$(BIN)/python -m pytest -q -ra --durations=10 -m "slow and not docker"

test-docker: install  # docker/ built and run: dockerd, images, compose e2e (root; ~3 min, ~8 cold)
	bash scripts/test-docker.sh

test-all: test test-e2e test-docker

lint: install  # ruff, then mypy over trainer/ and service/ ([tool.mypy] in pyproject.toml)
	$(BIN)/ruff check trainer service tests bench
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/trainer.py
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/compare.py

reproduce: install  # ALBEF Table 1 in miniature through the service (~31 min on 2 cores)
	$(BIN)/python bench/reproduce.py

serve: install
	$(BIN)/ablate serve

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache runs .ablate
