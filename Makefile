# Two entry points a new user needs (see README): `make demo` and `make test`.
# Both create ./.venv on first use. TORCH pins the CPU build that this kind of machine (and CI)
# carries locally; on a GPU workstation use e.g. `make TORCH=torch test` or bring your own venv.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.uhr_seg_installed
# ros2cli, launch, launch_ros, launch_testing as wheels (no PyPI release); CI has them beside the
# checkout. Without them `ros2 launch` and the launch tests are unavailable (the tests skip).
ROS2_TOOLS ?= ../shared/ros2-tools
ROS2_STAMP := $(VENV)/.ros2_tools_installed
AMENT_STAMP := $(VENV)/.ament_prefix

.PHONY: setup test test-fast demo lint format clean

setup: $(STAMP) $(AMENT_STAMP) $(ROS2_STAMP)

# Editable install: edits take effect at once.
$(STAMP): setup.py pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[test,ros,onnx,geo,batch,lint]"
	touch $(STAMP)

# The venv as an ament prefix for the checkout (marker, share/uhr_seg_ros, lib/uhr_seg_ros:
# uhr_seg_ros/ros/ament_prefix.py), and bin/activate setting AMENT_PREFIX_PATH. Re-run when a
# shared file appears or goes.
$(AMENT_STAMP): $(STAMP) package.xml uhr_seg_ros/ros/ament_prefix.py $(wildcard launch/* config/* config/*/* models/*)
	$(PY) -m uhr_seg_ros.ros.ament_prefix $(VENV) --activate-hook
	touch $@

$(ROS2_STAMP): $(STAMP)
	@if [ -x $(ROS2_TOOLS)/install.sh ]; then \
	  $(ROS2_TOOLS)/install.sh $(abspath $(VENV)) && touch $@; \
	else \
	  echo "note: no $(ROS2_TOOLS): ros2 launch/run need a ROS 2 install (docs.ros.org; then colcon build, see docs/ros.md); launch tests will skip"; \
	fi

# The whole suite, slow tests included (what CI runs).
test: setup
	$(PY) -m pytest

# Everything but the tests marked slow.
test-fast: setup
	$(PY) -m pytest -m "not slow"

# ruff (lint rules + format check) over the whole tree and mypy over the package (pyproject.toml).
lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

# Apply ruff's fixes and formatting (then `make lint` shows what is left to fix by hand).
format: setup
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# The main job: the node on the bundled sample frame with the bundled model, real DDS.
demo: setup
	$(VENV)/bin/uhr-seg demo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
