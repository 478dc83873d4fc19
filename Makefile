# Two commands for a newcomer: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# Local development defaults; production sets DJANGO_DEBUG=false and a real key.
export DJANGO_DEBUG ?= true

.PHONY: run demo test venv dev-deps migrate demo-data lint format bench clean

$(BIN)/.runtime: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

$(BIN)/.dev: $(BIN)/.runtime requirements-dev.txt
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(BIN)/.runtime
dev-deps: $(BIN)/.dev

migrate: venv
	$(BIN)/python manage.py migrate --noinput

demo-data: migrate
	$(BIN)/python manage.py seed_demo

run: demo-data
	$(BIN)/python manage.py ensure_admin
	@echo ""
	@echo "  Swarmsite is starting on http://$(HOST):$(PORT)/"
	@echo "  Admin: http://$(HOST):$(PORT)/admin/  (user: admin, password: admin;"
	@echo "         set ADMIN_PASSWORD before the first run to choose another)"
	@echo ""
	$(BIN)/daphne -b $(HOST) -p $(PORT) swarmsite.asgi:application

# The server in the background and a simulated swarm writing to it through
# the API; Ctrl-C stops both. DEMO_ARGS go to `manage.py simulate`.
DEMO_ARGS ?= --duration 0
demo: demo-data
	$(BIN)/python manage.py ensure_admin
	@$(BIN)/daphne -b $(HOST) -p $(PORT) --access-log /dev/null \
	  swarmsite.asgi:application & server=$$!; \
	trap 'kill $$server 2>/dev/null; wait $$server 2>/dev/null' EXIT; \
	trap 'exit 130' INT TERM; \
	echo ""; \
	echo "  Swarmsite is starting on http://$(HOST):$(PORT)/ with a simulated swarm."; \
	echo "  Admin: http://$(HOST):$(PORT)/admin/ (user: admin)"; \
	echo "  Live events: http://$(HOST):$(PORT)/admin/live-events/"; \
	echo "  Swarm view:  http://$(HOST):$(PORT)/admin/swarm/"; \
	echo ""; \
	$(BIN)/python manage.py simulate --url http://$(HOST):$(PORT) --wait 30 \
	  $(DEMO_ARGS)

test: dev-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: dev-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: dev-deps
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: dev-deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache
