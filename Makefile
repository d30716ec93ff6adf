# xinggan: two commands do all the set-up on a fresh machine.
#   make demo   create the environment, build the toy dataset, train, generate, evaluate
#   make test   create the environment if needed and run the whole test suite
#   make test-pose  the same with the optional MediaPipe extra (requirements-pose.txt), in its
#               own environment VENV_POSE, and run the tests that need it
# VENV and VENV_POSE may point outside the clone (CI keeps them in a cache keyed by the
# requirements files).

PYTHON_BOOT ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed
VENV_POSE ?= .venv-pose
PY_POSE := $(VENV_POSE)/bin/python
STAMP_POSE := $(VENV_POSE)/.requirements-installed
# The keypoints-from-photos tests: those that need MediaPipe skip themselves in the core
# environment; here they all run against the extra's pins (numpy<2, protobuf<5).
POSE_TESTS ?= tests/test_keypoints_mediapipe.py tests/test_framing.py tests/test_detect_keypoints.py \
	tests/test_repose.py tests/test_prepare_custom.py
DEMO_DIR ?= results/demo
RUN_DIR ?= runs/demo
TOY_DIR ?= datasets/toy

.PHONY: demo test venv install pose-venv pose-install test-pose toy clean-demo help

help:
	@echo "make demo  - build the toy dataset, train on CPU, generate, evaluate (results/demo)"
	@echo "make test  - run the whole test suite"
	@echo "make pose-venv  - environment with the MediaPipe extra (requirements-pose.txt) in VENV_POSE"
	@echo "make test-pose  - run the keypoint-from-photo tests in that environment"

venv: $(STAMP)

# The package itself, editable, from this clone: (re)installed whenever the environment's
# xinggan is not this folder's (a cached environment outlives the clone that made it).
# `python -c` runs in / so that the working folder's xinggan/ does not answer for it.
define install_here
	@(cd / && $(1) -c "import pathlib, sys, xinggan; sys.exit(pathlib.Path(xinggan.__file__).resolve().parents[1] != pathlib.Path('$(CURDIR)').resolve())" 2>/dev/null) \
	  || $(1) -m pip install --quiet --no-deps --no-build-isolation -e .
endef

install: $(STAMP)
	$(call install_here,$(PY))

pose-install: $(STAMP_POSE)
	$(call install_here,$(PY_POSE))

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $(STAMP)

pose-venv: $(STAMP_POSE)

$(STAMP_POSE): requirements.txt requirements-pose.txt
	@test -x $(PY_POSE) || $(PYTHON_BOOT) -m venv $(VENV_POSE)
	$(PY_POSE) -m pip install --quiet --upgrade pip
	$(PY_POSE) -m pip install --quiet -r requirements-pose.txt
	@touch $(STAMP_POSE)

test-pose: pose-install
	$(PY_POSE) -m pytest -q $(POSE_TESTS)

toy: install
	$(PY) scripts/make_toy_dataset.py --out $(TOY_DIR) --height 64 --width 32 --identities 200

test: install
	$(PY) -m pytest -q tests

demo: install
	$(PY) scripts/demo.py --toy-dir $(TOY_DIR) --run-dir $(RUN_DIR) --out $(DEMO_DIR)

clean-demo:
	rm -rf $(RUN_DIR) $(DEMO_DIR) $(TOY_DIR)
