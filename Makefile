# Developer and CI entry points. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   := .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: help venv lint test bench-smoke run pg-start pg-stop clean-instance

help:
	@echo "make venv            create $(VENV), install requirements-dev.txt and this project (editable)"
	@echo "                     (make test and make run also build .script-runtime/, script jobs' pinned runtime)"
	@echo "make lint            ruff + mypy"
	@echo "make test            lint, then pytest on SQLite and on PostgreSQL (PYTEST_ARGS=...)"
	@echo "make bench-smoke     every benchmark on small data: result checks, exit 1 if one fails (CI)"
	@echo "make run             init the instance (demo data) and serve on 127.0.0.1:8000"
	@echo "make pg-start        start the PostgreSQL test cluster (port 54329)"
	@echo "make pg-stop         stop it"
	@echo "make clean-instance  delete instance/ (database, master key, encrypted files)"

venv: $(STAMP)

# A Debian python3 without ensurepip cannot create venvs: install python3-venv
# (as root) and retry. A half-made venv is removed so the next run retries.
$(PYTHON):
	python3 -m venv $(VENV) || { \
	  rm -rf $(VENV); \
	  [ "$$(id -u)" -eq 0 ] || exit 1; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv \
	    && python3 -m venv $(VENV); \
	} || { rm -rf $(VENV); exit 1; }

# Reinstall only when a requirements file or pyproject.toml is newer than the stamp. The project is
# installed editable, without dependencies (the requirement files brought them), so that `sandbox`,
# `sandbox.client` and `python -m sandbox` import from any directory, not only from the checkout.
$(STAMP): requirements.txt requirements-client.txt requirements-dev.txt pyproject.toml | $(PYTHON)
	$(PYTHON) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(PYTHON) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: lint
	bash scripts/test.sh

# Each benchmark with --smoke: small data, every result check, targets skipped. All of them run even
# when one fails; the target fails if any did. The SmartNoise venv (PyPI, ~15 s) is made if missing.
BENCHMARKS := sdc_vs_acro query_overhead dp_vs_smartnoise he_throughput release_audit soak script_isolation secondary_suppression

bench-smoke: venv
	bash benchmarks/smartnoise_env.sh
	@failed=""; for b in $(BENCHMARKS); do \
	  echo "== benchmarks/$$b.py --smoke"; \
	  $(PYTHON) benchmarks/$$b.py --smoke || failed="$$failed $$b"; \
	done; \
	if [ -n "$$failed" ]; then echo "bench-smoke FAILED:$$failed"; exit 1; fi; \
	echo "bench-smoke: all benchmarks' checks passed"

run: venv
	bash scripts/run.sh

pg-start:
	@bash scripts/postgres-test.sh >/dev/null

pg-stop:
	@bash scripts/postgres-test.sh stop

clean-instance:
	rm -rf instance/
