# saywell: one command runs the server, one runs the tests. Both create .venv and install everything first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: serve test test-slow install proto proto-check eval-open eval-closed calibrate clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[server,train,plot,dev]"
	touch $(STAMP)

install: $(STAMP)

## Run the gRPC server on 127.0.0.1:50051 with the embedded default engine (no network, no GPU).
serve: install
	$(BIN)/saywell-server $(ARGS)

## Run the test suite (what CI runs). Slow tests: `make test-slow`.
test: install proto-check contract-check
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: install
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

proto: install
	$(BIN)/python proto/generate_stubs.py

proto-check: install
	$(BIN)/python proto/generate_stubs.py --check

DATA ?= ../shared/data/speechocean762/train
eval-open: install
	mkdir -p reports
	$(BIN)/saywell eval --data $(DATA) --mode open --fold 0 --report reports/eval-open.json --plot reports/eval-open.png
eval-closed: install
	mkdir -p reports
	$(BIN)/saywell eval --data $(DATA) --mode closed --fold 0 --report reports/eval-closed.json --plot reports/eval-closed.png
calibrate: install
	$(BIN)/python -m saywell.engine.offline.calibration --data $(DATA) --out engine/data/baseline.json --limit 800

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# --- Contract tooling (issue #19). buf comes from npm, pinned in tools/package-lock.json (tools/install.sh).
# The release baseline is the image of the last released contract, as YAML (a readable, reviewable diff per release;
# a committed copy of the .proto tree would sit inside the buf module rooted at proto/ and clash with the live one).
BUF            := tools/node_modules/.bin/buf
BUF_INPUT      ?= proto
PROTO_BASELINE ?= proto/releases/v1.yaml

.PHONY: contract-check proto-release

## buf lint, and buf breaking against the last release (skipped, with a message, while no release is recorded).
contract-check:
	@bash tools/install.sh
	$(BUF) lint $(BUF_INPUT)
	@if [ -f "$(PROTO_BASELINE)" ]; then \
		echo "$(BUF) breaking $(BUF_INPUT) --against $(PROTO_BASELINE)"; \
		$(BUF) breaking $(BUF_INPUT) --against "$(PROTO_BASELINE)" && echo "contract-check: no breaking change since $(PROTO_BASELINE)"; \
	else \
		echo "contract-check: no release baseline $(PROTO_BASELINE) yet; buf breaking skipped (make proto-release records one)"; \
	fi

## Records the contract as released: lint passes, nothing breaks the previous release, then the image is written.
proto-release:
	@bash tools/install.sh
	$(BUF) lint $(BUF_INPUT)
	@if [ -f "$(PROTO_BASELINE)" ]; then \
		echo "$(BUF) breaking $(BUF_INPUT) --against $(PROTO_BASELINE)"; \
		$(BUF) breaking $(BUF_INPUT) --against "$(PROTO_BASELINE)"; \
	fi
	mkdir -p "$(dir $(PROTO_BASELINE))"
	$(BUF) build $(BUF_INPUT) --exclude-source-info -o "$(PROTO_BASELINE)"
	@echo "proto-release: wrote $(PROTO_BASELINE); commit it with the release"
