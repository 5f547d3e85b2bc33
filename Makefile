# The README's two commands: `make demo` (set-up + main job on embedded data) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup setup-gpu demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-d2l.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -r requirements.txt
	# d2l 1.0.3 pins jupyter and more; its mxnet module needs only what requirements.txt has.
	$(BIN)/pip install --no-deps -r requirements-d2l.txt
	touch $@

setup-gpu: setup
	$(BIN)/pip uninstall -y mxnet
	$(BIN)/pip install -r requirements-gpu.txt

demo: setup
	$(BIN)/python run.py --data synthetic --epochs 10 --batch-size 64 --out-dir outputs/demo --overwrite

test: setup
	$(BIN)/python -m pytest -q tests

bench: setup
	$(BIN)/python bench/train_speed.py --data synthetic --steps 10 --batch-size 256

clean:
	rm -rf $(VENV) outputs .pytest_cache
