# Two entry points for a fresh machine with only python3 and make: `make demo` and `make test`.
# Each creates .venv if missing and installs the project once (a stamp file skips it next time).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test bench clean

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/activate
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,plot,progress]"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/tfsal demo --out demo_out

test: $(VENV)/.installed
	$(VENV)/bin/ruff check tfsal tests benchmarks scripts
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) benchmarks/bench_methods.py --out BENCHMARKS.md
	cd benchmarks && ../$(PY) bench_nonlinear.py --out ../BENCHMARKS_NONLINEAR.md

clean:
	rm -rf $(VENV) demo_out .pytest_cache
