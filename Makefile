# Lichno: `make run` starts everything on embedded defaults, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
MANAGE := $(PY) manage.py
CELERY := $(VENV)/bin/celery
PORT ?= 8000
DEMO_CLIENTS ?= 2000
PYTEST_WORKERS ?= auto

.PHONY: run test setup lint format check migrate demo schedules messages clean gateways

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

setup: $(VENV)/.installed

migrate: setup
	$(MANAGE) migrate --noinput

schedules: migrate
	$(MANAGE) setup_schedules

# First start only: demo clients and logins, then demo segments, offers and promo codes.
demo: migrate
	@if $(MANAGE) shell -c "import sys; from crm.models import Client; sys.exit(Client.objects.exists())"; then \
	  $(MANAGE) seed_demo --clients $(DEMO_CLIENTS) --users && $(MANAGE) offers_demo && $(MANAGE) messaging_demo; \
	else echo "Demo data already loaded."; fi

# Web server, Celery worker and beat, plus the SIP autodialer and the SMPP receipt listener when
# .env selects those backends; Ctrl-C stops them all (each gets one SIGTERM, so the worker
# finishes its current task and shuts its pool down itself).
run: schedules demo
	@echo "Lichno: http://127.0.0.1:$(PORT)/admin/  (Ctrl-C stops web, worker and beat)"
	@trap 'trap - INT TERM EXIT; kill $$(jobs -p) 2>/dev/null; wait' INT TERM EXIT; \
	$(CELERY) -A crm worker --loglevel=INFO --concurrency=2 -Q default,segments,messaging & \
	$(CELERY) -A crm beat --loglevel=INFO & \
	$(MANAGE) runserver --insecure --noreload 127.0.0.1:$(PORT) & \
	for process in $$($(MANAGE) gateway_processes); do $(MANAGE) $$process & done; \
	wait

# SMS gateways on loopback for `make run` (Kannel + the SMPP simulator; needs the Debian packages
# kannel and kannel-extras). Prints the SMS_BACKEND settings to put in .env; Ctrl-C stops them.
gateways: migrate
	$(MANAGE) gateways

check: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(MANAGE) makemigrations --check --dry-run
	$(MANAGE) check

test: check
	$(PY) -m pytest -n $(PYTEST_WORKERS) --create-db $(PYTEST_ARGS)

lint: check

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

messages: setup
	$(MANAGE) makemessages -l ru --ignore=.venv --ignore=var --no-obsolete
	$(MANAGE) compilemessages --ignore=.venv

clean:
	rm -rf var/broker var/lichno.sqlite3*
