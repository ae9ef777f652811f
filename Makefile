# Everything a fresh machine needs: `make run` (the platform) and `make test` (the suite).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export DATA_DIR ?= data
export DAGSTER_HOME ?= $(CURDIR)/data/dagster_home
DAGSTER_PORT ?= 3000
SERVE_PORT ?= 8000
# The web service listens on loopback only unless told otherwise (SERVE_HOST=0.0.0.0 to publish it).
SERVE_HOST ?= 127.0.0.1
SERVE_WORKERS ?= 2
TEST_WORKERS ?= 2

.PHONY: help install settings dagster-home esios-backfill run stream demo rain serve test bench lint format clean

help:
	@echo "make run     set up, then start Dagster (UI on http://localhost:$(DAGSTER_PORT)) and the dashboard (http://localhost:$(SERVE_PORT))"
	@echo "make stream  start only the rain stream: NATS (embedded unless NATS_URL), producers, Spark processor"
	@echo "make demo    materialize the current minute once and print the next-hour rain table"
	@echo "make rain    print the latest next-hour rain numbers (real-time view, else the warehouse)"
	@echo "make esios-backfill   load the ESIOS brief's range (2017-2018) into DuckDB, SQL and CSV"
	@echo "make serve   start only the web service (dashboard, /predict) on http://localhost:$(SERVE_PORT)"
	@echo "make settings   check every platform variable (environment and .env) and print the effective ones"
	@echo "make test    set up, then run the whole test suite"
	@echo "make bench   run the benchmarks in benchmarks/ (not part of CI)"
	@echo "make lint    ruff check + ruff format --check"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,mssql]"
	@touch $@

install: $(STAMP)

# The start-up check: every platform variable (environment + .env, loaded as Dagster loads it)
# is valid, or every bad one is listed and nothing starts.
settings: install
	@$(BIN)/python -m resources.settings

# dagster.yaml from dagster.yaml.template; with DAGSTER_PG_URL set, instance storage in PostgreSQL.
# Then runs left STARTED by a platform that was stopped or killed mid-run are marked FAILED.
dagster-home: install settings
	@mkdir -p "$(DAGSTER_HOME)" "$(DATA_DIR)"
	@$(BIN)/python -m resources.instance_config "$(DAGSTER_HOME)/dagster.yaml"
	@$(BIN)/python -m resources.run_worker

# The ESIOS brief's range (2017-2018, 24 monthly partitions in one run), then its CSV. Creates
# the SQL target table first (the load itself never creates it).
esios-backfill: install dagster-home
	$(BIN)/python -m esios_assets.sql_setup
	$(BIN)/dagster asset materialize -m definitions \
		--select esios_demand_forecast,demand_forecast_esios --partition-range 2017-01-01...2018-12-01
	$(BIN)/dagster asset materialize -m definitions --select esios_demand_forecast_csv

# The rain stream (NATS server unless NATS_URL, producers, Spark processor: docs/rain_stream.md)
# and the web service (dashboard + /predict) run beside `dagster dev` under one supervisor
# (resources/process_group.py): Ctrl-C, or SIGTERM to make, stops every process within 30 s
# (SIGKILL after STOP_GRACE seconds). ESIOS_BACKFILL=0 skips the backfill.
ESIOS_BACKFILL ?= 1
STOP_GRACE ?= 20
run: install dagster-home
	@if [ "$(ESIOS_BACKFILL)" != 0 ]; then $(MAKE) --no-print-directory esios-backfill \
		|| echo "ESIOS backfill failed (see above); starting Dagster anyway"; fi
	@echo "Dagster UI: http://localhost:$(DAGSTER_PORT)   dashboard and /predict: http://localhost:$(SERVE_PORT)"
	exec $(BIN)/python -m resources.process_group --grace $(STOP_GRACE) \
		"dagster=$(BIN)/dagster dev -w workspace.yaml -p $(DAGSTER_PORT)" \
		"stream=$(BIN)/python -m weather_assets.rain.stream.services" \
		"serve=env OMP_NUM_THREADS=1 $(BIN)/uvicorn serving.app:app --host $(SERVE_HOST) \
			--port $(SERVE_PORT) --workers $(SERVE_WORKERS)"

# The rain stream's services alone, in the foreground (Ctrl-C stops them all).
stream: install settings
	$(BIN)/python -m weather_assets.rain.stream.services

demo: install dagster-home
	$(BIN)/dagster asset materialize -m definitions \
		--select rain_forecasts,rolling_precipitation_sum \
		--partition "$$(date -u +%Y-%m-%d-%H:%M)"
	$(BIN)/python -m weather_assets.rain.latest

rain: install
	$(BIN)/python -m weather_assets.rain.latest

# The web service alone (docs/serving.md); OpenMP off: a single-row prediction gains nothing from it.
# Each worker loads .env itself, as Dagster does (serving/app.py), so no --env-file here.
serve: install settings
	OMP_NUM_THREADS=1 $(BIN)/uvicorn serving.app:app --host $(SERVE_HOST) --port $(SERVE_PORT) \
		--workers $(SERVE_WORKERS)

# The whole suite on TEST_WORKERS processes (pytest-xdist; a module's tests stay on one worker,
# so module fixtures run once). PYTEST_ARGS narrows it, e.g. `make test PYTEST_ARGS="-m e2e"`
# (CI runs that with DAGSTER_PG_URL); TEST_WORKERS=0 runs everything in this one process.
test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope $(PYTEST_ARGS)

bench: install
	$(BIN)/python benchmarks/definitions_load.py
	$(BIN)/python benchmarks/rain_tick.py
	$(BIN)/python benchmarks/rain_producer.py
	$(BIN)/python benchmarks/predict_load.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
