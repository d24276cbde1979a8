# fhirlake — the two commands a new user needs are `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
# Python 3.12+ (the Lambda runtime is 3.13): the first interpreter found wins.
PYTHON_CANDIDATES := python3.13 python3.12 $(HOME)/.pyenv/versions/3.13.0/bin/python3.13 \
	$(HOME)/.pyenv/versions/3.12.1/bin/python3.12 /root/.pyenv/versions/3.13.0/bin/python3.13 \
	/root/.pyenv/versions/3.12.1/bin/python3.12 python3
BOOTSTRAP_PYTHON := $(firstword $(foreach p,$(PYTHON_CANDIDATES),$(shell command -v $(p) >/dev/null 2>&1 && $(p) -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && echo $(p))))
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help install run test lint format invoke synth synth-fast deploy test-bundling clean

help:
	@echo "make run      install what is needed and start the local data store on http://127.0.0.1:$${FHIRLAKE_PORT:-8080}"
	@echo "make test     install what is needed and run the whole test suite"
	@echo "make lint     ruff"
	@echo "make invoke   FUNCTION=api EVENT=events/api/read.json: run a handler on a sample event locally"
	@echo "make synth    cdk synth (no Docker)        make deploy   cdk deploy --all"

# The venv is rebuilt when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	@test -n "$(BOOTSTRAP_PYTHON)" || { echo "Python 3.12+ is required (python3.13 or python3.12 on PATH)"; exit 1; }
	@test -x $(PY) || $(BOOTSTRAP_PYTHON) -m venv $(VENV)
	@echo "Installing fhirlake and its dependencies into $(VENV) (the first time takes a few minutes)..."
	$(PY) -m pip install -qq --upgrade pip
	$(PY) -m pip install -qq -e '.[dev]'
	@touch $@

install: $(VENV)/.installed

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

run: install
	$(VENV)/bin/fhirlake serve

test: install node_modules/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -n 4 --durations=25  # one worker per test module: tests/conftest.py

lint: install
	$(VENV)/bin/ruff check .

format: install
	$(VENV)/bin/ruff format functions infra tests app.py benchmarks scripts

invoke: install
	$(VENV)/bin/fhirlake invoke $(or $(FUNCTION),api) $(or $(EVENT),events/api/metadata.json)

# CDK_ARGS passes context, e.g. CDK_ARGS="-c stage=prod -c allowedRegions=eu-central-1" (docs/deploy.md).
synth: install node_modules/.installed
	npx cdk synth $(CDK_ARGS)

synth-fast: install node_modules/.installed
	npx cdk synth -c bundling=skip $(CDK_ARGS)

deploy: install node_modules/.installed
	npx cdk deploy --all $(CDK_ARGS)

# Real Lambda bundling (downloads arm64 wheels from PyPI), opt-in.
test-bundling: install node_modules/.installed
	FHIRLAKE_TEST_BUNDLING=1 $(VENV)/bin/pytest tests/infra -m bundling

clean:
	rm -rf $(VENV) node_modules cdk.out .pytest_cache .ruff_cache
