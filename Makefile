# DPP: the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PORT ?= 8000
export PORT

.PHONY: install run test bench soak lint migrate emulator-start emulator-stop clean

$(STAMP): requirements/base.txt requirements/dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/dev.txt
	touch $(STAMP)

install: $(STAMP) ## create .venv and install requirements/dev.txt (only when they changed)

run: install ## the whole platform on this machine: emulator, migrations, demo tenant, api+worker+beat+flower
	bash scripts/run.sh

test: install ## the whole suite against real PostgreSQL, Redis, the emulator and Celery workers
	bash scripts/test.sh $(PYTEST_ARGS)

bench: install ## benchmarks: figures and ratios measured in one run
	bash scripts/with_emulator.sh $(BIN)/python bench/run.py

soak: install ## N runs across two workers while a chaos loop kills workers; exit 1 on any leak
	bash scripts/with_emulator.sh $(BIN)/python bench/soak.py

lint: install
	$(BIN)/ruff check .

migrate: install
	$(BIN)/python manage.py migrate --noinput

emulator-start: install
	$(BIN)/python scripts/emulator.py start

emulator-stop: install
	$(BIN)/python scripts/emulator.py stop

clean: ## remove logs and pid files of local runs (never the venv)
	rm -rf .run
