# xinggan: two commands do all the set-up on a fresh machine.
#   make demo   create the environment, build the toy dataset, train, generate, evaluate
#   make test   create the environment if needed and run the whole test suite
# VENV may point outside the clone (CI keeps it in a cache keyed by requirements.txt).

PYTHON_BOOT ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed
DEMO_DIR ?= results/demo
RUN_DIR ?= runs/demo
TOY_DIR ?= datasets/toy

.PHONY: demo test venv toy clean-demo help

help:
	@echo "make demo  - build the toy dataset, train on CPU, generate, evaluate (results/demo)"
	@echo "make test  - run the whole test suite"

venv: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $(STAMP)

toy: $(STAMP)
	$(PY) scripts/make_toy_dataset.py --out $(TOY_DIR) --height 64 --width 32 --identities 200

test: $(STAMP)
	$(PY) -m pytest -q tests

demo: $(STAMP)
	$(PY) scripts/demo.py --toy-dir $(TOY_DIR) --run-dir $(RUN_DIR) --out $(DEMO_DIR)

clean-demo:
	rm -rf $(RUN_DIR) $(DEMO_DIR) $(TOY_DIR)
