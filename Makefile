# Two commands for a fresh machine: `make demo` and `make test` (see README).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MM_STAMP := $(VENV)/.installed-mm
# Prebuilt mmcv wheels, when a folder of them sits beside the checkout (CI, developer machines)
WHEELS ?= ../shared/wheels

.PHONY: install install-mm demo lint test clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade "setuptools>=77.0.3,<82" wheel

$(STAMP): $(BIN)/python setup.py pyproject.toml
	$(BIN)/pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# The `mm` extra (OpenMMLab pipelines). mmcv 2.1.0 has no registry wheel for this torch: take a
# prebuilt one from $(WHEELS) when there is one, else build it once (tools/build_mmcv.sh).
$(MM_STAMP): $(STAMP)
	@if ls $(WHEELS)/mmcv-2.1.0-*.whl >/dev/null 2>&1; then \
		echo "mm extra: mmcv from $(WHEELS)"; \
		$(BIN)/pip install --find-links $(WHEELS) -e ".[dev,mm]"; \
	elif $(BIN)/python -c "import mmcv.ops" 2>/dev/null; then \
		$(BIN)/pip install -e ".[dev,mm]"; \
	else \
		echo "mm extra: no prebuilt mmcv wheel in $(WHEELS); building mmcv 2.1.0 from source once (~30 min on 2 cores)"; \
		PY=$(BIN)/python bash tools/build_mmcv.sh build/wheels && \
		$(BIN)/pip install --find-links build/wheels -e ".[dev,mm]"; \
	fi
	touch $(MM_STAMP)

install-mm: $(MM_STAMP)

demo: $(STAMP)
	$(BIN)/python -m automtl demo --work-dir work_dirs/demo

lint: $(MM_STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) work_dirs .pytest_cache
