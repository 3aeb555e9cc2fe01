# DPP: the two commands a newcomer needs are `make run` and `make test`. `make help` lists the rest.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8000
export PORT

.PHONY: help install run test smoke schemathesis bench soak lint migrate emulator-start emulator-stop clean clean-all

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## /  make \1\t/' | expand -t 24

# The stamp is newer than every requirements file once they are installed: `make install` does
# nothing until one of them changes.
$(STAMP): $(wildcard requirements/*.txt) clients/python/pyproject.toml
	@if [ ! -x $(BIN)/python ]; then \
	  [ -n "$(PYTHON)" ] || { echo "python3.11 (or python3) not found on PATH" >&2; exit 1; }; \
	  $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	    || { echo "DPP needs Python 3.11 or newer; $(PYTHON) is older" >&2; exit 1; }; \
	  echo "creating $(VENV) with $(PYTHON)"; \
	  $(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install --quiet --upgrade pip; \
	fi
	$(BIN)/python -m pip install --quiet -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet -e "clients/python[mcp,webhooks]"
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install requirements/dev.txt (again only when requirements change)

run: install ## database, emulator, migrations, demo tenant and key, then api + worker + beat + flower, restarted if they die (Ctrl-C stops all)
	bash scripts/run.sh

test: install ## the whole suite against PostgreSQL, Redis, the emulator and real workers (PYTEST_ARGS=...)
	bash scripts/test.sh $(PYTEST_ARGS)

smoke: install ## `make run` exactly as a newcomer: fresh database, free port, own queue and bucket; the printed curl to COMPLETED
	$(BIN)/python tests/smoke.py

schemathesis: install ## schemathesis against the live API (own database, real key; bounded to a few minutes)
	bash scripts/with_emulator.sh $(BIN)/python scripts/schemathesis_live.py

bench: install ## benchmarks (bench/run.py) with the emulator up: figures and ratios
	@[ -f bench/run.py ] || { echo "bench/run.py does not exist: no benchmarks to run" >&2; exit 1; }
	bash scripts/with_emulator.sh $(BIN)/python bench/run.py

lint: install ## ruff check
	$(BIN)/ruff check .

migrate: install ## apply the database migrations (creating the database if it does not exist)
	$(BIN)/python scripts/preflight.py
	$(BIN)/python manage.py migrate --noinput

emulator-start: install ## start the local SQS+S3 emulator (or reuse the one that answers)
	$(BIN)/python scripts/emulator.py start

emulator-stop: install ## stop the emulator, if scripts/emulator.py started it
	$(BIN)/python scripts/emulator.py stop

clean: ## remove the logs of local runs (keeps the venv and a running emulator's pid file)
	@if [ -d .run ]; then find .run -type f -name '*.log' -delete; find .run -mindepth 1 -type d -empty -delete; fi

clean-all: ## stop the emulator started here, then remove .run/ and .venv/
	@if [ -x $(BIN)/python ]; then $(BIN)/python scripts/emulator.py stop || true; fi
	rm -rf .run $(VENV) staticfiles

soak: install ## SOAK_RUNS runs (1000) across two workers killed at random; exit 1 on any leaked micro
	bash scripts/with_emulator.sh $(BIN)/python bench/soak.py
