VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export OMP_NUM_THREADS ?= 2
export NO_MKDOCS_2_WARNING := 1

.PHONY: venv test lint docs demo bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchaudio==2.11.0
	$(PY) -m pip install --quiet -e ".[all,dev,faiss]"
	touch $(STAMP)

lint: venv
	$(VENV)/bin/ruff check .

test: venv lint
	$(PY) -m pytest -q -p no:cacheprovider --doctest-modules tests n3seq n3seq_image
	$(VENV)/bin/mkdocs build --strict --quiet --site-dir $(VENV)/site

docs: venv
	$(VENV)/bin/mkdocs build --strict --site-dir site

demo: venv
	$(PY) -m n3seq_image.cli demo

bench: venv
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) site .pytest_cache
