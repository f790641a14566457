# clawfed: `make demo` runs the main job, `make test` runs lint and the tests.
# Both create .venv and install what they need when it is missing or out of date.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint format bench bench-quick proto clean system-deps browser-deps

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

system-deps:
	@scripts/system-deps.sh

# Headless Chromium and ChromeDriver (Debian packages) for the dashboard's browser tests.
browser-deps:
	@scripts/browser-deps.sh

demo: $(STAMP) system-deps
	$(BIN)/clawfed demo

lint: $(STAMP)
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

# The store and audit tests also run against a throwaway PostgreSQL server on 127.0.0.1,
# which scripts/postgres.sh installs (Debian package) and starts, then stops afterwards.
test: lint system-deps browser-deps
	scripts/postgres.sh run -- $(BIN)/pytest -q

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: $(STAMP)
	$(BIN)/python bench/round_overhead.py

bench-quick: $(STAMP)
	$(BIN)/python bench/round_overhead.py --quick

# Regenerate the protobuf and gRPC modules after editing federation.proto.
proto: $(STAMP)
	PATH=$(BIN):$$PATH $(BIN)/python -m grpc_tools.protoc -Isrc --python_out=src --mypy_out=src \
		--grpc_python_out=src src/clawfed/wire/_proto/federation.proto

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
