# Two entry points for a new user: `make demo` and `make test`. Both set up .venv (once), the package
# and the Fashion-MNIST data, then run. Re-running is fast: pip runs again only when requirements change.
PY      := .venv/bin/python
STAMP   := .venv/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED ?= 0

.PHONY: demo test data setup

demo: setup data
	.venv/bin/nachos-tf sample --seed 0

test: setup data
	$(PY) -m pytest -q

setup: $(STAMP)

$(STAMP): requirements.txt setup.py
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt setuptools
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

data:
	@bash scripts/ensure_fashion_mnist.sh
