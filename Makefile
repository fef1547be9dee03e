# Two entry points for a fresh machine; both build their own virtualenv.
#   make demo   install, then recognise the sample photos
#   make test   install, then run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
SHARED ?= ../shared
# Sample photos: ../shared/photos when present, else whatever PHOTOS names.
PHOTOS ?= $(wildcard $(SHARED)/photos)
# Use the shared model files instead of downloading them, when present.
ifneq ($(wildcard $(SHARED)/models),)
export IMAGEREC_MODEL_DIR ?= $(abspath $(SHARED)/models)
endif
PYTEST_ARGS ?=

.PHONY: demo test bench venv clean

venv: $(VENV)/.installed-dev

# The demo needs only the package; the tests also need the dev extra.
$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	@if [ -z "$(PHOTOS)" ]; then echo "no sample photos: run 'make demo PHOTOS=\"photo.jpg folder/\"'"; exit 2; fi
	$(VENV)/bin/imagerec predict $(PHOTOS) --top-k 3

test: venv
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

bench: venv
	$(VENV)/bin/python bench/predict_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info
