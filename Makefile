# Two entry points for a new user: `make demo` and `make test`. Both set up .venv (once), the package
# and the Fashion-MNIST data, then run. Re-running is fast: pip runs again only when requirements change.
PY      := .venv/bin/python
STAMP   := .venv/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 3
export PYTHONHASHSEED ?= 0

.PHONY: demo test test-firmware data setup firmware-tools

DEMO_RUN ?= runs/demo
# The board the demo exports for (nachos_tf/boards.py): `export --target` checks that the solution's int8
# stages and arena fit its flash and RAM minus the measured TFLM runtime. DEMO_SEARCH_BOARD=nrf52840 also
# bounds the search with them (every candidate that meets accuracy and MACs is then converted to int8 and
# measured: about half a minute each, which makes the demo much longer).
DEMO_BOARD ?= nrf52840
DEMO_SEARCH_BOARD ?=
# Worker processes of the demo search: they judge the candidates, then re-train and measure the four finalists
# two at a time. Same results as one process (each keeps the run's thread count); on 2 cores this overlaps
# TensorFlow's single-threaded graph tracing and TFLM runs with the other worker's training.
DEMO_WORKERS ?= 2
DEMO_EXPORT = .venv/bin/nachos-tf export $(DEMO_RUN) --solution 0 --out $(DEMO_RUN)/deploy $(if $(DEMO_BOARD),--target $(DEMO_BOARD))
DEMO_EVALUATE = .venv/bin/nachos-tf evaluate $(DEMO_RUN)/deploy --dataset fashion_mnist --split test --limit 2000 \
  --json $(DEMO_RUN)/deploy/evaluate.json

# The quick search on real Fashion-MNIST (about 10 min on 2 idle cores, README "make demo, measured"), then the int8 staged
# export of the first admissible solution and its figures measured on TFLM, and two independent checks of what was
# reported (the first runs beside the export and evaluation: it only reads the run folder).
# A second `make demo` resumes (replays) the run.
demo: setup data firmware-tools
	@if [ -f $(DEMO_RUN)/config.json ]; then .venv/bin/nachos-tf search --resume $(DEMO_RUN) --workers $(DEMO_WORKERS); \
	else .venv/bin/nachos-tf search --dataset fashion_mnist --min-accuracy 0.85 --max-macs 1.0M \
	  --budget quick --seed 0 --workers $(DEMO_WORKERS) $(if $(DEMO_SEARCH_BOARD),--target $(DEMO_SEARCH_BOARD)) \
	  --out $(DEMO_RUN); fi
	@echo "--- check 1 of 2, beside the export (one core each): the saved Keras models vs pareto.json"
	@$(PY) benchmarks/verify_run.py $(DEMO_RUN) --out $(DEMO_RUN)/verify.json > $(DEMO_RUN)/verify.log 2>&1 & vpid=$$!; \
	set -e; \
	echo "$(DEMO_EXPORT)"; $(DEMO_EXPORT); \
	echo "$(DEMO_EVALUATE)"; $(DEMO_EVALUATE); \
	echo "--- check 2 of 2: the C arrays and a second TFLM runner vs evaluate"; \
	$(PY) benchmarks/deploy_check.py $(DEMO_RUN)/deploy --dataset fashion_mnist --limit 2000 \
	  --out $(DEMO_RUN)/deploy/deploy_check.json; \
	echo "--- check 1 of 2 (benchmarks/verify_run.py, $(DEMO_RUN)/verify.log):"; \
	if wait $$vpid; then cat $(DEMO_RUN)/verify.log; else cat $(DEMO_RUN)/verify.log; exit 1; fi
	@if [ -n "$$TFLM_ROOT" ]; then echo "--- the export as Cortex-M4F firmware (TFLM, CMSIS-NN) under QEMU, checked image by image"; \
	  .venv/bin/nachos-tf firmware $(DEMO_RUN)/deploy --target cortex-m4 --kernels cmsis-nn --run 2000; \
	else echo "--- TFLM_ROOT not set: skipping the firmware build (nachos-tf firmware, README 'On a microcontroller')"; fi

# the suite in two pytest-xdist workers, one test file per worker at a time (module fixtures such as a traced
# supernet are built once per file); most tests are bound to one core (graph tracing, process start-up), so
# this halves the wall clock on 2 cores. PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 2
test: setup data firmware-tools
	.venv/bin/lint-imports
	$(PY) -m pytest -q --durations=15 $(if $(filter-out 0,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist loadfile)

# the export compiled against real TFLM and run on the host and emulated Cortex-M4F (needs TFLM_ROOT;
# about 20 min the first time, then the TFLM libraries come from ~/.cache/nachos-tf/tflm)
test-firmware: setup data firmware-tools
	$(PY) -m pytest -q -m firmware

setup: $(STAMP)

$(STAMP): requirements.txt setup.py
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt setuptools
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

data:
	@bash scripts/ensure_fashion_mnist.sh

# arm-none-eabi-g++, newlib and qemu-system-arm for `nachos-tf firmware` (apt-get install when root)
firmware-tools:
	@bash scripts/ensure_firmware_tools.sh
