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
test: install proto-check
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
