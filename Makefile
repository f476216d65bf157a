# The two newcomer commands: `make run` (the main job) and `make test` (the test suite).
# Each installs what it needs into .venv first, so either works alone on a fresh clone.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
ARGS ?=
# auto_LiRPA is not on PyPI in a version that imports on torch 2.x. Point LIRPA_WHEELS at a
# folder holding an auto_lirpa-*.whl (`make test LIRPA_WHEELS=DIR`, or set it in the
# environment, as CI does) and the test environment gets it, so the auto_LiRPA backend is
# tested for real. Without it those tests skip with the install hint.
LIRPA_WHEELS ?=

.PHONY: install run test

install: $(INSTALLED)

$(INSTALLED): pyproject.toml constraints.txt Makefile
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -c constraints.txt -e '.[demo,test]'
	@set -e; for wheel in $(wildcard $(LIRPA_WHEELS)/auto_lirpa-*.whl); do \
		echo "installing $$wheel (optional auto_LiRPA backend)"; \
		$(PYTHON) -m pip install --quiet --no-deps "$$wheel"; \
		$(PYTHON) -m pip install --quiet -c constraints.txt appdirs pyyaml packaging tqdm graphviz; \
	done
	touch $(INSTALLED)

run: $(INSTALLED)
	$(VENV)/bin/harp-prune run $(ARGS)

test: $(INSTALLED)
	$(PYTHON) -m pytest $(ARGS)
