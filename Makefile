# The README's two commands: `make demo` (set-up + main job on embedded data) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
REQ := requirements
# `make lock` recompiles the locks with this uv, in a venv of its own (.venv-lock).
UV_VERSION := 0.13.8
LOCK_VENV := .venv-lock
# Linux x86_64 and Python 3.11 whatever machine compiles: the GPU wheels exist only there.
UV_COMPILE = $(LOCK_VENV)/bin/uv pip compile --quiet --generate-hashes --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28

# The locks hold wheels for CPython 3.11 only: stop at once, in one line, on another Python.
ifneq ($(filter-out clean web,$(or $(MAKECMDGOALS),setup)),)
PY_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
ifneq ($(PY_VERSION),3.11)
$(error $(PYTHON) is $(if $(PY_VERSION),Python $(PY_VERSION),not found), but gluon_dcgan needs Python 3.11: run make PYTHON=python3.11 (or a path to one))
endif
endif

.PHONY: setup setup-gpu lock demo test test-fast bench web clean

setup: $(VENV)/.installed

# Installs exactly the locked set (every package pinned, with hashes), then the project.
$(VENV)/.installed: $(REQ)/cpu.txt $(REQ)/d2l.txt $(REQ)/tensorboard.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --require-hashes -r $(REQ)/cpu.txt
	# d2l 1.0.3 pins exact versions (numpy, matplotlib, pandas, jupyter, ...), so it gets a
	# step and a lock of its own, with --no-deps: its pins were resolved into cpu.txt with it
	# (requirements/common.in), and pip must not re-resolve anything outside the lock.
	$(BIN)/pip install --no-deps --require-hashes -r $(REQ)/d2l.txt
	# The tensorboard extra (train --tensorboard DIR), locked on top of cpu.txt's pins: the
	# tests read its events back with TensorBoard's own reader.
	$(BIN)/pip install --require-hashes -r $(REQ)/tensorboard.txt
	# The project, editable: tests, bench and the gluon-dcgan script import this checkout.
	$(BIN)/pip install --no-deps -e .
	$(BIN)/pip check
	touch $@

# The GPU build replaces the CPU one: both wheels provide the `mxnet` module.
setup-gpu: $(VENV)/.installed-gpu

$(VENV)/.installed-gpu: $(VENV)/.installed $(REQ)/gpu.txt
	$(BIN)/pip uninstall -y mxnet
	$(BIN)/pip install --require-hashes -r $(REQ)/gpu.txt
	$(BIN)/pip check
	touch $@

# After editing requirements/*.in: recompile the locks (pins already in a lock are kept
# unless the .in files ask otherwise; delete a .txt to re-resolve it from scratch).
lock:
	test -x $(LOCK_VENV)/bin/uv || ($(PYTHON) -m venv $(LOCK_VENV) && \
		$(LOCK_VENV)/bin/pip install uv==$(UV_VERSION))
	$(UV_COMPILE) --no-emit-package d2l $(REQ)/cpu.in -o $(REQ)/cpu.txt
	$(UV_COMPILE) --no-emit-package d2l $(REQ)/gpu.in -o $(REQ)/gpu.txt
	$(UV_COMPILE) --no-deps $(REQ)/d2l.in -o $(REQ)/d2l.txt
	$(UV_COMPILE) $(REQ)/tensorboard.in -o $(REQ)/tensorboard.txt

# The demo is not the chapter's recipe (python run.py is): half the widths, lr 5e-4 and an
# EMA generator learn more in its two minutes than the chapter's settings, and D's first
# block without BatchNorm gives the samples the sprites' white and colours (docs/quality.md).
# 32 epochs of 16 batches: 512 steps, past the 500 below which training says it is too short.
# Then its quality line, against its own training sprites.
DEMO := --data synthetic --n-G 32 --n-D 32 --lr 5e-4 --ema 0.99 --d-input-norm none \
	--epochs 32 --batch-size 64
demo: setup
	$(BIN)/python run.py $(DEMO) --out-dir outputs/demo --overwrite
	$(BIN)/python run.py evaluate --export outputs/demo/export --data synthetic --num 1024

# ruff first (pyproject.toml), then every layer: unit, cli (the real command in a
# subprocess) and slow, one pytest-xdist worker per usable core. --dist loadfile keeps a
# file on one worker, so its module fixtures (finished runs) are built once. Without -n,
# `python -m pytest tests` runs them serially. pytest exits 5 if nothing ran: make fails.
test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n auto --dist loadfile tests

# The unit layer alone, in process: under a minute. pytest exits 5 if nothing ran: make fails.
test-fast: setup
	$(BIN)/python -m pytest -q -m unit tests

# share's page loads onnxruntime-web from web/node_modules: npm ci installs exactly
# web/package-lock.json (each package checked against its SHA-512) and runs no install script.
web: web/node_modules/.installed

web/node_modules/.installed: web/package.json web/package-lock.json
	cd web && npm ci --ignore-scripts --no-audit --no-fund
	touch $@

bench: setup
	$(BIN)/python bench/train_speed.py --data synthetic --steps 10 --batch-size 256

clean:
	rm -rf $(VENV) $(LOCK_VENV) outputs .pytest_cache web/node_modules
