# The two commands of the README. Both set up .venv from pyproject.toml on first use.
PY ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: setup demo up test lint bench clean

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null || { echo "need $(PY) (Python 3.11)"; exit 1; }
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	# torch first and pinned: a looser resolution would pull multi-GB CUDA builds.
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

## main job: embedded broker + Milvus + worker, sample catalog, recommendations, cold start
demo: $(STAMP)
	$(VENV)/bin/tailor demo $(ARGS)

## run the embedded runtime and the worker in the foreground (Ctrl-C stops it)
up: $(STAMP)
	$(VENV)/bin/tailor up

## lint + format check + unit + integration tests (real noida-db broker and embedded Milvus, started by the tests)
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/python -m pytest -q $(ARGS)

clean:
	rm -rf var $(VENV) .pytest_cache
