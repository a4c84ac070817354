# Two entry points a new user needs (see README): `make demo` and `make test`.
# Both create ./.venv on first use. TORCH pins the CPU build that this kind of machine (and CI)
# carries locally; on a GPU workstation use e.g. `make TORCH=torch test` or bring your own venv.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.uhr_seg_installed

.PHONY: setup test test-fast demo lint clean

setup: $(STAMP)

$(STAMP): setup.py pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[test,ros,onnx,geo,batch]"
	touch $(STAMP)

# The whole suite, slow tests included (what CI runs).
test: setup
	$(PY) -m pytest

# Everything but the tests marked slow.
test-fast: setup
	$(PY) -m pytest -m "not slow"

# The main job: the node on the bundled sample frame with the bundled model, real DDS.
demo: setup
	$(VENV)/bin/uhr-seg demo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
