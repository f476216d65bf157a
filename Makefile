# The two newcomer commands: `make run` (the main job) and `make test` (the test suite).
# Each installs what it needs into .venv first, so either works alone on a fresh clone.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
ARGS ?=
# auto_LiRPA is not on PyPI in a version that imports on torch 2.x; where a wheel folder is
# beside the checkout (CI and the developers' machines), the test environment gets it so the
# auto_LiRPA backend is tested for real. Without it those tests skip with the install hint.
LIRPA_WHEELS ?= ../shared/wheels

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
