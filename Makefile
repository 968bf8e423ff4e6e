# The two commands in the README: `make demo` (the main job) and `make test` (the suite).
# Both create .venv at the repository root on first use, with the exact versions in
# constraints.txt, and reinstall when pyproject.toml or constraints.txt change.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test setup

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[train,hats,dev,bench]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/morphcat demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest
