# The two newcomer commands: `make run` (the main job) and `make test` (the test suite).
# Each installs what it needs into .venv first, so either works alone on a fresh clone.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
ARGS ?=

.PHONY: install run test

install: $(INSTALLED)

$(INSTALLED): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -c constraints.txt -e '.[demo,test]'
	touch $(INSTALLED)

run: $(INSTALLED)
	$(VENV)/bin/harp-prune run $(ARGS)

test: $(INSTALLED)
	$(PYTHON) -m pytest $(ARGS)
