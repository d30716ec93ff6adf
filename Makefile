# xinggan: two commands do all the set-up on a fresh machine.
#   make demo   create the environment, build the toy dataset, train, generate, evaluate
#   make test   create the environment if needed and run the whole test suite
#   make test-pose  the same with the optional MediaPipe extra (requirements-pose.txt), in its
#               own environment VENV_POSE, and run the tests that need it
#   make studio     the re-pose studio (a Gradio page) on the demo's model, in VENV_STUDIO
#   make test-studio  the studio's tests there (headless Chromium from apt: /usr/bin/chromium)
# VENV, VENV_POSE and VENV_STUDIO may point outside the clone (CI keeps them in a cache keyed
# by the requirements files).

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
VENV_STUDIO ?= .venv-studio
PY_STUDIO := $(VENV_STUDIO)/bin/python
STAMP_STUDIO := $(VENV_STUDIO)/.requirements-installed
STUDIO_PORT ?= 7860
DEMO_DIR ?= results/demo
RUN_DIR ?= runs/demo
TOY_DIR ?= datasets/toy

.PHONY: demo test venv install pose-venv pose-install test-pose studio studio-venv studio-install \
	test-studio toy clean-demo help

help:
	@echo "make demo  - build the toy dataset, train on CPU, generate, evaluate (results/demo)"
	@echo "make test  - run the whole test suite"
	@echo "make pose-venv  - environment with the MediaPipe extra (requirements-pose.txt) in VENV_POSE"
	@echo "make test-pose  - run the keypoint-from-photo tests in that environment"
	@echo "make studio  - the re-pose studio on the demo's model (trains it first if needed)"
	@echo "make test-studio  - the studio's tests, in VENV_STUDIO (requirements-studio.txt)"

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

# $(call make_venv,FOLDER,REQUIREMENTS): a virtual environment with what REQUIREMENTS pins
define make_venv
	@test -x $(1)/bin/python || $(PYTHON_BOOT) -m venv $(1)
	$(1)/bin/python -m pip install --quiet --upgrade pip
	$(1)/bin/python -m pip install --quiet -r $(2)
	@touch $(1)/.requirements-installed
endef

$(STAMP): requirements.txt
	$(call make_venv,$(VENV),requirements.txt)

pose-venv: $(STAMP_POSE)

$(STAMP_POSE): requirements.txt requirements-pose.txt
	$(call make_venv,$(VENV_POSE),requirements-pose.txt)

test-pose: pose-install
	$(PY_POSE) -m pytest -q $(POSE_TESTS)

studio-venv: $(STAMP_STUDIO)

studio-install: $(STAMP_STUDIO)
	$(call install_here,$(PY_STUDIO))

$(STAMP_STUDIO): requirements.txt requirements-studio.txt
	$(call make_venv,$(VENV_STUDIO),requirements-studio.txt)

test-studio: studio-install
	$(PY_STUDIO) -m pytest -q tests/test_studio.py

# The demo's model, trained by the demo itself (in the studio's environment) when missing.
$(RUN_DIR)/checkpoints/latest.pt: | studio-install
	$(PY_STUDIO) scripts/demo.py --toy-dir $(TOY_DIR) --run-dir $(RUN_DIR) --out $(DEMO_DIR)

studio: studio-install $(RUN_DIR)/checkpoints/latest.pt
	$(PY_STUDIO) scripts/studio.py --checkpoint $(RUN_DIR)/checkpoints/latest.pt --port $(STUDIO_PORT)

toy: install
	$(PY) scripts/make_toy_dataset.py --out $(TOY_DIR) --height 64 --width 32 --identities 200

test: install
	$(PY) -m pytest -q tests

demo: install
	$(PY) scripts/demo.py --toy-dir $(TOY_DIR) --run-dir $(RUN_DIR) --out $(DEMO_DIR)

clean-demo:
	rm -rf $(RUN_DIR) $(DEMO_DIR) $(TOY_DIR)
